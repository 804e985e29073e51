import type { Logger } from 'pino';
import type { LakeStorage } from '../storage';
import { loadTable } from './metadata';
import { WRITER_SUMMARY } from './transaction';

/** How recent another writer's snapshot must be to count as that writer running. */
export const ACTIVE_WRITER_MS = 10 * 60 * 1000;

/**
 * The table's commit is a create-only write of the next version. On a store that does
 * not refuse a second create of a name (some S3-compatible stores ignore If-None-Match),
 * two writers can both "win" a version and one commit is lost, so there only one writer
 * may run. Probes the store, says so in one line when it does not refuse, and then
 * throws if the table shows another writer's snapshot from the last ten minutes, or if
 * this writer is one of several shards. Returns whether the store refuses.
 */
export async function refuseSecondWriter(storage: LakeStorage, writer: string, sharded: boolean, log: Logger, nowMs = Date.now()): Promise<boolean> {
  if (await storage.probeCreateOnly()) return true;
  log.warn({ lake: storage.root }, 'this store does not refuse a second create of one name (it ignores If-None-Match): only one writer may commit to the table');
  if (sharded) throw new Error(`${storage.root}: the store ignores If-None-Match, so shards would overwrite each other's table commits; run one sink, or use a store that honours conditional writes`);
  const table = await loadTable(storage);
  const other = table?.metadata.snapshots
    .filter((s) => nowMs - s['timestamp-ms'] < ACTIVE_WRITER_MS && s.summary[WRITER_SUMMARY] !== undefined && s.summary[WRITER_SUMMARY] !== writer)
    .sort((a, b) => b['timestamp-ms'] - a['timestamp-ms'])[0];
  if (other) {
    const ago = Math.round((nowMs - other['timestamp-ms']) / 1000);
    throw new Error(`${storage.root}: ${other.summary[WRITER_SUMMARY]} committed to the table ${ago} s ago, and the store ignores If-None-Match, so two writers would overwrite each other's commits; stop it first, or use a store that honours conditional writes`);
  }
  return false;
}
