// These Aedes persistences ship no type declarations; the broker only constructs them and
// hands them to Aedes (whose own `persistence` option is typed `any`), and destroys them.
declare module 'aedes-persistence-level' {
  const levelPersistence: (db: unknown) => { destroy(cb?: () => void): Promise<void> | void };
  export default levelPersistence;
}
declare module 'aedes-persistence-redis' {
  const redisPersistence: (opts: { conn?: unknown; [key: string]: unknown }) => { destroy(cb?: () => void): Promise<void> | void };
  export default redisPersistence;
}
