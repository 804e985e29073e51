// These Aedes persistences ship no type declarations; the broker only constructs them and
// hands them to Aedes (whose own `persistence` option is typed `any`), counts their sessions
// at start-up, and destroys them.
interface AedesCallbackPersistence {
  destroy(cb?: () => void): Promise<void> | void;
  countOffline(cb: (err: Error | null | undefined, subscriptions: number, clients: number) => void): void;
}
declare module 'aedes-persistence-level' {
  const levelPersistence: (db: unknown) => AedesCallbackPersistence;
  export default levelPersistence;
}
declare module 'aedes-persistence-redis' {
  const redisPersistence: (opts: { conn?: unknown; [key: string]: unknown }) => AedesCallbackPersistence;
  export default redisPersistence;
}
