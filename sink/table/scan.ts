import type { LakeStorage } from '../storage';
import { tsBounds } from './data-files';
import { currentSnapshot, liveEntries, snapshotById, type ManifestCache } from './manifests';
import { uriKey, type Snapshot, type TableMetadata } from './metadata';

/** A data file live in a snapshot, as readers and the compactor use it. */
export interface LiveFile {
  key: string;
  uri: string;
  rows: number;
  bytes: number;
  /** Event-time bounds of its rows, microseconds since the epoch. */
  min_ts: number;
  max_ts: number;
}

/** The data files a snapshot holds (none for a table with no snapshot). */
export async function liveFiles(storage: LakeStorage, snapshot: Snapshot | null, cache?: ManifestCache): Promise<LiveFile[]> {
  const entries = await liveEntries(storage, snapshot, cache);
  return entries.map((e) => {
    const { min, max } = tsBounds(e.data_file);
    return { key: uriKey(storage, e.data_file.file_path), uri: e.data_file.file_path, rows: e.data_file.record_count, bytes: e.data_file.file_size_in_bytes, min_ts: min, max_ts: max };
  });
}

/** Which snapshot a reader asked for: a given id, the newest at or before a time, or the current one. */
export function pickSnapshot(metadata: TableMetadata, want: { snapshotId?: number; asOfMs?: number }): Snapshot | null {
  if (want.snapshotId !== undefined) {
    const snapshot = snapshotById(metadata, want.snapshotId);
    if (!snapshot) throw new Error(`the table has no snapshot ${want.snapshotId} (expired, or never existed): \`dronelake catalog\` lists the recent ones`);
    return snapshot;
  }
  if (want.asOfMs !== undefined) {
    const asOf = want.asOfMs;
    const before = metadata.snapshots.filter((s) => s['timestamp-ms'] <= asOf).sort((a, b) => b['timestamp-ms'] - a['timestamp-ms']);
    if (before.length === 0) {
      const oldest = Math.min(...metadata.snapshots.map((s) => s['timestamp-ms']));
      throw new Error(`the table has no snapshot at or before ${new Date(asOf).toISOString()}${Number.isFinite(oldest) ? ` (the oldest kept is from ${new Date(oldest).toISOString()})` : ''}`);
    }
    return before[0]!;
  }
  return currentSnapshot(metadata);
}
