import { createHash, timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import { stringify as stringifyYaml } from 'yaml';
import * as z from 'zod';
import { generateSecret, hashSecret, secretHashSchema, verifySecret, type ScryptCost, type SecretHash } from '../broker/secrets';
import { parseDocument, readOptionFile, replaceFile, watchFileChanges } from '../deploy/runtime/files';
import { UsageError } from '../deploy/runtime/options';
import { ID_PATTERN } from '../proto/topics';

// Who may post points to the ingest API: bearer tokens `ID.SECRET`, each stored as the
// scrypt hash of its secret (as the broker's registry stores gateway secrets) with the
// drone ids it may write.

/** Why a request was refused, as answered (401 or 403) and counted in /metrics. */
export const INGEST_REFUSALS = ['missing_token', 'unknown_token', 'bad_token', 'forbidden_drone'] as const;
export type IngestRefusal = (typeof INGEST_REFUSALS)[number];
/** The refusals of a request's token itself, answered 401. */
export type TokenRefusal = Exclude<IngestRefusal, 'forbidden_drone'>;
/** The same words for an unknown id and a wrong secret: the answer does not tell which ids exist. */
export const TOKEN_REFUSAL_MESSAGES: Record<TokenRefusal, string> = {
  missing_token: 'this endpoint needs a token: send Authorization: Bearer TOKEN',
  unknown_token: 'the token is not one this agent knows',
  bad_token: 'the token is not one this agent knows',
};

export interface TokenEntry {
  /** Patterns of the drone ids the token may write: ids where `*` stands for any run of characters. */
  drones: string[];
  secret: SecretHash;
}
/** Tokens by id. */
export type TokenTable = Map<string, TokenEntry>;

/** What a request's token allows. */
export interface Grant {
  /** The token's id; null without a token file (a loopback endpoint takes any drone). */
  token: string | null;
  drones: readonly string[];
  mayWrite(droneId: string): boolean;
}

const PATTERN = /^[A-Za-z0-9._*-]{1,64}$/;
const PATTERN_RULE = 'expected drone id patterns: 1-64 characters of A-Z a-z 0-9 . _ - and * (any run of characters)';
const ID_RULE = 'expected 1-64 characters of A-Z a-z 0-9 . _ -';
const patternsSchema = z.array(z.string().regex(PATTERN, PATTERN_RULE)).min(1, 'expected at least one drone id pattern');

const fileSchema = z
  .object({
    version: z.literal(1),
    tokens: z.record(z.string().regex(ID_PATTERN, ID_RULE), z.object({ drones: patternsSchema, scrypt: secretHashSchema }).strict()),
  })
  .strict();

const fail = (file: string, problem: string): never => {
  throw new UsageError(`--http-tokens: ${file}: ${problem}`);
};

/** `d-*,gw-017-sys*` as the list of patterns a token is given; a bad one is a usage error. */
export function parseDronePatterns(list: string): string[] {
  const parsed = patternsSchema.safeParse(list.split(',').map((p) => p.trim()).filter((p) => p !== ''));
  if (!parsed.success) throw new UsageError(`--drones: ${parsed.error.issues[0]!.message} (got "${list}")`);
  return parsed.data;
}

/** One regular expression for a token's patterns: `*` is any run of characters, the rest literal. */
function compile(patterns: readonly string[]): RegExp {
  const alternatives = patterns.map((p) => p.replace(/[.]/g, '\\.').replace(/\*/g, '.*'));
  return new RegExp(`^(?:${alternatives.join('|')})$`);
}

/** Reads a token file; `missingIsEmpty` lets the first `token add` create it. */
export async function readTokens(file: string, missingIsEmpty = false): Promise<TokenTable> {
  const text = await readOptionFile('--http-tokens', file, missingIsEmpty);
  if (text === null) return new Map();
  const doc = await parseDocument(text, fileSchema, 'a token file is {"version": 1, "tokens": {...}}', (problem) => fail(file, problem));
  return new Map(Object.entries(doc.tokens).map(([id, { drones, scrypt }]) => [id, { drones, secret: scrypt }]));
}

/** Replaces the token file atomically, mode 0600, so an agent that reloads it never reads half of one. */
export async function writeTokens(file: string, table: TokenTable): Promise<void> {
  const tokens = Object.fromEntries([...table].sort(([a], [b]) => (a < b ? -1 : 1)).map(([id, { drones, secret }]) => [id, { drones, scrypt: secret }]));
  const doc = { version: 1, tokens };
  try {
    await replaceFile(file, /\.ya?ml$/i.test(file) ? stringifyYaml(doc) : `${JSON.stringify(doc, null, 2)}\n`);
  } catch (err) {
    throw new UsageError(`--http-tokens: cannot write ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** Adds a token with a fresh secret and returns it as the client sends it, `ID.SECRET`: the file keeps only the hash. */
export async function addToken(table: TokenTable, id: string, drones: string[], cost?: ScryptCost): Promise<string> {
  if (!ID_PATTERN.test(id)) throw new UsageError(`token id "${id}": ${ID_RULE}`);
  if (table.has(id)) throw new UsageError(`token "${id}" is already in the file; remove it first to issue a new one`);
  const secret = generateSecret();
  table.set(id, { drones, secret: await hashSecret(secret, cost) });
  return `${id}.${secret}`;
}

export interface IngestAuthStats {
  /** Requests refused: 401 without a valid token, 403 for a drone the token may not write. */
  refused: Record<IngestRefusal, number>;
  /** Points of the requests refused 403 that their token may not write. */
  pointsForbidden: number;
}

export interface IngestAuth {
  /** Counted by the ingest API, which answers the refusals. */
  readonly stats: IngestAuthStats;
  /** What the request's `Authorization: Bearer ID.SECRET` allows, or why it is refused. */
  check(req: http.IncomingMessage): Promise<Grant | TokenRefusal>;
  close(): void;
}

const ANYONE: Grant = { token: null, drones: ['*'], mayWrite: () => true };
const digest = (token: string): Buffer => createHash('sha256').update(token).digest();

/**
 * The ingest API's gate: without a token file every request is let in (the agent allows
 * that on loopback only); with one, each request must carry a token of it. The file is
 * read again when it changes, so a token is issued or revoked without a restart.
 */
export async function openIngestAuth(file: string | undefined, pollMs: number, onReloadError: (err: Error) => void): Promise<IngestAuth> {
  const stats: IngestAuthStats = { refused: Object.fromEntries(INGEST_REFUSALS.map((r) => [r, 0])) as Record<IngestRefusal, number>, pointsForbidden: 0 };
  if (file === undefined) return { stats, check: async () => ANYONE, close: () => {} };
  let table = await readTokens(file);
  let grants = new Map<string, Grant>();
  // scrypt costs tens of milliseconds: once a token has passed it, later requests are
  // checked against the SHA-256 of the whole token, one entry per token id.
  let verified = new Map<string, Buffer>();
  // One scrypt at a time: it runs on libuv's thread pool, which the spool's writes and
  // fsyncs share (invariant 1), so a flood of wrong secrets must not take every thread.
  let hashing: Promise<unknown> = Promise.resolve();
  const verifyOneAtATime = (secret: Buffer, stored: SecretHash): Promise<boolean> => {
    const result = hashing.then(() => verifySecret(secret, stored));
    hashing = result.catch(() => false);
    return result;
  };
  const stop = watchFileChanges(file, pollMs, () =>
    readTokens(file).then((next) => {
      table = next;
      grants = new Map();
      verified = new Map();
    }, onReloadError),
  );
  const grantOf = (id: string, entry: TokenEntry): Grant => {
    let grant = grants.get(id);
    if (grant === undefined) {
      const allowed = compile(entry.drones);
      grant = { token: id, drones: entry.drones, mayWrite: (droneId) => allowed.test(droneId) };
      grants.set(id, grant);
    }
    return grant;
  };
  return {
    stats,
    async check(req) {
      const header = req.headers.authorization;
      if (header === undefined) return 'missing_token';
      const m = /^Bearer +(\S+)$/i.exec(header);
      const token = m?.[1] ?? '';
      const dot = token.lastIndexOf('.');
      const id = token.slice(0, Math.max(dot, 0));
      const entry = table.get(id);
      if (entry === undefined) return 'unknown_token';
      const hash = digest(token);
      const known = verified.get(id);
      if (known !== undefined && timingSafeEqual(known, hash)) return grantOf(id, entry);
      if (!(await verifyOneAtATime(Buffer.from(token.slice(dot + 1), 'utf8'), entry.secret))) return 'bad_token';
      // The file may have been reloaded while the secret was checked.
      if (table.get(id) !== entry) return 'unknown_token';
      verified.set(id, hash);
      return grantOf(id, entry);
    },
    close: stop,
  };
}
