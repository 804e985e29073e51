import { CHECKPOINT_PREFIX, checkpointOf, writerPositions } from '../checkpoint';
import { LINEAGE_PREFIX, QUALITY_PREFIX, TELEMETRY_PREFIX, timeOfName, utcDate } from '../layout';
import type { LakeStorage } from '../storage';
import { DELETED } from './avro';
import { manifestsOf, readManifest, type ManifestCache } from './manifests';
import { keyUri, loadTable, METADATA_PREFIX, metadataKey, VERSION_HINT_KEY } from './metadata';

/**
 * How old a file no retained snapshot names must be before it is removed. Such a file
 * may belong to a commit in flight, written and about to be committed, so this floor
 * does not follow a short grace period.
 */
export const UNREFERENCED_MIN_AGE_MS = 15 * 60 * 1000;

export interface MaintenanceSettings {
  /** Files leave the store this long after no retained snapshot names them, at the least. */
  graceMs: number;
  /** Commit checkpoints older than this, and covered by a newer state, are removed. */
  snapshotRetentionMs: number;
  /** The catalog's quality windows and lineage events older than this are removed. */
  historyRetentionMs: number;
}

export interface MaintenanceResult {
  /** Data files removed: compaction inputs no retained snapshot reads, and files of commits that never landed. */
  dataFiles: number;
  /** Manifests, manifest lists and metadata versions no retained snapshot or log names. */
  metadataFiles: number;
  /** Commit checkpoints past the retention whose state a later full checkpoint holds. */
  checkpoints: number;
  /** Quality windows and lineage events past the history retention. */
  historyFiles: number;
}

/**
 * Removes what the table no longer needs, after expiry (each commit expires snapshots
 * past the retention, see transaction.ts):
 * - data files no retained snapshot names, once the grace period (and at least
 *   UNREFERENCED_MIN_AGE_MS) has passed since they were written;
 * - manifests and lists no retained snapshot names, and metadata versions past the log;
 * - commit checkpoints older than the retention that a writer's state file covers;
 * - quality windows and lineage events older than the history retention.
 * A reader that planned from a snapshot expired meanwhile may find a file gone: that is
 * what the retention bounds, as in every Iceberg implementation.
 */
export async function maintainTable(storage: LakeStorage, settings: MaintenanceSettings, nowMs: number, cache?: ManifestCache): Promise<MaintenanceResult> {
  const result: MaintenanceResult = { dataFiles: 0, metadataFiles: 0, checkpoints: 0, historyFiles: 0 };
  result.historyFiles = await removeHistory(storage, nowMs - settings.historyRetentionMs);
  const table = await loadTable(storage);
  if (table === null) return result;
  const m = table.metadata;
  const referenced = new Set<string>();
  for (const snapshot of m.snapshots) {
    referenced.add(snapshot['manifest-list']);
    for (const manifest of await manifestsOf(storage, snapshot, cache)) {
      referenced.add(manifest.manifest_path);
      // A deletion entry names a file the snapshot no longer holds.
      for (const entry of await readManifest(storage, manifest, cache)) if (entry.status !== DELETED) referenced.add(entry.data_file.file_path);
    }
  }
  const versions = new Set([keyUri(storage, metadataKey(table.version)), ...m['metadata-log'].map((e) => e['metadata-file'])]);
  const oldest = Math.min(...m['metadata-log'].map((e) => Number(/\/v(\d+)\.metadata\.json$/.exec(e['metadata-file'])?.[1] ?? table.version)), table.version);
  const minAge = Math.max(settings.graceMs, UNREFERENCED_MIN_AGE_MS);
  for (const object of await storage.list(`${TELEMETRY_PREFIX}/`)) {
    const uri = keyUri(storage, object.key);
    const age = nowMs - object.modifiedMs;
    if (object.key.startsWith(`${METADATA_PREFIX}/`)) {
      if (object.key === VERSION_HINT_KEY) continue;
      const version = /\/v(\d+)\.metadata\.json$/.exec(object.key);
      // A version newer than the one loaded is another writer's commit of this moment.
      if (version ? versions.has(uri) || Number(version[1]) >= oldest : referenced.has(uri) || age < minAge) continue;
      await storage.remove(object.key);
      result.metadataFiles++;
    } else if (object.key.endsWith('.parquet') && !referenced.has(uri) && age >= minAge) {
      await storage.remove(object.key);
      result.dataFiles++;
    }
  }
  const positions = writerPositions(m.properties);
  for (const object of await storage.list(`${CHECKPOINT_PREFIX}/`)) {
    const c = checkpointOf(object.key);
    const position = c ? positions.get(c.writer) : undefined;
    if (!c || !position || nowMs - object.modifiedMs < settings.snapshotRetentionMs) continue;
    // A commit record the state covers, or a state a newer one replaced: a start never reads it again.
    if (c.number < position.state || (c.kind === 'commit' && c.number === position.state)) {
      await storage.remove(object.key);
      result.checkpoints++;
    }
  }
  return result;
}

/**
 * Removes the quality windows and lineage events that lie before `beforeMs`, and returns
 * how many: both are kept a UTC day a directory (`date=YYYY-MM-DD`), and keys sort by
 * day, so the listing stops at the first day kept and costs what is removed, not the
 * history kept. A file of the cut-off day is removed by the time its name carries.
 */
async function removeHistory(storage: LakeStorage, beforeMs: number): Promise<number> {
  let removed = 0;
  const day = utcDate(beforeMs);
  for (const prefix of [QUALITY_PREFIX, LINEAGE_PREFIX]) {
    for (const { key } of await storage.list(`${prefix}/`, { before: `${prefix}/date=${day}/~` })) {
      const at = timeOfName(key);
      if (at === null || at >= beforeMs) continue;
      await storage.remove(key);
      removed++;
    }
  }
  return removed;
}
