import type { MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { DRONE_COLUMN, isPresent, pointAt, SEQ_COLUMN, STREAM_COLUMN, TS_COLUMN, type ColumnArena } from '../proto/columnar';
import { MICROS_PER_HOUR, nowMicros } from '../proto/time';
import { invalidReasonAt, suspectPoints, validDroneIds } from '../proto/validate';
import { publishAcks } from './acks';
import { decodeTelemetry } from './decode';
import { takeSeq, type BatchLedger, type PointLedger, type StreamRun } from './dedupe';
import type { LivePort } from './live';
import { quarantineBatch, quarantinePoint } from './quarantine';
import type { RejectMemory } from './rejects';
import { recordBatch, stageDictIds, stagedBytes, stageRows, type StageBuffers } from './stage';
import type { SinkStats } from './stats';

/**
 * The sink's handling of one message, in the order of the flow: decode, or quarantine what
 * cannot be (invariant 5); drop a batch the lake or the open commit already holds (invariant
 * 3), acking it again when committed; validate each point, quarantining what breaks a rule;
 * drop points already held; stage the rest into the open buffer, and hand them to the live
 * port. Then start a commit when the open buffer is full enough.
 */

/** What taking a message reads and updates; the sink wires it once. */
export interface TakeParts {
  stats: SinkStats;
  ledger: BatchLedger;
  pointLedger: PointLedger;
  rejected: RejectMemory;
  ackClient: MqttClient;
  live: LivePort | null;
  log: Logger;
  commit: () => Promise<void>;
  /** --max-future-skew, in microseconds. */
  maxFutureSkewUs: number;
  /** --lateness, in microseconds: points of hours closed before now minus this are late. */
  latenessUs: number;
  /** --commit-points. */
  commitPoints: number;
  /** --max-staged-mib, in bytes. */
  maxStagedBytes: number;
}

/** Returns `take(topic, payload)`, which handles one message synchronously. */
export function createTake(parts: TakeParts, buffers: StageBuffers): (topic: string, payload: Buffer) => void {
  const { stats, ledger, pointLedger, rejected, ackClient, live, log, commit, maxFutureSkewUs, latenessUs, commitPoints, maxStagedBytes } = parts;
  const liveAfterCommit = live?.settings.after === 'commit';
  /** The indexes of a batch's points to stage, reused from batch to batch (invariant 6: as long as the largest batch, which the packet size bounds). */
  let rows = new Uint32Array(1024);
  /** Each batch's decoded values, in one array reused from batch to batch: take() is done with a batch before it returns. */
  const arena: ColumnArena = { values: new Float64Array(0) };

  return function take(topic: string, payload: Buffer): void {
    // The buffers rotate only in a commit, which never runs while a message is taken.
    const open = buffers.open;
    stats.batchesReceived++;
    const decoded = decodeTelemetry(topic, payload, arena);
    if (!decoded.ok) {
      // Invariant 5: a copy of a message already quarantined is counted as a repeat only.
      if (!rejected.first(topic, payload, Date.now(), open.table)) {
        stats.batchesRejectedRepeats++;
        open.counts.repeated_rejected_batches++;
        return;
      }
      stats.batchesRejected[decoded.reason]++;
      open.counts.rejected_batches[decoded.reason]++;
      quarantineBatch(open.quarantine, nowMicros(), topic, decoded.gatewayId, decoded.reason, decoded.detail, payload);
      log.warn({ topic, reason: decoded.reason, detail: decoded.detail, bytes: payload.length }, 'batch rejected into quarantine');
      return;
    }
    const { batch } = decoded;
    const state = ledger.state(batch.gateway_id, batch.batch_seq);
    if (state !== 'new') {
      stats.batchesDuplicate++;
      open.counts.duplicate_batches++;
      // The first ack may have been lost: say again that the batch is in the lake.
      if (state === 'committed') void publishAcks(ackClient, new Map([[batch.gateway_id, [batch.batch_seq]]])).catch(() => undefined);
      return;
    }
    const { points } = batch;
    const n = points.count;
    if (n === 0) stats.batchesEmpty++;
    const dropped = batch.dropped_points;
    if (dropped > (stats.gatewayDroppedPoints[batch.gateway_id] ?? 0)) stats.gatewayDroppedPoints[batch.gateway_id] = dropped;
    if (dropped > (open.counts.dropped_reported[batch.gateway_id] ?? 0)) open.counts.dropped_reported[batch.gateway_id] = dropped;
    const now = nowMicros();
    // Points of hours whose partition closed are late: they go in, and are counted.
    const closedBefore = Math.floor((now - latenessUs) / MICROS_PER_HOUR) * MICROS_PER_HOUR;
    const counts = open.counts;
    counts.received_points += n;
    stats.pointsReceived += n;
    // The live port's rows of this batch: held for the commit, or sent once the batch is taken.
    const liveRows = live === null ? null : liveAfterCommit ? open.live : [];
    // Points staged in the commit being written count for dedupe until it lands.
    const committingKeys = buffers.committing?.pointKeys ?? null;
    // The batch is taken as columns, in place: no object per point. Rules are checked a
    // column at a time, and only the suspects point by point; the rows to stage are
    // collected by index and staged column by column.
    const drones = points.columns[DRONE_COLUMN]!;
    const seqs = points.columns[SEQ_COLUMN]!.values;
    const times = points.columns[TS_COLUMN]!.values;
    const streams = points.columns[STREAM_COLUMN] ?? null;
    const dronesOk = validDroneIds(points);
    const suspects = suspectPoints(points, batch.stream, dronesOk, now, maxFutureSkewUs);
    if (rows.length < n) rows = new Uint32Array(n);
    let kept = 0;
    let run: StreamRun | null = null;
    let runDrone = -1;
    for (let i = 0; i < n; i++) {
      // Invariant 3: a point's identity is (drone_id, stream, seq); a point that names no
      // stream of its own counts in its batch's (0 for producers that name none).
      const stream = streams !== null && isPresent(streams.present, i) ? streams.values[i]! : batch.stream;
      const reason = suspects !== null && suspects[i] === 1 ? invalidReasonAt(points, i, stream, dronesOk, now, maxFutureSkewUs) : null;
      if (reason) {
        stats.pointsInvalid[reason]++;
        counts.rejected_points[reason]++;
        const point = pointAt(points, i);
        point.stream = stream;
        quarantinePoint(open.quarantine, now, batch.gateway_id, batch.batch_seq, point, reason);
        continue;
      }
      // A v2 batch comes grouped by drone: the dedupe sets are looked up once per run.
      const drone = drones.values[i]!;
      if (run === null || drone !== runDrone || stream !== run.stream) {
        run = pointLedger.run(drones.dictionary![drone]!, stream, open.pointKeys, committingKeys);
        runDrone = drone;
      }
      if (!takeSeq(run, seqs[i]!)) {
        stats.pointsDuplicate++;
        counts.duplicate_points++;
        continue;
      }
      rows[kept++] = i;
      if (liveRows) {
        // pointAt makes a fresh object: the batch's stream is set on it, not on a copy.
        const point = pointAt(points, i);
        point.stream = stream;
        liveRows.push({ point, gatewayId: batch.gateway_id, ingestedAtUs: now });
      }
      if (times[i]! < closedBefore) {
        counts.late_points++;
        stats.pointsLate++;
      }
    }
    stageRows(open, points, rows, kept, stageDictIds(points), batch.stream, batch.gateway_id, now);
    stats.pointsStaged += kept;
    ledger.markStaged(batch.gateway_id, batch.batch_seq);
    recordBatch(open, batch.gateway_id, batch.batch_seq);
    if (liveRows && live && !liveAfterCommit) live.send(liveRows);
    // Half the bound: the commit starts while there is still room to take messages.
    if (open.points >= commitPoints || stagedBytes(open) >= maxStagedBytes / 2) void commit();
  };
}
