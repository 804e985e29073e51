import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CATALOG_PREFIX } from './layout';
import { RangeSet } from './ranges';
import type { LakeStorage } from './storage';

/** Where commit records live, relative to the lake root. */
export const MANIFEST_PREFIX = `${CATALOG_PREFIX}/manifest`;

type Ranges = Array<[number, number]>;

/**
 * One commit, as recorded after its files are visible and before its acks go out. The
 * batches and point keys it holds are what a restarted sink dedupes against, so a batch
 * committed before a crash is never stored twice, whatever the agents re-send.
 */
export interface CommitRecord {
  version: 1;
  tag: string;
  committed_at: string;
  files: Array<{ key: string; rows: number }>;
  quarantine: string[];
  /** batch_seq ranges per gateway. */
  batches: Record<string, Ranges>;
  /** seq ranges per drone. */
  points: Record<string, Ranges>;
}

export function commitRecord(
  tag: string,
  files: Array<{ key: string; rows: number }>,
  quarantine: string[],
  batches: Map<string, number[]>,
  points: Map<string, RangeSet>,
): CommitRecord {
  const batchRanges: Record<string, Ranges> = {};
  for (const [gatewayId, seqs] of batches) {
    const set = new RangeSet();
    for (const seq of seqs) set.add(seq);
    batchRanges[gatewayId] = set.ranges();
  }
  const pointRanges: Record<string, Ranges> = {};
  for (const [droneId, set] of points) pointRanges[droneId] = set.ranges();
  return { version: 1, tag, committed_at: new Date().toISOString(), files, quarantine, batches: batchRanges, points: pointRanges };
}

/** Publishes a commit record with the storage's create-only step. */
export async function appendCommitRecord(storage: LakeStorage, record: CommitRecord): Promise<void> {
  const local = path.join(storage.stagingDir, `${record.tag}-commit.json`);
  await writeFile(local, `${JSON.stringify(record)}\n`);
  try {
    await storage.publish(local, `${MANIFEST_PREFIX}/commit-${record.tag}.json`);
  } finally {
    await rm(local, { force: true });
  }
}

/**
 * Every commit record of a local lake, oldest first by name. A record that cannot be read
 * is reported through `onBad` and skipped: it was never published whole, since records
 * appear with a create-only link of a complete file.
 */
export async function readCommitRecords(lakeRoot: string, onBad: (file: string, err: Error) => void): Promise<CommitRecord[]> {
  const dir = path.join(lakeRoot, MANIFEST_PREFIX);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    // A lake nothing was committed to yet.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const records: CommitRecord[] = [];
  for (const name of names.filter((n) => n.startsWith('commit-') && n.endsWith('.json')).sort()) {
    try {
      const record = JSON.parse(await readFile(path.join(dir, name), 'utf8')) as CommitRecord;
      if (record.version !== 1 || typeof record.batches !== 'object' || typeof record.points !== 'object') throw new Error('not a version 1 commit record');
      records.push(record);
    } catch (err) {
      onBad(name, err as Error);
    }
  }
  return records;
}
