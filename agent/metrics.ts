import type { Registry } from 'prom-client';
import { statsRegistry } from '../deploy/runtime/metrics';
import type { AgentStats } from './stats';

/**
 * Prometheus metrics read from the agent's counters at scrape time, so the hot path
 * keeps plain counters and pays nothing per point for metrics.
 */
export function agentMetrics(stats: () => AgentStats): Registry {
  const { registry, counter, gauge, byLabel } = statsRegistry(stats);
  counter('dronelake_agent_points_in_total', 'Points handed to the agent by its sources.', (s) => s.pointsIn);
  counter('dronelake_agent_batches_sent_total', 'Batches published (first sends).', (s) => s.sent);
  counter('dronelake_agent_batches_acked_total', 'Batches the sink acknowledged as committed.', (s) => s.acked);
  counter('dronelake_agent_batches_resent_total', 'Batches published again because their ack was late or the link dropped.', (s) => s.resent);
  counter('dronelake_agent_reconnects_total', 'Reconnect attempts to the broker.', (s) => s.reconnects);
  counter('dronelake_agent_bad_acks_total', 'Commit acks that could not be read.', (s) => s.badAcks);
  gauge('dronelake_agent_spool_bytes', 'Bytes of batches in the spool.', (s) => s.pendingBytes);
  gauge('dronelake_agent_spool_memory_bytes', 'Bytes of spooled batches held in memory (--spool-memory-mib); the rest is on disk.', (s) => s.spool.memoryBytes);
  gauge('dronelake_agent_spool_batches', 'Batches in the spool, awaiting their commit ack.', (s) => s.pendingBatches);
  gauge('dronelake_agent_oldest_unacked_age_seconds', 'Age of the oldest batch not yet acknowledged.', (s) => s.oldestUnackedAgeSeconds ?? 0);
  gauge('dronelake_agent_connected', '1 while connected to the broker.', (s) => (s.connected ? 1 : 0));
  counter('dronelake_agent_dropped_points_total', 'Points dropped by the spool-full policy drop-oldest.', (s) => s.spool.dropped.points);
  gauge('dronelake_agent_spool_disk_full', '1 while the disk under the spool has no room (sources paused).', (s) => (s.spool.diskFull ? 1 : 0));
  counter('dronelake_agent_spool_disk_full_total', 'Times the disk under the spool ran out of room.', (s) => s.spool.diskFullEvents);
  counter('dronelake_agent_spool_corrupt_records_total', 'Spool records found corrupt and skipped when the spool was opened.', (s) => s.spool.recovery.corruptRecords);
  counter('dronelake_agent_spool_truncated_bytes_total', 'Bytes of a torn spool tail truncated when the spool was opened.', (s) => s.spool.recovery.truncatedBytes);
  gauge('dronelake_agent_fsync_seconds', 'Duration of the last spool fsync.', (s) => s.spool.fsyncLastMs / 1000);
  gauge('dronelake_agent_fsync_max_seconds', 'Longest spool fsync so far.', (s) => s.spool.fsyncMaxMs / 1000);
  const mavlink = (name: string, help: string, read: (m: NonNullable<AgentStats['mavlink']>) => number) =>
    counter(`dronelake_agent_mavlink_${name}_total`, help, (s) => (s.mavlink ? read(s.mavlink) : 0));
  mavlink('packets', 'MAVLink packets received whole with a valid CRC.', (m) => m.packets);
  mavlink('points', 'Points made from MAVLink position reports.', (m) => m.points);
  mavlink('bad_crc', 'MAVLink frames whose CRC did not match, skipped.', (m) => m.badCrc);
  mavlink('garbage_bytes', 'Bytes on the MAVLink ports outside any valid packet, skipped.', (m) => m.garbageBytes);
  mavlink('truncated', 'MAVLink datagrams that ended inside a packet.', (m) => m.truncated);
  mavlink('unknown_messages', 'MAVLink packets of message ids no dialect defines, skipped.', (m) => m.unknownMessages);
  mavlink('no_fix', 'MAVLink points without a position (no GPS fix yet), stored with lat/lon null.', (m) => m.noFix);
  mavlink('downsampled', 'MAVLink position reports dropped by --mavlink-hz.', (m) => m.skipped.downsampled);
  mavlink('duplicates', 'MAVLink position reports received twice (same time_boot_ms), dropped.', (m) => m.skipped.duplicate);
  mavlink('paused', 'MAVLink position reports dropped while the spool was full.', (m) => m.skipped.paused);
  mavlink('signed', 'MAVLink frames whose signature, link id and timestamp passed (--mavlink-keys).', (m) => m.signing.verified);
  byLabel(
    'dronelake_agent_mavlink_refused_total',
    'MAVLink frames dropped by the signing check (unsigned, no_key, bad_signature, replayed, stale), and datagrams from senders outside --mavlink-allow (sender_denied).',
    'reason',
    (s) => s.mavlink?.signing.refused ?? {},
  );
  const ingest = (name: string, help: string, read: (i: NonNullable<AgentStats['ingest']>) => number) =>
    counter(`dronelake_agent_ingest_${name}_total`, help, (s) => (s.ingest ? read(s.ingest) : 0));
  ingest('requests', 'Requests to POST /v1/points.', (i) => i.requests);
  ingest('points_accepted', 'Points the ingest API accepted.', (i) => i.pointsAccepted);
  ingest('points_rejected', 'Points the ingest API answered 422 for.', (i) => i.pointsRejected);
  ingest('bad_requests', 'Requests answered 400, 405, 413 or 415.', (i) => i.badRequests);
  ingest('points_forbidden', 'Points of requests refused 403: drones their token may not write.', (i) => i.pointsForbidden);
  byLabel(
    'dronelake_agent_ingest_refused_total',
    'Requests refused by the token check: 401 (missing_token, unknown_token, bad_token) or 403 (forbidden_drone).',
    'reason',
    (s) => s.ingest?.refused ?? {},
  );
  return registry;
}
