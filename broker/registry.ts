import { randomBytes } from 'node:crypto';
import { unwatchFile, watchFile, type Stats } from 'node:fs';
import { open, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { z } from 'zod';
import { UsageError } from '../deploy/options';
import { ID_PATTERN } from '../proto/topics';
import { generateSecret, hashSecret, type ScryptCost, type SecretHash } from './secrets';

const ROLES = ['gateway', 'sink', 'consumer'] as const;
export type Role = (typeof ROLES)[number];

export interface Identity {
  role: Role;
  secret: SecretHash;
}

/** Identities by id. */
export type Registry = Map<string, Identity>;

export const roleSchema = z.enum(ROLES, { error: "expected 'gateway', 'sink' or 'consumer'" });
const ID_RULE = 'expected 1-64 characters of A-Z a-z 0-9 . _ -';

const base64 = z.string().regex(/^[A-Za-z0-9+/]+={0,2}$/, 'expected base64');
const powerOfTwo = (n: number) => (n & (n - 1)) === 0;
// Bounded so that a registry cannot make each check take gigabytes (scrypt needs 128 * N * r bytes).
const secretSchema = z
  .object({
    N: z.number().int().min(2).max(2 ** 20).refine(powerOfTwo, 'expected a power of 2'),
    r: z.number().int().min(1).max(16),
    p: z.number().int().min(1).max(16),
    salt: base64,
    hash: base64,
  })
  .strict();
const fileSchema = z
  .object({
    version: z.literal(1),
    identities: z.record(z.string(), z.object({ role: roleSchema, scrypt: secretSchema }).strict()),
  })
  .strict();

function fail(file: string, problem: string): never {
  throw new UsageError(`--registry: ${file}: ${problem}`);
}

function parseRegistry(text: string, file: string): Registry {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    fail(file, `not valid YAML or JSON: ${(err as Error).message.split('\n')[0]!.replace(/:$/, '')}`);
  }
  if (doc === null || doc === undefined) fail(file, 'is empty; a registry is {"version": 1, "identities": {...}}');
  const parsed = fileSchema.safeParse(doc);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    fail(file, `${issue.path.join('.') || 'the document'}: ${issue.message}`);
  }
  const entries = Object.entries(parsed.data.identities);
  for (const [id] of entries) if (!ID_PATTERN.test(id)) fail(file, `identities.${id}: ${ID_RULE}`);
  return new Map(entries.map(([id, { role, scrypt }]) => [id, { role, secret: scrypt }]));
}

/** Reads a registry file; `missingIsEmpty` lets the first `identity add` create it. */
export async function readRegistry(file: string, missingIsEmpty = false): Promise<Registry> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && missingIsEmpty) return new Map();
    throw new UsageError(`--registry: cannot read ${file}: ${code ?? (err as Error).message}`);
  }
  return parseRegistry(text, file);
}

function serialise(registry: Registry, file: string): string {
  const identities = Object.fromEntries([...registry].sort(([a], [b]) => (a < b ? -1 : 1)).map(([id, { role, secret }]) => [id, { role, scrypt: secret }]));
  const doc = { version: 1, identities };
  return /\.ya?ml$/i.test(file) ? stringifyYaml(doc) : `${JSON.stringify(doc, null, 2)}\n`;
}

/**
 * Replaces the file whole, mode 0600: a temporary file beside it, fsynced, renamed over it,
 * and the directory fsynced, so a crash leaves the old registry or the new one, and a
 * broker that reloads it never reads half of one.
 */
export async function writeRegistry(file: string, registry: Registry): Promise<void> {
  const dir = path.dirname(file);
  const temp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const handle = await open(temp, 'wx', 0o600);
    try {
      await handle.writeFile(serialise(registry, file));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, file);
  } catch (err) {
    await rm(temp, { force: true });
    throw new UsageError(`--registry: cannot write ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Adds an identity with a fresh secret, and returns the secret: the registry keeps only its hash. */
export async function addIdentity(registry: Registry, id: string, role: Role, cost?: ScryptCost): Promise<string> {
  if (!ID_PATTERN.test(id)) throw new UsageError(`identity id "${id}": ${ID_RULE}`);
  if (registry.has(id)) throw new UsageError(`identity "${id}" is already in the registry; remove it first to issue a new secret`);
  const secret = generateSecret();
  registry.set(id, { role, secret: await hashSecret(secret, cost) });
  return secret;
}

/**
 * Calls `onChange` with the registry read afresh each time the file changes, so a new
 * gateway needs no restart. It polls the file's status rather than using fs.watch, which
 * loses a file replaced by rename (as writeRegistry does) and misses changes on some
 * network and container file systems.
 */
export function watchRegistry(file: string, intervalMs: number, onChange: (registry: Registry) => void, onError: (err: Error) => void): () => void {
  let reloads = Promise.resolve();
  const listener = (now: Stats, before: Stats) => {
    if (now.mtimeMs === before.mtimeMs && now.ino === before.ino && now.size === before.size) return;
    // One at a time, so an older read never lands after a newer one.
    reloads = reloads.then(() => readRegistry(file).then(onChange, onError));
  };
  watchFile(file, { interval: intervalMs, persistent: false }, listener);
  return () => unwatchFile(file, listener);
}
