import type { IngestStats } from './ingest-api';
import type { IngestAuthStats } from './ingest-auth';
import type { MavlinkUdpStats } from './mavlink/udp';
import type { PublisherStats } from './publisher';
import type { SpoolStats } from './spool';

/** The agent's counters: what agent.stats() returns and metrics.ts exports at scrape time. */
export interface AgentStats extends PublisherStats {
  pointsIn: number;
  batchesClosed: number;
  pendingBatches: number;
  pendingPoints: number;
  pendingBytes: number;
  spool: SpoolStats;
  oldestUnackedAgeSeconds: number | null;
  /** What the MAVLink sources decoded, skipped, counted as damage and refused; null without one. */
  mavlink: MavlinkUdpStats | null;
  /** What the ingest API took, and what its token check refused; null without --http. */
  ingest: (IngestStats & IngestAuthStats) | null;
}
