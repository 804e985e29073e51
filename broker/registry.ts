import { stringify as stringifyYaml } from 'yaml';
import * as z from 'zod';
import { parseDocument, readOptionFile, replaceFile, watchFileChanges } from '../deploy/runtime/files';
import { UsageError } from '../deploy/runtime/options';
import { ID_PATTERN } from '../proto/topics';
import { roleSchema } from './options';
import { generateSecret, hashSecret, secretHashSchema, type ScryptCost, type SecretHash } from './secrets';

export type Role = z.output<typeof roleSchema>;

export interface Identity {
  role: Role;
  secret: SecretHash;
}

/** Identities by id. */
export type Registry = Map<string, Identity>;

const ID_RULE = 'expected 1-64 characters of A-Z a-z 0-9 . _ -';

const fileSchema = z
  .object({
    version: z.literal(1),
    identities: z.record(z.string(), z.object({ role: roleSchema, scrypt: secretHashSchema }).strict()),
  })
  .strict();

function fail(file: string, problem: string): never {
  throw new UsageError(`--registry: ${file}: ${problem}`);
}

async function parseRegistry(text: string, file: string): Promise<Registry> {
  const doc = await parseDocument(text, fileSchema, 'a registry is {"version": 1, "identities": {...}}', (problem) => fail(file, problem));
  const entries = Object.entries(doc.identities);
  for (const [id] of entries) if (!ID_PATTERN.test(id)) fail(file, `identities.${id}: ${ID_RULE}`);
  return new Map(entries.map(([id, { role, scrypt }]) => [id, { role, secret: scrypt }]));
}

/** Reads a registry file; `missingIsEmpty` lets the first `identity add` create it. */
export async function readRegistry(file: string, missingIsEmpty = false): Promise<Registry> {
  const text = await readOptionFile('--registry', file, missingIsEmpty);
  if (text === null) return new Map();
  return parseRegistry(text, file);
}

function serialise(registry: Registry, file: string): string {
  const identities = Object.fromEntries([...registry].sort(([a], [b]) => (a < b ? -1 : 1)).map(([id, { role, secret }]) => [id, { role, scrypt: secret }]));
  const doc = { version: 1, identities };
  return /\.ya?ml$/i.test(file) ? stringifyYaml(doc) : `${JSON.stringify(doc, null, 2)}\n`;
}

/** Replaces the registry file atomically (replaceFile), so a broker that reloads it never reads half of one. */
export async function writeRegistry(file: string, registry: Registry): Promise<void> {
  try {
    await replaceFile(file, serialise(registry, file));
  } catch (err) {
    throw new UsageError(`--registry: cannot write ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
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

/** Calls `onChange` with the registry read afresh each time the file changes, so a new gateway needs no restart. */
export function watchRegistry(file: string, intervalMs: number, onChange: (registry: Registry) => void, onError: (err: Error) => void): () => void {
  return watchFileChanges(file, intervalMs, () => readRegistry(file).then(onChange, onError));
}
