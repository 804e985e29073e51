import type { ParsedOptions } from '../deploy/runtime/options';
import { PACKAGE_VERSION } from '../deploy/runtime/version';
import type { CatalogConfig } from './catalog/publisher';
import type { LivePortInput } from './catalog/product';
import type { sinkOptions } from './options';
import { sloTargets } from './slo';

/** The sink's options the catalog reads. */
type CatalogOptions = Pick<
  ParsedOptions<typeof sinkOptions>,
  | 's3Endpoint'
  | 'productTeam'
  | 'productOwner'
  | 'productSupport'
  | 'sloAvailability'
  | 'sloThroughput'
  | 'sloErrorRate'
  | 'sloFrequency'
  | 'sloFreshness'
  | 'sloRetention'
  | 'qualityWindow'
  | 'missingAfter'
  | 'flushInterval'
  | 'lateness'
  | 'maxFutureSkew'
  | 'broker'
  | 'openlineageUrl'
>;

/** The catalog's config for a running sink: its options, where it writes, its HTTP URL and live port. */
export function sinkCatalogConfig(config: CatalogOptions, at: { writer: string; lake: string; httpUrl: string | undefined; live: LivePortInput | undefined }): CatalogConfig {
  return {
    writer: at.writer,
    version: PACKAGE_VERSION,
    location: { lake: at.lake, s3Endpoint: config.s3Endpoint },
    ownership: { team: config.productTeam, owner: config.productOwner, support: config.productSupport },
    slos: sloTargets({
      availabilityPct: config.sloAvailability,
      minThroughput: config.sloThroughput,
      maxErrorRate: config.sloErrorRate,
      maxCommitIntervalSeconds: config.sloFrequency,
      maxFreshnessSeconds: config.sloFreshness,
      retentionDays: config.sloRetention,
    }),
    windowMs: config.qualityWindow * 1000,
    settleMs: config.missingAfter * 1000,
    flushIntervalSeconds: config.flushInterval,
    latenessSeconds: config.lateness,
    maxFutureSkewSeconds: config.maxFutureSkew,
    broker: config.broker,
    httpUrl: at.httpUrl,
    openLineageUrl: config.openlineageUrl,
    live: at.live,
  };
}
