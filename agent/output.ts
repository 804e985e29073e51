import type { Logger } from 'pino';
import type { TelemetryPoint } from '../proto/types';
import { Batcher, type BatcherConfig, type ClosedBatch } from './batcher';
import type { Publisher } from './publisher';
import type { SourceOutput } from './source';
import type { Spool } from './spool';

/** Where the sources' points go, and what went there. */
export interface AgentOutput extends SourceOutput {
  readonly pointsIn: number;
  readonly batchesClosed: number;
  /** Closes the open batch and waits until every append has succeeded or failed. */
  settle(): Promise<void>;
}

/**
 * The agent's side of SourceOutput: each point goes into the gateway's open batch
 * (batcher.ts); each closed batch is appended to the spool and fsynced before its points
 * count as accepted (invariant 1), then handed to the publisher, which keeps it until the
 * sink's ack (invariant 2). The spool orders appends and shares one fsync among all in
 * progress, so batches go to it at once; a flush waits for (and fails with) every append
 * in progress.
 */
export function createOutput(
  batching: Omit<BatcherConfig, 'firstSeq' | 'stream' | 'droppedPoints'>,
  spool: Spool,
  publisher: Publisher,
  log: Logger,
): AgentOutput {
  let batchesClosed = 0;
  let pointsIn = 0;
  const appending = new Set<Promise<void>>();
  // Each drone's last seq in the open batch: the spool keeps it, so seqs survive restarts.
  let lastSeqs = new Map<string, number>();
  // The drone of the latest points and its latest seq, put into lastSeqs when another
  // drone's point comes or the batch closes: sources send a drone's points in runs (a
  // simulated drone's points of a tick, a MAVLink link's one vehicle), and a map write per
  // point was most of emit's CPU.
  let runDrone: string | null = null;
  let runSeq = 0;
  const endRun = (): void => {
    if (runDrone !== null) lastSeqs.set(runDrone, runSeq);
    runDrone = null;
  };
  const batcher = new Batcher(
    {
      ...batching,
      firstSeq: spool.nextBatchSeq(),
      stream: spool.stream,
      droppedPoints: () => spool.droppedPoints,
    },
    (batch: ClosedBatch) => {
      batchesClosed++;
      // The point that filled the batch is in it, and so is its seq.
      endRun();
      const seqs = lastSeqs;
      lastSeqs = new Map();
      const append = spool.append(batch, seqs).then(() => publisher.enqueue(batch));
      appending.add(append);
      append.then(
        () => appending.delete(append),
        (err: unknown) => {
          appending.delete(append);
          log.error({ seq: batch.seq, err: (err as Error).message }, 'spool append failed; the batch is lost');
        },
      );
    },
  );
  return {
    emit(point: TelemetryPoint) {
      pointsIn++;
      if (point.drone_id !== runDrone) {
        endRun();
        runDrone = point.drone_id;
      }
      runSeq = point.seq;
      batcher.add(point);
    },
    get accepting() {
      return spool.hasSpace();
    },
    async flush() {
      batcher.close();
      await Promise.all([...appending]);
    },
    get pointsIn() {
      return pointsIn;
    },
    get batchesClosed() {
      return batchesClosed;
    },
    async settle() {
      batcher.close();
      await Promise.allSettled([...appending]);
    },
  };
}
