import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import * as z from 'zod';

/** scrypt's cost parameters, kept with each hash so a registry can raise them entry by entry. */
export interface ScryptCost {
  N: number;
  r: number;
  p: number;
}

export interface SecretHash extends ScryptCost {
  /** base64 */
  salt: string;
  /** base64 */
  hash: string;
}

const base64 = z.string().regex(/^[A-Za-z0-9+/]+={0,2}$/, 'expected base64');
const powerOfTwo = (n: number) => (n & (n - 1)) === 0;
/**
 * A SecretHash as a file stores it (the broker's registry, the agent's token file).
 * Bounded so that a file cannot make each check take gigabytes (scrypt needs 128 * N * r bytes).
 */
export const secretHashSchema = z
  .object({
    N: z.number().int().min(2).max(2 ** 20).refine(powerOfTwo, 'expected a power of 2'),
    r: z.number().int().min(1).max(16),
    p: z.number().int().min(1).max(16),
    salt: base64,
    hash: base64,
  })
  .strict();

/** 16 MiB and tens of milliseconds per check: Node's default, the scrypt paper's figure for interactive logins. */
const DEFAULT_COST: ScryptCost = { N: 16384, r: 8, p: 1 };
const KEY_BYTES = 32;

/**
 * 256 random bits, base64url: typed into no one's head, so it cannot be guessed however
 * fast the hash. Drawn again when it would begin with '-', which a command line such as
 * `--password SECRET` would read as an option.
 */
export function generateSecret(): string {
  for (;;) {
    const secret = randomBytes(32).toString('base64url');
    if (!secret.startsWith('-')) return secret;
  }
}

function derive(secret: Buffer, salt: Buffer, cost: ScryptCost, bytes: number): Promise<Buffer> {
  // scrypt needs 128 * N * r bytes; Node refuses above maxmem, 32 MiB by default.
  const maxmem = 256 * cost.N * cost.r;
  return new Promise((resolve, reject) =>
    scrypt(secret, salt, bytes, { N: cost.N, r: cost.r, p: cost.p, maxmem }, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

export async function hashSecret(secret: string, cost: ScryptCost = DEFAULT_COST): Promise<SecretHash> {
  const salt = randomBytes(16);
  const hash = await derive(Buffer.from(secret, 'utf8'), salt, cost, KEY_BYTES);
  return { ...cost, salt: salt.toString('base64'), hash: hash.toString('base64') };
}

export async function verifySecret(secret: Buffer, stored: SecretHash): Promise<boolean> {
  const expected = Buffer.from(stored.hash, 'base64');
  const actual = await derive(secret, Buffer.from(stored.salt, 'base64'), stored, expected.length);
  return timingSafeEqual(actual, expected);
}
