import { rm } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { ParsedOptions } from '../deploy/runtime/options';
import { openLake } from './open-storage';
import type { storageOptions } from './storage-options';
import * as z from 'zod';
import { MICROS_PER_HOUR } from '../proto/time';
import { checkpointKey, checkRecord, LEGACY_MANIFEST_PREFIX, positionValue, putCheckpoint, restoreCommit, stateKey, stateRecord, writerProperty, type CommitRecord, type FileEntry } from './checkpoint';
import { BatchLedger, PointLedger } from './dedupe';
import { TELEMETRY_PREFIX } from './layout';
import type { LakeStorage } from './storage';
import type { DataFile } from './table/avro';
import { newManifestCache } from './table/manifests';
import { keyUri, loadTable } from './table/metadata';
import { fieldIdByName } from './table/schema';
import { tableWriter } from './table/transaction';

/** The table property a lake adopted from a JSON manifest carries. */
export const ADOPTED_PROPERTY = 'dronelake.adopted-manifest';

// A compaction record of the JSON manifest: read here only, to find which files were live.
const compactionRecordSchema = z.object({
  version: z.literal(1),
  kind: z.literal('compaction'),
  id: z.string().min(1),
  committed_at: z.iso.datetime(),
  inputs: z.array(z.string().min(1)),
  outputs: z.array(z.object({ key: z.string().min(1), rows: z.number().int().min(0), bytes: z.number().int().min(0), min_ts: z.number().int(), max_ts: z.number().int() })),
});
type CompactionRecord = z.infer<typeof compactionRecordSchema>;

/**
 * The live files as the JSON manifest defined them: every commit's files, then the
 * compactions in (committed_at, id) order, each applied only while all its inputs are live.
 */
function liveOf(commits: CommitRecord[], compactions: CompactionRecord[]): Map<string, FileEntry> {
  const live = new Map<string, FileEntry>();
  for (const commit of commits) for (const file of commit.files) live.set(file.key, file);
  compactions.sort((a, b) => (a.committed_at < b.committed_at ? -1 : a.committed_at > b.committed_at ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  for (const c of compactions) {
    if (c.inputs.length === 0 || !c.inputs.every((key) => live.has(key))) continue;
    for (const key of c.inputs) live.delete(key);
    for (const file of c.outputs) live.set(file.key, file);
  }
  return live;
}

const tsFieldId = fieldIdByName.get('ts')!;
const longBound = (n: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigInt64LE(BigInt(n));
  return b;
};

/** An adopted file as a manifest describes it: counts, size, hour and event-time bounds, from the record. */
function adoptedDataFile(uri: string, file: FileEntry): DataFile {
  return {
    content: 0,
    file_path: uri,
    file_format: 'PARQUET',
    partition: { ts_hour: Math.floor(file.min_ts / MICROS_PER_HOUR) },
    record_count: file.rows,
    file_size_in_bytes: file.bytes,
    column_sizes: null,
    value_counts: null,
    null_value_counts: null,
    nan_value_counts: null,
    lower_bounds: [{ key: tsFieldId, value: longBound(file.min_ts) }],
    upper_bounds: [{ key: tsFieldId, value: longBound(file.max_ts) }],
    key_metadata: null,
    split_offsets: null,
    equality_ids: null,
    sort_order_id: 1,
  };
}

export interface Adoption {
  records: number;
  files: number;
  rows: number;
  writers: number;
}

/**
 * Adopts a lake written with the JSON manifest of earlier versions: its live files become
 * the table's first snapshot, its commit records the writers' checkpoints, and a state
 * checkpoint per writer lets a start read a bounded amount. Then the manifest goes. No
 * row is lost or doubled: exactly the manifest's live files are adopted, once, in one
 * table commit; a run interrupted before that commit starts over, one after it only
 * finishes removing the manifest. Returns null when there is nothing to adopt.
 */
export async function adoptLegacyManifest(storage: LakeStorage, log: Logger): Promise<Adoption | null> {
  const objects = (await storage.list(`${LEGACY_MANIFEST_PREFIX}/`)).filter((o) => o.key.endsWith('.json'));
  if (objects.length === 0) return null;
  const existing = await loadTable(storage);
  if (existing && existing.metadata.properties[ADOPTED_PROPERTY] === undefined && existing.metadata.snapshots.length > 0) {
    throw new Error(`${storage.root} holds both a table and the JSON manifest of an earlier version (${LEGACY_MANIFEST_PREFIX}/): adopting it would double rows; move one of them away`);
  }
  if (existing?.metadata.properties[ADOPTED_PROPERTY] === undefined) {
    const commits: CommitRecord[] = [];
    const compactions: CompactionRecord[] = [];
    for (const o of objects) {
      const bytes = await storage.read(o.key);
      if (bytes === null) continue;
      let value: unknown;
      try {
        value = JSON.parse(bytes.toString('utf8'));
      } catch (err) {
        throw new Error(`${o.key}: not valid JSON (${(err as Error).message}); repair or remove it, then adopt again`);
      }
      const kind = typeof value === 'object' && value !== null && 'kind' in value ? value.kind : undefined;
      try {
        if (kind === 'compaction') compactions.push(compactionRecordSchema.parse(value));
        else commits.push(checkRecord(value));
      } catch (err) {
        throw new Error(`${o.key}: ${(err as Error).message.split('\n')[0]}; repair or remove it, then adopt again`);
      }
    }
    const batches = new BatchLedger();
    const points = new PointLedger();
    const last = new Map<string, number>();
    for (const record of commits) {
      await putCheckpoint(storage, checkpointKey(record.writer, record.number), record);
      restoreCommit(record, batches, points);
      last.set(record.writer, Math.max(last.get(record.writer) ?? 0, record.number));
    }
    const properties: Record<string, string> = { [ADOPTED_PROPERTY]: String(objects.length) };
    for (const [writer, number] of last) {
      // Every writer's state holds all of it: a start reads one state per writer and no commit.
      await putCheckpoint(storage, stateKey(writer, number), stateRecord(writer, number, batches, points));
      properties[writerProperty(writer)] = positionValue({ commit: number, state: number });
    }
    // Sizes from the store, not the records: a manifest's file size must be exact for readers to find the footer.
    const sizes = new Map((await storage.list(`${TELEMETRY_PREFIX}/`)).map((o) => [o.key, o.size]));
    const live = [...liveOf(commits, compactions).values()].map((f) => {
      const bytes = sizes.get(f.key);
      if (bytes === undefined) throw new Error(`${f.key}: the JSON manifest names it as live, but it is not in the store; restore it, then adopt again`);
      return { ...f, bytes };
    });
    const table = tableWriter(storage, 'migrate', { snapshotRetentionMs: Number.MAX_SAFE_INTEGER }, newManifestCache());
    await table.append(live.map((f) => adoptedDataFile(keyUri(storage, f.key), f)), { 'dronelake.adopted-records': String(objects.length) }, properties);
    log.info({ records: objects.length, files: live.length, rows: live.reduce((n, f) => n + f.rows, 0) }, 'adopted the JSON manifest as the table');
    for (const o of objects) await storage.remove(o.key);
    return { records: objects.length, files: live.length, rows: live.reduce((n, f) => n + f.rows, 0), writers: last.size };
  }
  for (const o of objects) await storage.remove(o.key);
  return { records: objects.length, files: 0, rows: 0, writers: 0 };
}

/** `dronelake migrate`: adopts the lake's JSON manifest, if it has one. */
export async function migrateLake(config: ParsedOptions<typeof storageOptions>, log: Logger): Promise<Adoption | null> {
  const storage = await openLake(config, `migrate-${process.pid}`);
  try {
    return await adoptLegacyManifest(storage, log);
  } finally {
    await rm(storage.stagingDir, { recursive: true, force: true });
    await storage.close();
  }
}
