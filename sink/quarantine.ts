import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { FLIGHT_STATE_NAMES, GPS_FIX_NAMES } from '../proto/schema';
import type { TelemetryPoint } from '../proto/types';
import { QUARANTINE_PREFIX } from './layout';
import { publishOwn, type LakeStorage } from './storage';

/**
 * Invariant 5: bad input is kept, with the reason, next to the data, as NDJSON any engine
 * reads (`read_json('.../_quarantine/points/**')`). Records wait in memory for the next
 * commit and are published with the same create-only step as the Parquet files, before
 * the commit's acks.
 */
export interface QuarantineBuffer {
  batches: string[];
  points: string[];
  bytes: number;
}

/** Each kind's NDJSON fields with their SQL types, for readers. */
export const QUARANTINE_COLUMNS = {
  batches: { received_at: 'TIMESTAMPTZ', topic: 'VARCHAR', gateway_id: 'VARCHAR', reason: 'VARCHAR', detail: 'VARCHAR', payload_base64: 'VARCHAR' },
  points: { received_at: 'TIMESTAMPTZ', gateway_id: 'VARCHAR', batch_seq: 'UBIGINT', rule: 'VARCHAR', point: 'JSON' },
} as const;
export type QuarantineKind = keyof typeof QUARANTINE_COLUMNS;

export const newQuarantine = (): QuarantineBuffer => ({ batches: [], points: [], bytes: 0 });

const isoMicros = (us: number): string => {
  const iso = new Date(Math.floor(us / 1000)).toISOString();
  return `${iso.slice(0, 23)}${String(Math.floor(us % 1000)).padStart(3, '0')}Z`;
};

function push(list: string[], buffer: QuarantineBuffer, record: Record<string, unknown>): void {
  const line = JSON.stringify(record);
  list.push(line);
  buffer.bytes += line.length + 1;
}

/** A whole message that is not a batch of this gateway: kept byte for byte, base64. */
export function quarantineBatch(buffer: QuarantineBuffer, at: number, topic: string, gatewayId: string | null, reason: string, detail: string, payload: Uint8Array): void {
  push(buffer.batches, buffer, {
    received_at: isoMicros(at),
    topic,
    gateway_id: gatewayId,
    reason,
    detail,
    payload_base64: Buffer.from(payload.buffer, payload.byteOffset, payload.length).toString('base64'),
  });
}

/** A point that broke a rule: its fields as sent (enums by name), with the rule. */
export function quarantinePoint(buffer: QuarantineBuffer, at: number, gatewayId: string, batchSeq: number, point: TelemetryPoint, rule: string): void {
  const fields: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(point)) {
    if (value == null) continue;
    if (key === 'gps_fix') fields[key] = GPS_FIX_NAMES[value as number] ?? value;
    else if (key === 'flight_state') fields[key] = FLIGHT_STATE_NAMES[value as number] ?? value;
    // NaN and Infinity have no JSON form; as text they still show what was sent.
    else fields[key] = typeof value === 'number' && !Number.isFinite(value) ? String(value) : value;
  }
  push(buffer.points, buffer, { received_at: isoMicros(at), gateway_id: gatewayId, batch_seq: batchSeq, rule, point: fields });
}

/** Publishes the buffer's records, one NDJSON file per kind, under the quarantine path. */
export async function writeQuarantine(buffer: QuarantineBuffer, storage: LakeStorage, tag: string, at: number): Promise<string[]> {
  const date = isoMicros(at).slice(0, 10);
  const keys: string[] = [];
  for (const [kind, lines] of [
    ['batches', buffer.batches],
    ['points', buffer.points],
  ] as const) {
    if (lines.length === 0) continue;
    const local = path.join(storage.stagingDir, `${tag}-quarantine-${kind}.ndjson`);
    await writeFile(local, `${lines.join('\n')}\n`);
    const key = `${QUARANTINE_PREFIX}/${kind}/date=${date}/part-${tag}.ndjson`;
    try {
      await publishOwn(storage, local, key);
    } finally {
      await rm(local, { force: true });
    }
    keys.push(key);
  }
  return keys;
}
