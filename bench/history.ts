import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { checkpointKey, commitRecord, emptyCommitCounts, positionValue, STATE_EVERY, stateKey, stateRecord, writerProperty } from '../sink/checkpoint';
import { BatchLedger, PointLedger, type PointKeys } from '../sink/dedupe';
import { RangeSet } from '../sink/ranges';
import { localStorage } from '../sink/storage';
import { newManifestCache } from '../sink/table/manifests';
import { tableWriter } from '../sink/table/transaction';

/**
 * A local lake whose one sink (`dronelake-sink`, gateway `gw-hist`, drone `d-hist` in
 * stream 7) has `commits` commits behind it, written as that sink writes them: a commit
 * checkpoint each (batch n, points n*10 .. n*10+9), a full state every STATE_EVERY, and
 * the table's properties naming the last of each. The table gets one append per 100
 * commits: its own history is bounded by snapshot expiry, so its length is not what a
 * start could depend on; the checkpoints are.
 */
export async function writeHistory(lake: string, commits: number): Promise<void> {
  const storage = await localStorage(lake, 'drones/_staging/history');
  await mkdir(storage.stagingDir, { recursive: true });
  const writer = 'dronelake-sink';
  const batches = new BatchLedger();
  const points = new PointLedger();
  const table = tableWriter(storage, writer, { snapshotRetentionMs: 0, keepAllMs: 0 }, newManifestCache());
  let state = 0;
  await mkdir(path.join(lake, path.dirname(checkpointKey(writer, 1))), { recursive: true });
  for (let n = 1; n <= commits; n++) {
    const seqs = new RangeSet();
    for (let s = 0; s < 10; s++) seqs.add(n * 10 + s);
    const keys: PointKeys = new Map([['d-hist', new Map([[7, seqs]])]]);
    await writeFile(path.join(lake, checkpointKey(writer, n)), JSON.stringify(commitRecord(writer, n, [], [], new Map([['gw-hist', [n]]]), keys, emptyCommitCounts())));
    batches.markCommitted('gw-hist', n);
    points.commit(keys, Date.now());
    if (n - state >= STATE_EVERY) {
      await writeFile(path.join(lake, stateKey(writer, n)), JSON.stringify(stateRecord(writer, n, batches, points)));
      state = n;
    }
    if (n % 100 === 0 || n === commits) await table.append([], { 'dronelake.commit': String(n) }, { [writerProperty(writer)]: positionValue({ commit: n, state }) });
  }
}
