// The baseline most tutorials build: every point its own JSON message at QoS 1, and a sink
// that parses each one and writes Parquet with parquetjs-lite. It runs in the same harness as
// dronelake's own figures, so the two can be compared on the same machine.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import mqtt from 'mqtt';
import parquet, { type ParquetFieldOptions } from 'parquetjs-lite';
import { LAKE_COLUMNS } from '../proto/columns';
import { nowMicros } from '../proto/time';
import type { TelemetryPoint } from '../proto/types';
import { startRole, type RoleHandle, type RoleStarter } from './procs';
import { PARQUETJS_TYPE } from './parquet-writers';
import { figure, type BenchContext, type Figure } from './report';
import { simulatedPoints } from './points';

const TOPIC_PREFIX = 'naive/telemetry/';
const GATEWAY_ID = 'gw-naive';
// A small pool, cycled with fresh seqs, keeps the publisher's start-up short.
const POOL_POINTS = 20_000;
const DRONES = 1000;
// Keeps the publisher's memory bounded while still never waiting on a single round trip.
const MAX_UNACKED = 1000;
const FLUSH_ROWS = 50_000;
// parquetjs-lite takes seconds per 50k rows; a quick run needs several files in its window.
const QUICK_FLUSH_ROWS = 5_000;
const FLUSH_MS = 2000;
const WARMUP_MS = 2000;
const QUICK_WARMUP_MS = 1000;
// Reports carry each file close's own time, so polling can be coarse.
const POLL_MS = 3000;
const GIVE_UP_MS = 60_000;

const SECTION = 'baselines';

/** One JSON message on the wire: the point's fields, enums by name, plus its gateway. */
type NaiveMessage = Omit<TelemetryPoint, 'gps_fix' | 'flight_state'> & {
  gps_fix: string | null;
  flight_state: string | null;
  gateway_id: string;
};

/** The sink's progress at the moment it closed a Parquet file. */
interface FileClose {
  /** Epoch milliseconds. */
  at: number;
  /** Rows in closed files so far. */
  written: number;
  cpuSeconds: number;
}

const ENUM_COLUMNS = LAKE_COLUMNS.filter((c) => c.enumNames !== undefined);

function toMessage(point: TelemetryPoint): NaiveMessage {
  const message: Record<string, unknown> = { ...point, gateway_id: GATEWAY_ID };
  for (const column of ENUM_COLUMNS) {
    const value = message[column.name];
    if (value === undefined || value === null) {
      message[column.name] = null;
      continue;
    }
    const name = column.enumNames?.[value as number];
    if (name === undefined) throw new Error(`${column.name}: no name for enum value ${String(value)}`);
    message[column.name] = name;
  }
  return message as NaiveMessage;
}


// GZIP is the smallest codec parquetjs-lite really has (no ZSTD; BROTLI is a stub that throws).
const naiveSchema = () =>
  new parquet.ParquetSchema(
    Object.fromEntries(
      LAKE_COLUMNS.map((column): [string, ParquetFieldOptions] => [
        column.name,
        { type: PARQUETJS_TYPE[column.kind], optional: true, compression: 'GZIP' },
      ]),
    ),
  );

export const naiveRoles: Record<string, RoleStarter> = {
  /** Publishes points one JSON message each, as fast as MAX_UNACKED outstanding PUBACKs allow; for `seconds` if given. */
  async 'naive-publisher'(args, log) {
    const points = await simulatedPoints(POOL_POINTS, Number(args['drones']));
    const messages = points.map(toMessage);
    const topics = points.map((p) => TOPIC_PREFIX + p.drone_id);
    // Each pass over the pool shifts seq and ts past the previous pass, so every row is distinct
    // and each drone's time keeps moving forward.
    const seqSpan = points.reduce((max, p) => Math.max(max, p.seq), 0) + 1;
    const firstTs = points.reduce((min, p) => Math.min(min, p.ts), Infinity);
    const tsSpan = points.reduce((max, p) => Math.max(max, p.ts), 0) - firstTs + 1;

    const client = await mqtt.connectAsync(String(args['broker']), { clientId: 'naive-publisher' });
    let published = 0;
    let acked = 0;
    let payloadBytes = 0;
    let running = true;
    const pump = () => {
      while (running && published - acked < MAX_UNACKED) {
        const i = published % points.length;
        const pass = Math.floor(published / points.length);
        const message = messages[i]!;
        message.seq = points[i]!.seq + pass * seqSpan;
        message.ts = points[i]!.ts + pass * tsSpan;
        const payload = JSON.stringify(message);
        payloadBytes += Buffer.byteLength(payload);
        published++;
        client.publish(topics[i]!, payload, { qos: 1 }, (err) => {
          if (err) {
            log.error({ err: err.message }, 'naive publish failed');
            return;
          }
          acked++;
          pump();
        });
      }
    };
    const seconds = Number(args['seconds'] ?? 0);
    if (seconds > 0) setTimeout(() => (running = false), seconds * 1000).unref();
    pump();
    return {
      info: {},
      stats: () => ({ published, acked, payloadBytes }),
      async stop() {
        running = false;
        // end() without force waits for every outstanding PUBACK.
        await client.endAsync();
      },
    };
  },

  /** Buffers parsed messages and writes one GZIP Parquet file per `flushRows` rows or 2 s. */
  async 'naive-sink'(args) {
    const dir = String(args['dir']);
    const flushRows = Number(args['flushRows'] ?? FLUSH_ROWS);
    await mkdir(dir, { recursive: true });
    const schema = naiveSchema();
    let rows: Record<string, unknown>[] = [];
    let received = 0;
    let written = 0;
    let files = 0;
    const closes: FileClose[] = [];
    let writing: Promise<void> | undefined;
    let timer: NodeJS.Timeout | undefined;
    let stopping = false;

    const write = async (batch: Record<string, unknown>[]) => {
      const file = path.join(dir, `telemetry-${String(files).padStart(6, '0')}.parquet`);
      // One row group per file: parquetjs-lite's default of 4096 rows would cost it
      // compression for reasons unrelated to this pipeline's design.
      const writer = await parquet.ParquetWriter.openFile(schema, file, { rowGroupSize: flushRows });
      for (const row of batch) await writer.appendRow(row);
      await writer.close();
      files++;
      written += batch.length;
      const cpu = process.cpuUsage();
      closes.push({ at: Date.now(), written, cpuSeconds: (cpu.user + cpu.system) / 1e6 });
    };
    const tick = () => {
      if (rows.length > 0) void flush();
      else timer = setTimeout(tick, FLUSH_MS);
    };
    // A failed write is left unhandled on purpose: it ends the process, and the bench with it.
    const flush = () => {
      clearTimeout(timer);
      const batch = rows;
      rows = [];
      writing = write(batch).finally(() => {
        writing = undefined;
        if (!stopping) timer = setTimeout(tick, FLUSH_MS);
      });
      return writing;
    };

    const client = await mqtt.connectAsync(String(args['broker']), { clientId: 'naive-sink' });
    client.on('message', (_topic, payload) => {
      const row = JSON.parse(payload.toString()) as Record<string, unknown>;
      row['ingested_at'] = nowMicros();
      rows.push(row);
      received++;
      if (rows.length >= flushRows) void flush();
    });
    // MQTT.js reads the next packet (and sends this one's PUBACK) only once handleMessage calls
    // back, so holding it during a write is what stops rows piling up without bound meanwhile.
    client.handleMessage = (_packet, done) => {
      if (writing) writing.then(() => done(), done);
      else done();
    };
    await client.subscribeAsync(`${TOPIC_PREFIX}+`, { qos: 1 });
    timer = setTimeout(tick, FLUSH_MS);
    return {
      info: {},
      stats: () => ({ received, written, files, closes }),
      async stop() {
        stopping = true;
        clearTimeout(timer);
        await client.endAsync();
        await writing;
        if (rows.length > 0) await flush();
      },
    };
  },
};

/** The sink's first file close at or after `after`, or null if none has come by `deadline`. */
async function closeAfter(sink: RoleHandle, after: number, deadline: number): Promise<FileClose | null> {
  await sleep(Math.max(0, after - Date.now()));
  for (;;) {
    const closes = (await sink.report()).stats['closes'] as FileClose[];
    const close = closes.find((c) => c.at >= after);
    if (close) return close;
    if (Date.now() >= deadline) return null;
    await sleep(POLL_MS);
  }
}

/** The tutorial pipeline's Parquet throughput, sink CPU and message size. */
export async function runNaiveBaseline(ctx: BenchContext): Promise<Figure[]> {
  const windowMs = ctx.quick ? 2000 : 20_000;
  const flushRows = ctx.quick ? QUICK_FLUSH_ROWS : FLUSH_ROWS;
  const handles: RoleHandle[] = [];
  const start = (role: string, args: Parameters<typeof startRole>[1]) => {
    const handle = startRole(role, args);
    handles.push(handle);
    return handle;
  };
  try {
    const broker = start('broker', {});
    const url = String((await broker.ready)['url']);
    const sink = start('naive-sink', { broker: url, dir: path.join(ctx.tmp, 'naive-lake'), flushRows });
    await sink.ready;
    ctx.progress(`naive: generating ${POOL_POINTS.toLocaleString('en-US')} points for ${DRONES} drones`);
    const publisher = start('naive-publisher', { broker: url, drones: DRONES });
    await publisher.ready;
    const warmupMs = ctx.quick ? QUICK_WARMUP_MS : WARMUP_MS;
    ctx.progress(`naive: publishing; warming up ${warmupMs / 1000} s, then measuring at least ${windowMs / 1000} s`);
    await sleep(warmupMs);

    // Rows reach Parquet a whole file at a time, seconds apart, so the window runs from one
    // file close to the first close at least windowMs later: a fixed window would count a
    // partial cycle, or on a slow writer no file at all.
    const deadline = Date.now() + windowMs + GIVE_UP_MS;
    const first = await closeAfter(sink, Date.now(), deadline);
    const last = first && (await closeAfter(sink, first.at + windowMs, deadline));
    let pointsPerSec: number | null = null;
    let cpuPerMillion: number | null = null;
    if (first && last) {
      const rows = last.written - first.written;
      const seconds = (last.at - first.at) / 1000;
      pointsPerSec = rows / seconds;
      cpuPerMillion = ((last.cpuSeconds - first.cpuSeconds) / rows) * 1e6;
      ctx.progress(`naive: ${rows.toLocaleString('en-US')} rows into Parquet in ${seconds.toFixed(1)} s`);
    } else {
      ctx.progress(`naive: the sink closed no Parquet files ${windowMs / 1000} s apart within ${(windowMs + GIVE_UP_MS) / 1000} s; no rate`);
    }

    const published = (await publisher.stop()).stats as { published: number; acked: number; payloadBytes: number };
    const sunk = (await sink.stop()).stats;
    await broker.stop();
    const received = Number(sunk['received']);
    ctx.progress(
      `naive: published ${published.published.toLocaleString('en-US')}, acked ${published.acked.toLocaleString('en-US')}, ` +
        `received ${received.toLocaleString('en-US')}, written ${Number(sunk['written']).toLocaleString('en-US')} in ${String(sunk['files'])} files`,
    );
    // Not a bench fault but the design's: the broker acks QoS 1 on receipt, and a clean-session
    // subscriber that disconnects drops whatever the broker still had on its way to it.
    if (received < published.acked) {
      ctx.progress(`naive: ${(published.acked - received).toLocaleString('en-US')} acked points were still on their way to the sink when it stopped, and are lost`);
    }
    const bytesPerPoint = published.published > 0 ? published.payloadBytes / published.published : null;
    return [
      figure(SECTION, 'naive_points_per_sec', 'tutorial pipeline: JSON per point, QoS 1, parquetjs-lite', pointsPerSec, 'points/s'),
      figure(SECTION, 'naive_sink_cpu_seconds_per_million', 'tutorial pipeline: sink CPU', cpuPerMillion, 'CPU s / 1M points'),
      figure(SECTION, 'naive_wire_bytes_per_point', 'tutorial pipeline: JSON message per point', bytesPerPoint, 'B/point'),
    ];
  } finally {
    for (const handle of handles) handle.kill();
  }
}
