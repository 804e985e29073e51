import type http from 'node:http';
import * as z from 'zod';
import { decodeBatch } from '../proto/codec';
import { FLIGHT_STATE_NAMES, GPS_FIX_NAMES } from '../proto/schema';
import { nowMicros } from '../proto/time';
import { ID_PATTERN } from '../proto/topics';
import type { TelemetryPoint } from '../proto/types';
import { FINITE_FIELDS, invalidReason, MIN_TS_MICROS, type InvalidReason } from '../proto/validate';
import { TOKEN_REFUSAL_MESSAGES, type IngestAuth, type IngestRefusal } from './ingest-auth';
import type { Source, SourceOutput } from './source';

export interface IngestApiOptions {
  /** Largest request body read; a longer one is answered 413 without reading the rest. */
  maxBodyBytes: number;
  /** How far ahead of the gateway's clock an event time may be (clock skew), microseconds. */
  maxFutureSkewUs: number;
  /** Who may post which drones' points (ingest-auth.ts); absent, anyone may post any drone's. */
  auth?: IngestAuth;
  /**
   * The stream of points that name none: the gateway's ingest stream (ingestStreamOf). The
   * client numbers these points, not the spool, so their stream must not change when the
   * spool draws a new one: a retry after an agent crash is the same point (invariant 3).
   */
  defaultStream?: number;
}

export interface IngestStats {
  requests: number;
  pointsAccepted: number;
  pointsRejected: number;
  /** Requests answered 400, 405, 413 or 415: the client must change them, retrying will not help. */
  badRequests: number;
}

/** What is wrong with one point: the contract field at fault and a sentence for a person. */
export interface PointError {
  field: string;
  message: string;
}

/** One entry of a 422 answer's `rejected` list. */
export interface RejectedPoint extends PointError {
  index: number;
}

type FieldKind = 'string' | 'number' | 'ts' | 'uint32' | 'boolean' | readonly string[];

/**
 * The JSON form of every contract field; an enum field lists its short names. Typed
 * against TelemetryPoint, so a field added to the contract does not compile here until
 * the JSON form knows it, rather than being refused as unknown.
 */
const FIELD_KINDS = {
  drone_id: 'string',
  // The range of seq is invalidReason's seq_range rule, so JSON and protobuf points share it.
  seq: 'number',
  ts: 'ts',
  lat: 'number',
  lon: 'number',
  alt_m: 'number',
  rel_alt_m: 'number',
  ground_speed_mps: 'number',
  vertical_speed_mps: 'number',
  heading_deg: 'number',
  battery_pct: 'number',
  battery_voltage_v: 'number',
  gps_fix: GPS_FIX_NAMES,
  satellites: 'uint32',
  flight_state: FLIGHT_STATE_NAMES,
  armed: 'boolean',
  mission_id: 'string',
  // Its range is invalidReason's stream_range rule, as for seq.
  stream: 'number',
} as const satisfies Record<keyof TelemetryPoint, FieldKind>;

type FieldName = keyof typeof FIELD_KINDS;
const FIELD_NAMES = Object.keys(FIELD_KINDS) as FieldName[];
const REQUIRED: ReadonlySet<FieldName> = new Set(['drone_id', 'seq', 'ts']);
const UINT32_MAX = 0xffff_ffff;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A client's value quoted for an error message, cut short so a huge value cannot bloat the answer. */
function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 64 ? `${v.slice(0, 64)}…` : v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v);
  return Array.isArray(v) ? 'an array' : `an ${typeof v}`;
}

function showTs(us: number): string {
  const date = new Date(Math.floor(us / 1000));
  return Number.isNaN(date.getTime()) ? `${us} µs` : date.toISOString();
}

// RFC 3339 date-time; the space separator is the variant its section 5.6 note allows.
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$/;

/**
 * Microseconds since the epoch of an RFC 3339 date-time, or null when the string is not
 * one. Date.parse would drop every digit below the millisecond, so the fraction is read
 * here as digits: exact to the microsecond, rounded half up from the seventh digit.
 */
function parseRfc3339Micros(s: string): number | null {
  const m = RFC3339.exec(s);
  if (m === null) return null;
  const part = (i: number): number => Number(m[i]);
  const [year, month, day, hour, minute, second] = [part(1), part(2), part(3), part(4), part(5), part(6)];
  const zone = m[8] ?? 'Z';
  const offsetHours = zone.length === 1 ? 0 : Number(zone.slice(1, 3));
  const offsetMinutes = zone.length === 1 ? 0 : Number(zone.slice(4, 6));
  // 60 is a leap second, which RFC 3339 allows.
  if (hour > 23 || minute > 59 || second > 60 || offsetHours > 23 || offsetMinutes > 59) return null;
  // setUTCFullYear, unlike Date.UTC, does not read years below 100 as 19xx.
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  // Date rolls 2026-02-30 over into March; a date that moved did not exist.
  if (date.getUTCFullYear() !== year || date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day) return null;
  // A leap second becomes the first second of the next minute, as POSIX time has no 61st second.
  date.setUTCHours(hour, minute, second);
  const digits = m[7] ?? '';
  const fractionUs = Number(digits.slice(0, 6).padEnd(6, '0')) + (Number(digits[6] ?? '0') >= 5 ? 1 : 0);
  const offsetUs = (offsetHours * 60 + offsetMinutes) * 60_000_000 * (zone.startsWith('-') ? -1 : 1);
  return date.getTime() * 1000 + fractionUs - offsetUs;
}

/** The contract value of one present, non-null JSON field, or what is wrong with it. */
function fieldValue(field: FieldName, v: unknown): { value: unknown } | PointError {
  const kind: FieldKind = FIELD_KINDS[field];
  const wrong = (expected: string): PointError => ({ field, message: `${field} must be ${expected}, got ${show(v)}` });
  if (typeof kind !== 'string') {
    if (typeof v === 'number') return { value: v };
    if (typeof v !== 'string') return wrong('a name or a number');
    const value = kind.indexOf(v);
    return value >= 0 ? { value } : { field, message: `${field} ${show(v)} is not one of ${kind.join(', ')}` };
  }
  switch (kind) {
    case 'string':
      return typeof v === 'string' ? { value: v } : wrong('a string');
    case 'boolean':
      return typeof v === 'boolean' ? { value: v } : wrong('true or false');
    // JSON.parse turns 1e999 into Infinity, so finiteness is not implied by the syntax.
    case 'number':
      return typeof v === 'number' && Number.isFinite(v) ? { value: v } : wrong('a finite number');
    case 'uint32':
      return Number.isInteger(v) && (v as number) >= 0 && (v as number) <= UINT32_MAX
        ? { value: v }
        : wrong(`an integer in 0..${UINT32_MAX}`);
    case 'ts': {
      if (typeof v === 'number' && Number.isFinite(v)) return { value: Math.round(v * 1000) };
      const us = typeof v === 'string' ? parseRfc3339Micros(v) : null;
      return us === null ? wrong('epoch milliseconds or an RFC 3339 date-time such as 2026-03-01T12:00:00.123456Z') : { value: us };
    }
  }
}

/** The field and sentence of a rule invalidReason found broken. */
function ruleError(reason: InvalidReason, p: TelemetryPoint, maxFutureSkewUs: number): PointError {
  switch (reason) {
    case 'drone_id_pattern':
      return { field: 'drone_id', message: `drone_id ${show(p.drone_id)} does not match ${ID_PATTERN}` };
    case 'seq_range':
      return { field: 'seq', message: `seq ${show(p.seq)} is not an integer in 0..${Number.MAX_SAFE_INTEGER}` };
    case 'stream_range':
      return { field: 'stream', message: `stream ${show(p.stream)} is not an integer in 0..${Number.MAX_SAFE_INTEGER}` };
    case 'ts_before_2000':
      return { field: 'ts', message: `ts ${showTs(p.ts)} is before ${showTs(MIN_TS_MICROS)}` };
    case 'ts_in_future':
      return { field: 'ts', message: `ts ${showTs(p.ts)} is more than ${maxFutureSkewUs / 1e6} s ahead of the gateway's clock` };
    case 'not_finite': {
      // invalidReason tests ts before the measurements.
      const field = Number.isSafeInteger(p.ts) ? FINITE_FIELDS.find((f) => !Number.isFinite(p[f] ?? 0)) : undefined;
      if (field === undefined) return { field: 'ts', message: `ts ${show(p.ts)} µs is not a safe integer` };
      return { field, message: `${field} ${show(p[field])} is not a finite number` };
    }
    case 'lat_range':
      return { field: 'lat', message: `lat ${show(p.lat)} is outside -90..90` };
    case 'lon_range':
      return { field: 'lon', message: `lon ${show(p.lon)} is outside -180..180` };
    case 'battery_pct_range':
      return { field: 'battery_pct', message: `battery_pct ${show(p.battery_pct)} is outside 0..100` };
    case 'enum_unknown': {
      const field = p.gps_fix != null && GPS_FIX_NAMES[p.gps_fix] === undefined ? 'gps_fix' : 'flight_state';
      const names = field === 'gps_fix' ? GPS_FIX_NAMES : FLIGHT_STATE_NAMES;
      return { field, message: `${field} ${show(p[field])} is not a value in 0..${names.length - 1}` };
    }
  }
}

// A JS number of any value: NaN and the infinities reach invalidReason's not_finite rule,
// which names them, rather than failing the type check (z.number() refuses them).
const anyNumber = z.custom<number>((v) => typeof v === 'number');
const maybeNumber = anyNumber.nullable();

/**
 * The shape of a point built from a client's body, every field present (null when absent);
 * strict, so that it and FIELD_KINDS cannot drift apart unnoticed.
 */
const BUILT_POINT = z
  .object({
    drone_id: z.string(),
    seq: anyNumber,
    ts: anyNumber,
    lat: maybeNumber,
    lon: maybeNumber,
    alt_m: maybeNumber,
    rel_alt_m: maybeNumber,
    ground_speed_mps: maybeNumber,
    vertical_speed_mps: maybeNumber,
    heading_deg: maybeNumber,
    battery_pct: maybeNumber,
    battery_voltage_v: maybeNumber,
    gps_fix: maybeNumber,
    satellites: maybeNumber,
    flight_state: maybeNumber,
    armed: z.boolean().nullable(),
    mission_id: z.string().nullable(),
    stream: maybeNumber,
  })
  .strict() satisfies z.ZodType<TelemetryPoint>;

/**
 * A point built from what a client sent, checked against the contract's type instead of
 * cast to it, then against the validation rules (invariant 5: bad input gets a clear,
 * counted outcome, never a crash).
 */
function checked(point: Record<string, unknown>, nowUs: number, maxFutureSkewUs: number): TelemetryPoint | PointError {
  const typed = BUILT_POINT.safeParse(point);
  if (!typed.success) {
    const issue = typed.error.issues[0];
    const field = String(issue?.path[0] ?? '');
    return { field, message: `${field}: ${issue?.message ?? 'not a contract value'}` };
  }
  const p = typed.data;
  const reason = invalidReason(p, nowUs, maxFutureSkewUs);
  return reason === null ? p : ruleError(reason, p, maxFutureSkewUs);
}

/**
 * Parses one JSON point (already JSON.parse'd value) into a TelemetryPoint, or returns
 * { field, message } naming what is wrong. Absent and null optional fields both become null.
 */
export function pointFromJson(value: unknown, nowUs: number, maxFutureSkewUs: number): TelemetryPoint | PointError {
  if (!isObject(value)) return { field: '', message: `a point must be a JSON object, got ${show(value)}` };
  // A misspelt field would otherwise vanish silently and land in the lake as null.
  const unknown = Object.keys(value).find((key) => !Object.hasOwn(FIELD_KINDS, key));
  if (unknown !== undefined) return { field: unknown, message: `unknown field ${show(unknown)}` };
  const point: Record<string, unknown> = {};
  for (const field of FIELD_NAMES) {
    const raw = value[field];
    if (raw === undefined || raw === null) {
      if (REQUIRED.has(field)) return { field, message: `${field} is required` };
      point[field] = null;
      continue;
    }
    const parsed = fieldValue(field, raw);
    if ('message' in parsed) return parsed;
    point[field] = parsed.value;
  }
  return checked(point, nowUs, maxFutureSkewUs);
}

/** A decoded protobuf Point as a plain object shaped like a JSON one, for checked(). */
function plainPoint(decoded: TelemetryPoint): Record<string, unknown> {
  const point: Record<string, unknown> = {};
  for (const field of FIELD_NAMES) point[field] = decoded[field] ?? null;
  return point;
}

interface Item {
  /** Position in the JSON array or Batch; line number - 1 in NDJSON. */
  index: number;
  /** How the error message names the point: "point 3" or "line 4". */
  label: string;
  result: TelemetryPoint | PointError;
  /** The drone_id the client sent, named in error messages when it is a valid id. */
  droneId: unknown;
}

type BodyFormat = 'json' | 'ndjson' | 'protobuf';
const FORMATS: Readonly<Record<string, BodyFormat>> = {
  'application/json': 'json',
  'application/x-ndjson': 'ndjson',
  'application/x-protobuf': 'protobuf',
};

function formatOf(contentType: string | undefined): BodyFormat | undefined {
  const media = contentType?.split(';')[0]?.trim().toLowerCase() ?? '';
  return Object.hasOwn(FORMATS, media) ? FORMATS[media] : undefined;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The points of a body, or why the body as a whole cannot be read. */
function parseBody(format: BodyFormat, body: Buffer, nowUs: number, maxFutureSkewUs: number): Item[] | string {
  if (format === 'protobuf') {
    let points: TelemetryPoint[];
    try {
      points = decodeBatch(body).points;
    } catch (err) {
      return `body is not a protobuf Batch: ${(err as Error).message}`;
    }
    return points.map((decoded, index) => ({
      index,
      label: `point ${index}`,
      result: checked(plainPoint(decoded), nowUs, maxFutureSkewUs),
      droneId: decoded.drone_id,
    }));
  }
  let text: string;
  try {
    text = utf8.decode(body);
  } catch {
    return 'body is not valid UTF-8';
  }
  const item = (index: number, label: string, value: unknown): Item => ({
    index,
    label,
    result: pointFromJson(value, nowUs, maxFutureSkewUs),
    droneId: isObject(value) ? value['drone_id'] : undefined,
  });
  if (format === 'ndjson') {
    const items: Item[] = [];
    text.split('\n').forEach((line, index) => {
      if (line.trim() === '') return;
      const label = `line ${index + 1}`;
      try {
        items.push(item(index, label, JSON.parse(line)));
      } catch (err) {
        items.push({ index, label, result: { field: '', message: `not valid JSON: ${(err as Error).message}` }, droneId: undefined });
      }
    });
    return items;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return `body is not valid JSON: ${(err as Error).message}`;
  }
  if (Array.isArray(value)) return value.map((v, index) => item(index, `point ${index}`, v));
  if (isObject(value)) return [item(0, 'point 0', value)];
  return `body must be a JSON array of points or one point object, got ${show(value)}`;
}

/** The body, or null once it passed maxBytes; reading stops there. Rejects if the client goes away. */
function readBody(req: http.IncomingMessage, maxBytes: number): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (): void => {
      req.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > maxBytes) {
        done();
        req.pause();
        resolve(null);
      } else {
        chunks.push(chunk);
      }
    };
    const onEnd = (): void => {
      done();
      resolve(Buffer.concat(chunks, size));
    };
    const onError = (err: Error): void => {
      done();
      reject(err);
    };
    const onClose = (): void => onError(new Error('the client closed the request before its body ended'));
    req.on('data', onData).on('end', onEnd).on('error', onError).on('close', onClose);
  });
}

function reply(res: http.ServerResponse, status: number, body: object, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(text)), ...headers });
  res.end(text);
}

/**
 * Headers for an answer given before the body was read. While body bytes are still
 * arriving, closing the connection stops them; keeping it alive would make Node read
 * and discard the whole body, however long, to reach the next request.
 */
const unread = (req: http.IncomingMessage, headers: Record<string, string> = {}): Record<string, string> =>
  req.complete ? headers : { ...headers, Connection: 'close' };

const MEDIA_TYPES = Object.keys(FORMATS).join(', ');

class IngestSource implements Source {
  readonly name = 'ingest-api';
  readonly stats: IngestStats = { requests: 0, pointsAccepted: 0, pointsRejected: 0, badRequests: 0 };
  private out: SourceOutput | null = null;

  constructor(private readonly options: IngestApiOptions) {}

  start(out: SourceOutput): void {
    if (this.out !== null) throw new Error('ingest API already started');
    this.out = out;
  }

  // emit is only called synchronously after checking `out`, so clearing it is enough.
  // Requests waiting on flush() still get their answer once the spool settles.
  async stop(): Promise<void> {
    this.out = null;
  }

  async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    this.stats.requests++;
    try {
      await this.serve(req, res);
    } catch (err) {
      // Answered here rather than rejected, so the unread-body rule applies to this answer too.
      reply(res, 500, { error: (err as Error).message }, unread(req));
    }
  }

  private badRequest(req: http.IncomingMessage, res: http.ServerResponse, status: number, error: string, headers?: Record<string, string>): void {
    this.stats.badRequests++;
    reply(res, status, { error }, unread(req, headers));
  }

  /** The output if it takes points now; otherwise answers 503 and returns null. */
  private output(req: http.IncomingMessage, res: http.ServerResponse): SourceOutput | null {
    const out = this.out;
    if (out === null) reply(res, 503, { error: 'the agent is not taking points: the ingest API is stopped' }, unread(req));
    else if (!out.accepting) reply(res, 503, { error: 'the agent is not taking points: its spool is full' }, unread(req, { 'Retry-After': '1' }));
    else return out;
    return null;
  }

  private refuse(req: http.IncomingMessage, res: http.ServerResponse, auth: IngestAuth, reason: IngestRefusal, error: string): void {
    auth.stats.refused[reason]++;
    // RFC 6750 section 3: a 401 names the scheme the client must use.
    const challenge: Record<string, string> = reason === 'forbidden_drone' ? {} : { 'WWW-Authenticate': 'Bearer realm="dronelake"' };
    reply(res, reason === 'forbidden_drone' ? 403 : 401, { error }, unread(req, challenge));
  }

  private async serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    // Before anything else, so that a client without a token learns nothing of the API.
    const { auth } = this.options;
    const grant = auth ? await auth.check(req) : null;
    if (typeof grant === 'string') return this.refuse(req, res, auth!, grant, TOKEN_REFUSAL_MESSAGES[grant]);
    if (req.method !== 'POST') return this.badRequest(req, res, 405, `method ${req.method} is not allowed; use POST`, { Allow: 'POST' });
    const contentType = req.headers['content-type'];
    const format = formatOf(contentType);
    if (format === undefined) {
      const given = contentType === undefined ? 'Content-Type is missing' : `Content-Type ${show(contentType)} is not supported`;
      return this.badRequest(req, res, 415, `${given}; use one of ${MEDIA_TYPES}`);
    }
    // Checked before reading so a full spool costs the client no upload.
    if (this.output(req, res) === null) return;
    const { maxBodyBytes, maxFutureSkewUs } = this.options;
    const tooLarge = `body is larger than ${maxBodyBytes} bytes`;
    if (Number(req.headers['content-length']) > maxBodyBytes) return this.badRequest(req, res, 413, tooLarge);
    const body = await readBody(req, maxBodyBytes);
    // The rest of an oversized body is still on its way: only closing the connection stops it.
    if (body === null) return this.badRequest(req, res, 413, tooLarge, { Connection: 'close' });
    const items = parseBody(format, body, nowMicros(), maxFutureSkewUs);
    if (typeof items === 'string') return this.badRequest(req, res, 400, items);

    // Checked again: the spool may have filled, or the agent stopped, during the upload.
    const out = this.output(req, res);
    if (out === null) return;
    if (auth && grant) {
      // All or nothing: a request that names one drone outside the token's is refused whole.
      let forbidden = 0;
      let first = '';
      for (const { label, result } of items) {
        if ('message' in result || grant.mayWrite(result.drone_id)) continue;
        if (forbidden++ === 0) first = `${label}: token ${grant.token} may not write drone ${result.drone_id}`;
      }
      if (forbidden > 0) {
        auth.stats.pointsForbidden += forbidden;
        return this.refuse(req, res, auth, 'forbidden_drone', `${first} (it may write ${grant.drones.join(',')}); ${forbidden} such points, none accepted`);
      }
    }
    const rejected: RejectedPoint[] = [];
    let accepted = 0;
    for (const { index, label, result, droneId } of items) {
      if ('message' in result) {
        const drone = typeof droneId === 'string' && ID_PATTERN.test(droneId) ? ` (drone ${droneId})` : '';
        rejected.push({ index, field: result.field, message: `${label}${drone}: ${result.message}` });
      } else {
        if (result.stream == null && this.options.defaultStream !== undefined) result.stream = this.options.defaultStream;
        out.emit(result);
        accepted++;
      }
    }
    if (accepted > 0) {
      try {
        await out.flush();
      } catch (err) {
        // Some points may reach the spool anyway; the sink drops the retry's copies by (drone_id, seq).
        reply(res, 503, { error: `the agent could not store the points: ${(err as Error).message}` }, { 'Retry-After': '1' });
        return;
      }
    }
    this.stats.pointsAccepted += accepted;
    this.stats.pointsRejected += rejected.length;
    if (rejected.length === 0) reply(res, 200, { accepted });
    else reply(res, 422, { accepted, rejected });
  }
}

/** A Source whose points come from HTTP requests; `handle` serves POST /v1/points. */
export function createIngestSource(options: IngestApiOptions): Source & {
  handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void>;
  readonly stats: IngestStats;
} {
  return new IngestSource(options);
}
