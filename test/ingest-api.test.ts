import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createIngestSource, pointFromJson, type IngestApiOptions } from '../agent/ingest-api';
import type { SourceOutput } from '../agent/source';
import { encodeBatch } from '../proto/codec';
import { FlightState, GpsFix, type TelemetryPoint } from '../proto/types';

const SKEW_US = 60e6;
const MAX_BODY = 64 * 1024;
// Long enough that an answer sent without waiting for flush() would arrive before it resolves.
const FLUSH_DELAY_MS = 30;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Records what the source does, in order; flush() resolves (or rejects) only after a delay. */
class FakeOutput implements SourceOutput {
  readonly points: TelemetryPoint[] = [];
  readonly events: string[] = [];
  accepting = true;
  flushError: Error | null = null;
  emitError: Error | null = null;
  emit(point: TelemetryPoint): void {
    if (this.emitError) throw this.emitError;
    this.points.push(point);
    this.events.push(`emit ${point.drone_id}`);
  }
  async flush(): Promise<void> {
    this.events.push('flush');
    await sleep(FLUSH_DELAY_MS);
    if (this.flushError) throw this.flushError;
    this.events.push('flushed');
  }
}

const servers: http.Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

async function serve(options: Partial<IngestApiOptions> = {}, start = true) {
  const source = createIngestSource({ maxBodyBytes: MAX_BODY, maxFutureSkewUs: SKEW_US, ...options });
  const out = new FakeOutput();
  if (start) source.start(out);
  const server = http.createServer((req, res) => void source.handle(req, res));
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}/v1/points`;
  /** POSTs `body`; the answer's arrival is recorded in out.events, after whatever the source did. */
  const post = async (body: string | Uint8Array, contentType?: string) => {
    const res = await fetch(url, { method: 'POST', headers: contentType === undefined ? {} : { 'content-type': contentType }, body });
    out.events.push(`response ${res.status}`);
    return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> };
  };
  return { source, out, url, port, post };
}

const TS_ISO = '2026-03-01T12:00:00.123456Z';
const TS_ISO_US = 1772366400123456;

const FULL_JSON = {
  drone_id: 'd-1',
  seq: 7,
  ts: TS_ISO,
  lat: 47.3769,
  lon: -8.5417,
  alt_m: 408.5,
  rel_alt_m: 30.25,
  ground_speed_mps: 12.5,
  vertical_speed_mps: -1.5,
  heading_deg: 271.5,
  battery_pct: 88.5,
  battery_voltage_v: 24.1,
  gps_fix: '3d',
  satellites: 14,
  flight_state: 'cruise',
  armed: true,
  mission_id: 'm-42',
  stream: 4242,
};
const FULL_POINT: TelemetryPoint = { ...FULL_JSON, ts: TS_ISO_US, gps_fix: GpsFix.fix3d, flight_state: FlightState.cruise };

const NO_MEASUREMENTS = {
  lat: null,
  lon: null,
  alt_m: null,
  rel_alt_m: null,
  ground_speed_mps: null,
  vertical_speed_mps: null,
  heading_deg: null,
  battery_pct: null,
  battery_voltage_v: null,
  gps_fix: null,
  satellites: null,
  flight_state: null,
  armed: null,
  mission_id: null,
  // Not a measurement: absent, the point counts in its batch's stream.
  stream: null,
};
const MINIMAL_JSON = { drone_id: 'd-2', seq: 0, ts: 1767225600123.5 };
const MINIMAL_POINT: TelemetryPoint = { drone_id: 'd-2', seq: 0, ts: 1767225600123500, ...NO_MEASUREMENTS };

describe('accepted points', () => {
  it('takes a JSON array, emits every point, and answers only after flush resolved', async () => {
    const { source, out, post } = await serve();
    const res = await post(JSON.stringify([FULL_JSON, MINIMAL_JSON]), 'application/json');
    expect(res.status).toBe(200);
    expect(res.body).toStrictEqual({ accepted: 2 });
    expect(out.points).toStrictEqual([FULL_POINT, MINIMAL_POINT]);
    expect(out.events).toEqual(['emit d-1', 'emit d-2', 'flush', 'flushed', 'response 200']);
    expect(source.stats).toEqual({ requests: 1, pointsAccepted: 2, pointsRejected: 0, badRequests: 0 });
  });

  it('takes a single JSON object, with parameters on the content type', async () => {
    const { out, post } = await serve();
    const res = await post(JSON.stringify(FULL_JSON), 'Application/JSON; charset=utf-8');
    expect(res.status).toBe(200);
    expect(res.body).toStrictEqual({ accepted: 1 });
    expect(out.points).toStrictEqual([FULL_POINT]);
  });

  it('takes NDJSON, skipping blank lines and tolerating CRLF', async () => {
    const { out, post } = await serve();
    const body = `${JSON.stringify(FULL_JSON)}\r\n\n   \n${JSON.stringify(MINIMAL_JSON)}\n`;
    const res = await post(body, 'application/x-ndjson');
    expect(res.status).toBe(200);
    expect(res.body).toStrictEqual({ accepted: 2 });
    expect(out.points).toStrictEqual([FULL_POINT, MINIMAL_POINT]);
    expect(out.events.slice(-3)).toEqual(['flush', 'flushed', 'response 200']);
  });

  it('takes the points of a protobuf Batch as plain points, whatever its gateway_id and batch_seq', async () => {
    const { out, post } = await serve();
    const batch = encodeBatch({ gateway_id: 'not-this-gateway', batch_seq: 99, sent_at: 1, points: [FULL_POINT, { drone_id: 'd-2', seq: 0, ts: 1767225600123500 }] });
    const res = await post(batch, 'application/x-protobuf');
    expect(res.status).toBe(200);
    expect(res.body).toStrictEqual({ accepted: 2 });
    expect(out.points).toStrictEqual([FULL_POINT, MINIMAL_POINT]);
    expect(out.events.slice(-3)).toEqual(['flush', 'flushed', 'response 200']);
  });

  it('reads nulls as unknown and enums given as numbers', async () => {
    const { out, post } = await serve();
    const res = await post(JSON.stringify({ ...MINIMAL_JSON, ...NO_MEASUREMENTS, gps_fix: 6, flight_state: 8 }), 'application/json');
    expect(res.status).toBe(200);
    expect(out.points).toStrictEqual([{ ...MINIMAL_POINT, gps_fix: GpsFix.rtkFixed, flight_state: FlightState.emergency }]);
  });

  it('takes a body of exactly maxBodyBytes', async () => {
    const { out, post } = await serve({ maxBodyBytes: 200 });
    const json = JSON.stringify(MINIMAL_JSON);
    const res = await post(json.padEnd(200, ' '), 'application/json');
    expect(res.status).toBe(200);
    expect(out.points).toHaveLength(1);
  });

  it('answers an empty array without flushing', async () => {
    const { out, post } = await serve();
    const res = await post('[]', 'application/json');
    expect(res.status).toBe(200);
    expect(res.body).toStrictEqual({ accepted: 0 });
    expect(out.events).toEqual(['response 200']);
  });
});

describe('ts', () => {
  const NOW_US = Date.UTC(2026, 10, 25) * 1000;
  const tsOf = (ts: unknown) => pointFromJson({ drone_id: 'd-1', seq: 1, ts }, NOW_US, SKEW_US);

  it.each([
    [TS_ISO, TS_ISO_US],
    ['2026-03-01T14:00:00.123456+02:00', TS_ISO_US],
    ['2026-03-01T07:30:00.123456-04:30', TS_ISO_US],
    ['2026-03-01t12:00:00.123456z', TS_ISO_US],
    ['2026-03-01 12:00:00.123456Z', TS_ISO_US],
    ['2026-03-01T12:00:00.1234565Z', TS_ISO_US + 1],
    ['2026-03-01T12:00:00.1234564999Z', TS_ISO_US],
    ['2026-03-01T12:00:00.5Z', TS_ISO_US - 123456 + 500000],
    ['2026-03-01T12:00:00Z', TS_ISO_US - 123456],
    ['2024-02-29T00:00:00Z', 1709164800000000],
    [1767225600123.5, 1767225600123500],
    [1767225600123, 1767225600123000],
  ])('%s is %i µs', (ts, us) => {
    expect(tsOf(ts)).toMatchObject({ ts: us });
  });

  it.each([
    '2026-02-29T12:00:00Z',
    '2026-04-31T12:00:00Z',
    '2026-13-01T12:00:00Z',
    '2026-03-01T24:00:00Z',
    '2026-03-01T12:60:00Z',
    '2026-03-01T12:00:00+24:00',
    '2026-03-01T12:00:00',
    '2026-03-01T12:00:00.Z',
    '2026-03-01',
    '1767225600123',
    true,
  ])('rejects %s', (ts) => {
    expect(tsOf(ts)).toMatchObject({ field: 'ts', message: expect.stringMatching(/^ts must be epoch milliseconds or an RFC 3339 date-time/) });
  });
});

/** Every way a point can be wrong, each as JSON text so non-finite numbers (1e999) can be written. */
const BAD: Array<[string, string, string, RegExp]> = [
  ['drone_id pattern', '{"drone_id":"a/b","seq":1,"ts":1767225600000}', 'drone_id', /^point \d+: drone_id "a\/b" does not match/],
  ['drone_id missing', '{"seq":1,"ts":1767225600000}', 'drone_id', /^point \d+: drone_id is required$/],
  ['drone_id type', '{"drone_id":5,"seq":1,"ts":1767225600000}', 'drone_id', /^point \d+: drone_id must be a string, got 5$/],
  ['seq negative', '{"drone_id":"d-bad","seq":-1,"ts":1767225600000}', 'seq', /^point \d+ \(drone d-bad\): seq -1 is not an integer in 0\.\./],
  ['seq fraction', '{"drone_id":"d-bad","seq":1.5,"ts":1767225600000}', 'seq', /seq 1\.5 is not an integer/],
  ['seq unsafe', '{"drone_id":"d-bad","seq":9007199254740993,"ts":1767225600000}', 'seq', /seq 9007199254740992 is not an integer/],
  ['seq type', '{"drone_id":"d-bad","seq":"7","ts":1767225600000}', 'seq', /seq must be a finite number, got "7"$/],
  ['seq missing', '{"drone_id":"d-bad","ts":1767225600000}', 'seq', /seq is required$/],
  ['stream negative', '{"drone_id":"d-bad","seq":1,"stream":-3,"ts":1767225600000}', 'stream', /^point \d+ \(drone d-bad\): stream -3 is not an integer in 0\.\.9007199254740991$/],
  ['stream unsafe', '{"drone_id":"d-bad","seq":1,"stream":18446744073709551615,"ts":1767225600000}', 'stream', /stream 18446744073709552000 is not an integer/],
  ['stream type', '{"drone_id":"d-bad","seq":1,"stream":"abc","ts":1767225600000}', 'stream', /stream must be a finite number, got "abc"$/],
  ['ts missing', '{"drone_id":"d-bad","seq":1,"ts":null}', 'ts', /ts is required$/],
  ['ts before 2000', '{"drone_id":"d-bad","seq":1,"ts":946684799999}', 'ts', /ts 1999-12-31T23:59:59\.999Z is before 2000-01-01T00:00:00\.000Z$/],
  ['ts in future', `{"drone_id":"d-bad","seq":1,"ts":${Date.now() + 3_600_000}}`, 'ts', /ts \S+ is more than 60 s ahead of the gateway's clock$/],
  ['ts not safe', '{"drone_id":"d-bad","seq":1,"ts":1e20}', 'ts', /ts 1e\+23 µs is not a safe integer$/],
  ['ts infinite', '{"drone_id":"d-bad","seq":1,"ts":1e999}', 'ts', /ts must be epoch milliseconds/],
  ['lat range', '{"drone_id":"d-bad","seq":1,"ts":1767225600000,"lat":91}', 'lat', /^point \d+ \(drone d-bad\): lat 91 is outside -90\.\.90$/],
  ['lat infinite', '{"drone_id":"d-bad","seq":1,"ts":1767225600000,"lat":1e999}', 'lat', /lat must be a finite number, got Infinity$/],
  ['lon range', '{"drone_id":"d-bad","seq":1,"ts":1767225600000,"lon":-180.5}', 'lon', /lon -180\.5 is outside -180\.\.180$/],
  ['battery_pct range', '{"drone_id":"d-bad","seq":1,"ts":1767225600000,"battery_pct":100.5}', 'battery_pct', /battery_pct 100\.5 is outside 0\.\.100$/],
  ['heading_deg type', '{"drone_id":"d-bad","seq":1,"ts":1767225600000,"heading_deg":"271"}', 'heading_deg', /heading_deg must be a finite number, got "271"$/],
  ['gps_fix value', '{"drone_id":"d-bad","seq":1,"ts":1767225600000,"gps_fix":7}', 'gps_fix', /gps_fix 7 is not a value in 0\.\.6$/],
  ['gps_fix name', '{"drone_id":"d-bad","seq":1,"ts":1767225600000,"gps_fix":"4d"}', 'gps_fix', /gps_fix "4d" is not one of unspecified, none, 2d, 3d, dgps, rtk_float, rtk_fixed$/],
  ['flight_state value', '{"drone_id":"d-bad","seq":1,"ts":1767225600000,"flight_state":9}', 'flight_state', /flight_state 9 is not a value in 0\.\.8$/],
  ['flight_state name', '{"drone_id":"d-bad","seq":1,"ts":1767225600000,"flight_state":"Cruise"}', 'flight_state', /flight_state "Cruise" is not one of/],
  ['flight_state type', '{"drone_id":"d-bad","seq":1,"ts":1767225600000,"flight_state":true}', 'flight_state', /flight_state must be a name or a number, got true$/],
  ['satellites negative', '{"drone_id":"d-bad","seq":1,"ts":1767225600000,"satellites":-1}', 'satellites', /satellites must be an integer in 0\.\.4294967295, got -1$/],
  ['satellites fraction', '{"drone_id":"d-bad","seq":1,"ts":1767225600000,"satellites":2.5}', 'satellites', /satellites must be an integer/],
  ['satellites over uint32', '{"drone_id":"d-bad","seq":1,"ts":1767225600000,"satellites":4294967296}', 'satellites', /satellites must be an integer/],
  ['armed type', '{"drone_id":"d-bad","seq":1,"ts":1767225600000,"armed":"yes"}', 'armed', /armed must be true or false, got "yes"$/],
  ['mission_id type', '{"drone_id":"d-bad","seq":1,"ts":1767225600000,"mission_id":42}', 'mission_id', /mission_id must be a string, got 42$/],
  ['unknown field', '{"drone_id":"d-bad","seq":1,"ts":1767225600000,"lattitude":47}', 'lattitude', /^point \d+ \(drone d-bad\): unknown field "lattitude"$/],
  ['not an object', '[1,2]', '', /^point \d+: a point must be a JSON object, got an array$/],
];

describe('rejected points', () => {
  it('reports each bad point of a JSON array by index and field, and still stores the good ones', async () => {
    const { source, out, post } = await serve();
    const body = `[${JSON.stringify(FULL_JSON)},${BAD.map(([, json]) => json).join(',')},${JSON.stringify(MINIMAL_JSON)}]`;
    const res = await post(body, 'application/json');
    expect(res.status).toBe(422);
    expect(res.body['accepted']).toBe(2);
    const rejected = res.body['rejected'] as Array<{ index: number; field: string; message: string }>;
    expect(rejected.map(({ index, field }) => ({ index, field }))).toEqual(BAD.map(([, , field], i) => ({ index: i + 1, field })));
    BAD.forEach(([what, , , message], i) => {
      expect(rejected[i]?.message, what).toMatch(message);
      expect(rejected[i]?.message, what).toMatch(new RegExp(`^point ${i + 1}[ :]`));
    });
    expect(out.points).toStrictEqual([FULL_POINT, MINIMAL_POINT]);
    expect(out.events).toEqual(['emit d-1', 'emit d-2', 'flush', 'flushed', 'response 422']);
    expect(source.stats).toEqual({ requests: 1, pointsAccepted: 2, pointsRejected: BAD.length, badRequests: 0 });
  });

  it('reports NDJSON points by line, including lines that are not JSON', async () => {
    const { out, post } = await serve();
    const body = [JSON.stringify(FULL_JSON), '', '{"drone_id":"d-3",', '{"drone_id":"d-3","seq":1,"ts":1767225600000,"lat":91}', JSON.stringify(MINIMAL_JSON)].join('\n');
    const res = await post(body, 'application/x-ndjson');
    expect(res.status).toBe(422);
    expect(res.body['accepted']).toBe(2);
    expect(res.body['rejected']).toEqual([
      { index: 2, field: '', message: expect.stringMatching(/^line 3: not valid JSON: /) },
      { index: 3, field: 'lat', message: 'line 4 (drone d-3): lat 91 is outside -90..90' },
    ]);
    expect(out.points).toStrictEqual([FULL_POINT, MINIMAL_POINT]);
  });

  it('checks protobuf points against the same rules', async () => {
    const { out, post } = await serve();
    const good: TelemetryPoint = { drone_id: 'd-2', seq: 0, ts: 1767225600123500 };
    const batch = encodeBatch({
      gateway_id: 'gw',
      batch_seq: 1,
      sent_at: 1,
      points: [{ ...good, lat: Number.NaN }, { ...good, drone_id: 'a b' }, { ...good, seq: 2 ** 53 + 2 }, { ...good, ts: 0 }, { ...good, gps_fix: 9 }, good],
    });
    const res = await post(batch, 'application/x-protobuf');
    expect(res.status).toBe(422);
    expect(res.body).toEqual({
      accepted: 1,
      rejected: [
        { index: 0, field: 'lat', message: 'point 0 (drone d-2): lat NaN is not a finite number' },
        { index: 1, field: 'drone_id', message: expect.stringMatching(/^point 1: drone_id "a b" does not match/) },
        { index: 2, field: 'seq', message: expect.stringMatching(/^point 2 \(drone d-2\): seq 9007199254740994 is not an integer/) },
        { index: 3, field: 'ts', message: 'point 3 (drone d-2): ts 1970-01-01T00:00:00.000Z is before 2000-01-01T00:00:00.000Z' },
        { index: 4, field: 'gps_fix', message: 'point 4 (drone d-2): gps_fix 9 is not a value in 0..6' },
      ],
    });
    expect(out.points).toStrictEqual([MINIMAL_POINT]);
  });

  it('answers 422 without flushing when no point is good', async () => {
    const { out, post } = await serve();
    const res = await post('{"drone_id":"d-1","seq":1,"ts":1767225600000,"lat":-91}', 'application/json');
    expect(res.status).toBe(422);
    expect(res.body).toEqual({ accepted: 0, rejected: [{ index: 0, field: 'lat', message: 'point 0 (drone d-1): lat -91 is outside -90..90' }] });
    expect(out.events).toEqual(['response 422']);
  });
});

describe('bad requests', () => {
  it('answers 405 with Allow: POST to other methods', async () => {
    const { source, out, url } = await serve();
    const res = await fetch(url);
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('POST');
    expect(out.events).toEqual([]);
    expect(source.stats.badRequests).toBe(1);
  });

  it('answers 413 from Content-Length before reading the body', async () => {
    const { source, out, post } = await serve({ maxBodyBytes: 100 });
    const res = await post(JSON.stringify([MINIMAL_JSON, MINIMAL_JSON, MINIMAL_JSON]), 'application/json');
    expect(res.status).toBe(413);
    expect(res.body['error']).toBe('body is larger than 100 bytes');
    expect(out.events).toEqual(['response 413']);
    expect(source.stats.badRequests).toBe(1);
  });

  it('answers 413 to a chunked body as soon as it passes the limit, without waiting for its end', async () => {
    const { out, port } = await serve({ maxBodyBytes: 1000 });
    const req = http.request({ host: '127.0.0.1', port, path: '/v1/points', method: 'POST', headers: { 'content-type': 'application/x-ndjson' } });
    const answered = new Promise<http.IncomingMessage>((resolve, reject) => req.on('response', resolve).on('error', reject));
    req.write(' '.repeat(600));
    req.write(' '.repeat(600));
    // The request stays open: only an answer given mid-body can arrive.
    const res = await Promise.race([answered, sleep(5000).then(() => null)]);
    req.destroy();
    expect(res?.statusCode).toBe(413);
    expect(res?.headers.connection).toBe('close');
    expect(out.events).toEqual([]);
  });

  it('closes the connection when it answers before a body that is still arriving', async () => {
    const { port } = await serve();
    const req = http.request({ host: '127.0.0.1', port, path: '/v1/points', method: 'POST', headers: { 'content-type': 'text/plain' } });
    const answered = new Promise<http.IncomingMessage>((resolve, reject) => req.on('response', resolve).on('error', reject));
    req.write('{"drone_id":');
    const res = await Promise.race([answered, sleep(5000).then(() => null)]);
    req.destroy();
    expect(res?.statusCode).toBe(415);
    expect(res?.headers.connection).toBe('close');
  });

  it.each([
    ['text/plain', 'text/plain', 'Content-Type "text/plain" is not supported'],
    ['missing', undefined, 'Content-Type is missing'],
  ])('answers 415 to content type %s', async (_, contentType, problem) => {
    const { source, out, post } = await serve();
    // A byte body, because fetch labels a string body text/plain itself.
    const res = await post(new TextEncoder().encode(JSON.stringify(MINIMAL_JSON)), contentType);
    expect(res.status).toBe(415);
    expect(res.body['error']).toBe(`${problem}; use one of application/json, application/x-ndjson, application/x-protobuf`);
    expect(out.events).toEqual(['response 415']);
    expect(source.stats.badRequests).toBe(1);
  });

  it.each([
    ['broken JSON', 'application/json', '[{"drone_id":', /^body is not valid JSON: /],
    ['a JSON scalar', 'application/json', '42', /^body must be a JSON array of points or one point object, got 42$/],
    ['an empty JSON body', 'application/json', '', /^body is not valid JSON: /],
    ['invalid UTF-8', 'application/x-ndjson', new Uint8Array([0x7b, 0xff, 0x7d]), /^body is not valid UTF-8$/],
    ['bytes that are not a Batch', 'application/x-protobuf', new Uint8Array([0x0a, 0xff, 0xff]), /^body is not a protobuf Batch: /],
  ])('answers 400 to %s', async (_, contentType, body, error) => {
    const { source, out, post } = await serve();
    const res = await post(body, contentType);
    expect(res.status).toBe(400);
    expect(res.body['error']).toMatch(error);
    expect(out.events).toEqual(['response 400']);
    expect(source.stats).toMatchObject({ requests: 1, badRequests: 1, pointsRejected: 0 });
  });
});

describe('when the agent cannot take points', () => {
  it('answers 503 with Retry-After while the output is not accepting, emitting nothing', async () => {
    const { source, out, post } = await serve();
    out.accepting = false;
    const res = await post(JSON.stringify(MINIMAL_JSON), 'application/json');
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    expect(out.events).toEqual(['response 503']);
    out.accepting = true;
    expect((await post(JSON.stringify(MINIMAL_JSON), 'application/json')).status).toBe(200);
    expect(source.stats).toEqual({ requests: 2, pointsAccepted: 1, pointsRejected: 0, badRequests: 0 });
  });

  it('checks again once the body is in, as the spool may fill during the upload', async () => {
    const { source, out, port } = await serve();
    const req = http.request({ host: '127.0.0.1', port, path: '/v1/points', method: 'POST', headers: { 'content-type': 'application/json' } });
    const answered = new Promise<http.IncomingMessage>((resolve, reject) => req.on('response', resolve).on('error', reject));
    req.write(JSON.stringify(MINIMAL_JSON).slice(0, 10));
    await vi.waitFor(() => expect(source.stats.requests).toBe(1));
    out.accepting = false;
    req.end(JSON.stringify(MINIMAL_JSON).slice(10));
    const res = await answered;
    res.resume();
    expect(res.statusCode).toBe(503);
    expect(res.headers['retry-after']).toBe('1');
    expect(out.events).toEqual([]);
  });

  it('answers 503 with the error when flush rejects, counting nothing as accepted', async () => {
    const { source, out, post } = await serve();
    out.flushError = new Error('spool disk is full');
    const res = await post(`[${JSON.stringify(MINIMAL_JSON)},{"drone_id":"d-2","seq":1,"ts":1767225600000,"lat":91}]`, 'application/json');
    expect(res.status).toBe(503);
    expect(res.body['error']).toBe('the agent could not store the points: spool disk is full');
    expect(out.events).toEqual(['emit d-2', 'flush', 'response 503']);
    expect(source.stats).toEqual({ requests: 1, pointsAccepted: 0, pointsRejected: 0, badRequests: 0 });
  });

  it('answers 503 before start and after stop', async () => {
    const { source, out, post } = await serve({}, false);
    expect((await post(JSON.stringify(MINIMAL_JSON), 'application/json')).status).toBe(503);
    source.start(out);
    expect(() => source.start(out)).toThrow(/already started/);
    expect((await post(JSON.stringify(MINIMAL_JSON), 'application/json')).status).toBe(200);
    await source.stop();
    const res = await post(JSON.stringify(MINIMAL_JSON), 'application/json');
    expect(res.status).toBe(503);
    expect(res.body['error']).toMatch(/stopped/);
    expect(out.points).toHaveLength(1);
  });

  it('answers 500 when the output throws, and keeps serving', async () => {
    const { out, post } = await serve();
    out.emitError = new Error('batcher closed');
    const res = await post(JSON.stringify(MINIMAL_JSON), 'application/json');
    expect(res.status).toBe(500);
    expect(res.body['error']).toBe('batcher closed');
    out.emitError = null;
    expect((await post(JSON.stringify(MINIMAL_JSON), 'application/json')).status).toBe(200);
  });
});
