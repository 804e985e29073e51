import type { DuckDBConnection } from '@duckdb/node-api';
import type { MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { nowMicros } from '../proto/time';
import { publishAcks } from './acks';
import { checkpointKey, commitRecord, positionValue, putCheckpoint, STATE_EVERY, stateKey, stateRecord, writerPositions, writerProperty, type WriterPosition } from './checkpoint';
import type { BatchLedger, PointLedger } from './dedupe';
import { LatencyHistogram } from './latency';
import type { LivePort } from './live';
import { writeQuarantine } from './quarantine';
import type { RejectMemory } from './rejects';
import type { StageBuffer, StageBuffers } from './stage';
import { isDiskFull, type stagingGate } from './staging-space';
import type { SinkStats } from './stats';
import type { LakeStorage } from './storage';
import type { createStoreHealth } from './store-health';
import { loadTable } from './table/metadata';
import type { TableWriter } from './table/transaction';
import { writeFiles } from './write-files';
import { commitTag } from './layout';

/**
 * The sink's commit protocol. One commit at a time, in this order:
 *
 * 1. the quarantine's files (bad input, invariant 5): if they fail, nothing is visible yet;
 * 2. the Parquet files, one per event-time hour (write-files.ts), each whole before its
 *    name shows (invariant 4);
 * 3. the commit checkpoint, then the table commit that names it: the commit point
 *    (invariant 4). An error there may come after the store took the version, so the
 *    table is asked: only a commit it does not hold has its files removed (invariant 1),
 *    and only one it holds is acked (invariant 2);
 * 4. the dedupe ledgers mark the batches and points committed (invariant 3), and idle
 *    streams leave memory (invariant 6); now and then a full state checkpoint;
 * 5. the acks (invariant 2), then, with the live port after commit, its points.
 *
 * A commit that fails acks nothing and un-stages its batches: the agents re-send them.
 */

/** What the commit reads and updates; the sink wires it once. */
export interface CommitParts {
  /** The sink's client id: it names the commits, their files and checkpoints. */
  writer: string;
  storage: LakeStorage;
  /** The one connection commits write files through, one commit at a time. */
  conn: DuckDBConnection;
  lakeTable: TableWriter;
  ackClient: MqttClient;
  stats: SinkStats;
  /** Event-to-commit latency of every committed point. */
  latency: LatencyHistogram;
  ledger: BatchLedger;
  pointLedger: PointLedger;
  rejected: RejectMemory;
  storeHealth: ReturnType<typeof createStoreHealth>;
  staging: ReturnType<typeof stagingGate>;
  live: LivePort | null;
  /** Streams idle this long leave the point ledger (invariant 6). */
  streamIdleMs: number;
  log: Logger;
  newBuffer: () => StageBuffer;
  /** True once the sink closes: the question whether a commit landed is then left to the next start. */
  closing: () => boolean;
}

/**
 * Returns `commit()`: commits whatever `buffers.open` holds, after the commits before it;
 * resolves when its acks are out, and never rejects (a failure is counted and logged).
 * `position` is this writer's last commit and full state in the table.
 */
export function createCommitter(parts: CommitParts, buffers: StageBuffers, position: WriterPosition): () => Promise<void> {
  const { writer, storage, conn, lakeTable, ackClient, stats, latency, ledger, pointLedger, rejected, storeHealth, staging, live, streamIdleMs, log } = parts;
  const liveAfterCommit = live?.settings.after === 'commit';
  // Commit numbers go on from the last one the table holds, so file names follow from the
  // sink's history; what a crashed commit left under the next number is replaced.
  let commitNumber = position.commit + 1;
  let stateNumber = position.state;
  let committing: Promise<void> = Promise.resolve();

  async function commitOnce(): Promise<void> {
    const buffer = buffers.open;
    if (buffer.points === 0 && buffer.batches.size === 0 && buffer.quarantine.bytes === 0) return;
    buffers.committing = buffer;
    buffers.open = parts.newBuffer();
    const number = commitNumber++;
    const tag = commitTag(writer, number);
    log.debug({ tag, points: buffer.points }, 'commit started');
    try {
      // Quarantine first: if it fails, nothing of this commit is visible yet.
      const quarantined = await writeQuarantine(buffer.quarantine, storage, tag, nowMicros());
      stats.quarantineFiles += quarantined.length;
      const commitLatency = new LatencyHistogram();
      const { files, dataFiles } = await writeFiles(conn, buffer, storage, tag, commitLatency);
      commitLatency.counts.forEach((n, bucket) => {
        if (n > 0) buffer.counts.latency_buckets[bucket] = n;
      });
      // The checkpoint first, then the table commit that names it: the commit point
      // (invariant 4). A crash before it leaves files and a checkpoint no snapshot names;
      // nothing was acked, the agents re-send, and this writer's next run reuses the names.
      const checkpoint = checkpointKey(writer, number);
      try {
        await putCheckpoint(storage, checkpoint, commitRecord(writer, number, files, quarantined, buffer.batches, buffer.pointKeys, buffer.counts));
        await lakeTable.append(
          dataFiles,
          { 'dronelake.commit': String(number), 'dronelake.checkpoint': checkpoint },
          { [writerProperty(writer)]: positionValue({ commit: number, state: stateNumber }) },
        );
      } catch (err) {
        // An error may come after the store took the version (a timeout on the reply):
        // only a commit the table does not hold may have its files removed (invariant 1),
        // and only one it holds may be acked (invariant 2). Until the table can be read,
        // neither is known; at close it stays unknown, the files stay, nothing is acked,
        // and the next start reads the answer from the table.
        let landed: boolean;
        try {
          landed = await commitLanded(number);
        } catch {
          throw err;
        }
        if (!landed) {
          await Promise.allSettled([...files.map((f) => f.key), ...quarantined, checkpoint].map((key) => storage.remove(key)));
          throw err;
        }
        log.warn({ tag, err: (err as Error).message }, 'the table commit reported an error but landed');
      }
      commitLatency.counts.forEach((n, bucket) => latency.add(bucket, n));
      for (const [gatewayId, seqs] of buffer.batches) for (const seq of seqs) ledger.markCommitted(gatewayId, seq);
      const committedAt = Date.now();
      pointLedger.commit(buffer.pointKeys, committedAt);
      stats.streamsEvicted += pointLedger.evictIdle(committedAt - streamIdleMs);
      stats.commits++;
      stats.files += files.length;
      // A full state now and then, so a start reads at most STATE_EVERY commits per writer;
      // the next commit's properties name it.
      if (number - stateNumber >= STATE_EVERY) {
        await putCheckpoint(storage, stateKey(writer, number), stateRecord(writer, number, ledger, pointLedger))
          .then(() => {
            stateNumber = number;
          })
          .catch((err: Error) => log.warn({ err: err.message }, 'writing a state checkpoint failed; the next commit tries again'));
      }
      stats.pointsCommitted += buffer.points;
      stats.pointsStaged -= buffer.points;
      for (const seqs of buffer.batches.values()) stats.batchesCommitted += seqs.length;
      log.debug({ tag, files: files.length, points: buffer.points }, 'committed');
      storeHealth.succeeded();
      staging.committed();
      stats.acksPublished += await publishAcks(ackClient, buffer.batches);
      if (liveAfterCommit) live.send(buffer.live);
    } catch (err) {
      // Nothing of this commit is visible and nothing was acked: the agents re-send.
      stats.commitErrors++;
      storeHealth.failed(err as Error);
      if (isDiskFull(err)) staging.filled(err as Error);
      stats.pointsStaged -= buffer.points;
      for (const [gatewayId, seqs] of buffer.batches) for (const seq of seqs) ledger.unstage(gatewayId, seq);
      rejected.forget(buffer.table);
      log.error({ tag, err: (err as Error).message }, 'commit failed; its batches will be taken again when re-sent');
    } finally {
      buffers.committing = null;
    }
  }

  /** Whether the table holds this sink's commit `number`: asked until the store answers, or the sink closes. */
  async function commitLanded(number: number): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      try {
        const table = await loadTable(storage);
        return (writerPositions(table?.metadata.properties ?? {}).get(writer)?.commit ?? 0) >= number;
      } catch (err) {
        if (parts.closing()) throw err;
        await new Promise((r) => setTimeout(r, Math.min(5_000, 200 * 2 ** attempt)));
      }
    }
  }

  return () => {
    committing = committing.then(commitOnce);
    return committing;
  };
}
