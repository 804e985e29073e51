import type { LakeStorage } from '../sink/storage';
import { committedRecords, type CommitRecord } from '../sink/checkpoint';
import { currentSnapshot } from '../sink/table/manifests';
import { loadTable, type TableMetadata } from '../sink/table/metadata';
import { liveFiles, type LiveFile } from '../sink/table/scan';

/** The table's current metadata; fails the test if there is no table. */
export async function tableMetadata(storage: LakeStorage): Promise<TableMetadata> {
  const table = await loadTable(storage);
  if (table === null) throw new Error(`${storage.root} has no table`);
  return table.metadata;
}

/** The data files of the table's current snapshot. */
export async function currentFiles(storage: LakeStorage): Promise<LiveFile[]> {
  return liveFiles(storage, currentSnapshot(await tableMetadata(storage)));
}

/** Snapshots of one operation (append, replace) the table keeps. */
export async function snapshotsOf(storage: LakeStorage, operation: string): Promise<number> {
  return (await tableMetadata(storage)).snapshots.filter((s) => s.summary.operation === operation).length;
}

/** Every commit record the table holds; an unreadable one fails the test. */
export function commitRecords(storage: LakeStorage): Promise<CommitRecord[]> {
  return committedRecords(storage, (key, err) => {
    throw new Error(`${key}: ${err.message}`);
  });
}
