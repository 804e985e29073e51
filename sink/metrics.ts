import type { Registry } from 'prom-client';
import { statsRegistry } from '../deploy/runtime/metrics';
import type { SinkSnapshot } from './stats';

/** Prometheus metrics read from the sink's counters at scrape time. */
export function sinkMetrics(stats: () => SinkSnapshot): Registry {
  const { registry, counter, byLabel, gauge } = statsRegistry(stats);
  counter('dronelake_sink_batches_received_total', 'Messages taken from the broker.', (s) => s.batchesReceived);
  byLabel('dronelake_sink_batches_rejected_total', 'Messages quarantined whole, by reason.', 'reason', (s) => s.batchesRejected);
  counter('dronelake_sink_batches_rejected_repeats_total', 'Copies of a message already quarantined (a re-send or redelivery within 24 h), counted and not quarantined again.', (s) => s.batchesRejectedRepeats);
  counter('dronelake_sink_batches_duplicate_total', 'Batches taken again (a re-send), acked again and not stored.', (s) => s.batchesDuplicate);
  counter('dronelake_sink_batches_other_shards_total', "Messages of gateways another shard owns, left to it (--shard).", (s) => s.batchesOtherShards);
  counter('dronelake_sink_batches_empty_total', 'Batches with no point, acked as any other.', (s) => s.batchesEmpty);
  counter('dronelake_sink_batches_committed_total', 'Batches committed to the lake and acked.', (s) => s.batchesCommitted);
  byLabel('dronelake_sink_gateway_dropped_points_total', "Points a gateway's spool reported dropping (--spool-full drop-oldest): a known loss, not a missing entry.", 'gateway', (s) => s.gatewayDroppedPoints);
  counter('dronelake_sink_points_received_total', 'Points of decodable batches.', (s) => s.pointsReceived);
  byLabel('dronelake_sink_points_rejected_total', 'Points quarantined, by the rule they broke.', 'rule', (s) => s.pointsInvalid);
  counter('dronelake_sink_points_duplicate_total', 'Points whose (drone_id, stream, seq) was already stored or staged.', (s) => s.pointsDuplicate);
  gauge('dronelake_sink_point_streams', 'Point streams whose dedupe state is in memory.', (s) => s.streams);
  counter('dronelake_sink_point_streams_evicted_total', 'Point streams whose dedupe state left memory after --stream-idle hours without a commit.', (s) => s.streamsEvicted);
  counter('dronelake_sink_points_late_total', 'Points that arrived for a closed partition.', (s) => s.pointsLate);
  counter('dronelake_sink_points_committed_total', 'Points committed to the lake.', (s) => s.pointsCommitted);
  gauge('dronelake_sink_points_staged', 'Points taken and waiting for their commit.', (s) => s.pointsStaged);
  counter('dronelake_sink_quarantine_files_total', 'NDJSON files published under the quarantine path.', (s) => s.quarantineFiles);
  counter('dronelake_sink_files_compacted_total', 'Files merged away by compactions.', (s) => s.filesCompacted);
  gauge('dronelake_sink_staged_bytes', 'Bytes of points and bad input awaiting commit (estimated).', (s) => s.stagedBytes);
  counter('dronelake_sink_commits_total', 'Commits that reached the table, acks sent.', (s) => s.commits);
  gauge('dronelake_sink_startup_objects_read', 'Objects the sink read from the lake as it started (table metadata and checkpoints): bounded, whatever the history.', (s) => s.startupReads);
  counter('dronelake_sink_table_commits_total', 'Snapshots this sink committed to the Iceberg table (appends and compactions).', (s) => s.tableCommits);
  counter('dronelake_sink_table_commit_retries_total', 'Table commits that lost the race for the next version to another writer and were rebased.', (s) => s.tableCommitRetries);
  counter('dronelake_sink_compactions_stale_total', 'Compactions not committed because another writer changed an input first.', (s) => s.compactionsStale);
  gauge('dronelake_sink_staging_full', '1 while the staging directory has no room: the sink takes no messages.', (s) => (s.staging.status === 'full' ? 1 : 0));
  gauge('dronelake_sink_store_degraded', '1 while commits or compaction passes fail (until one succeeds).', (s) => (s.store.status === 'degraded' ? 1 : 0));
  counter('dronelake_sink_commit_errors_total', 'Commits that failed (nothing acked; the agents send again).', (s) => s.commitErrors);
  counter('dronelake_sink_files_total', 'Parquet files published by commits.', (s) => s.files);
  counter('dronelake_sink_compactions_total', 'Compactions committed to the table as replace snapshots.', (s) => s.compactions);
  counter('dronelake_sink_compaction_errors_total', 'Compaction passes that failed.', (s) => s.compactionErrors);
  counter('dronelake_sink_files_deleted_total', 'Files no retained snapshot names, removed after their grace period.', (s) => s.filesDeleted);
  counter('dronelake_sink_acks_published_total', 'Commit acks published to gateways.', (s) => s.acksPublished);
  counter('dronelake_sink_live_points_total', 'Points published on the live port (MQTT and SSE).', (s) => s.live?.points ?? 0);
  counter('dronelake_sink_live_mqtt_dropped_points_total', 'Live points not published on MQTT: the broker link was down, or not taking what the sink sent.', (s) => s.live?.mqttDroppedPoints ?? 0);
  gauge('dronelake_sink_live_sse_clients', 'Server-Sent Events clients of GET /live.', (s) => s.live?.sseClients ?? 0);
  counter('dronelake_sink_live_sse_disconnected_total', 'SSE clients disconnected for falling behind.', (s) => s.live?.sseDisconnected ?? 0);
  byLabel('dronelake_sink_live_events_total', 'Derived events published, by kind.', 'event', (s) => s.live?.events ?? {});
  gauge('dronelake_sink_latency_p50_milliseconds', 'Event-to-commit latency, median, since the sink started.', (s) => s.latencyMs.p50);
  gauge('dronelake_sink_latency_p99_milliseconds', 'Event-to-commit latency, 99th percentile, since the sink started.', (s) => s.latencyMs.p99);
  return registry;
}
