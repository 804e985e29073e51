import { TELEMETRY_V2_WILDCARD, TELEMETRY_WILDCARD } from '../../proto/topics';
import { QUARANTINE_PREFIX, TELEMETRY_PREFIX } from '../layout';
import { COLUMN_DOCS, PARTITION_DOCS, quarantineDocs, type ColumnDoc } from './columns-doc';
import errorRatesFacetSchema from './ErrorRatesOutputDatasetFacet.json';
import { lakeDataset, lakeUrl } from './lake-url';
import { qualityRules, type QualityRule } from './rules';
import type { ProductLocation, QualityMetrics, SloStatus } from './types';

export { errorRatesFacetSchema };

export interface RunEventInput {
  /** A UUID: one per sink process, shared by all its events. */
  runId: string;
  eventType: 'START' | 'RUNNING' | 'COMPLETE' | 'FAIL';
  eventTime: string;
  window: QualityMetrics;
  slos: SloStatus[];
  location: ProductLocation;
  /** Bytes of Parquet committed in the window. */
  outputBytes: number;
  /** URI of the software that emits the event (OpenLineage `producer` and every facet's `_producer`). */
  producer: string;
  /** The MQTT broker the sink reads, as a URL: the input dataset's namespace is its host and port. */
  broker: string;
}

type Doc = Record<string, unknown>;

const OL = 'https://openlineage.io/spec';
const SCHEMA_URLS = {
  runEvent: `${OL}/2-0-2/OpenLineage.json#/$defs/RunEvent`,
  jobType: `${OL}/facets/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet`,
  schema: `${OL}/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet`,
  dataQualityMetrics: `${OL}/facets/1-0-0/DataQualityMetricsDatasetFacet.json#/$defs/DataQualityMetricsDatasetFacet`,
  dataQualityAssertions: `${OL}/facets/1-1-0/DataQualityAssertionsDatasetFacet.json#/$defs/DataQualityAssertionsDatasetFacet`,
  outputStatistics: `${OL}/facets/1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet`,
  errorRates: `${errorRatesFacetSchema.$id}#/$defs/ErrorRatesOutputDatasetFacet`,
};

/** OpenLineage's convention for a custom facet: the producer's prefix, then the facet's name. */
export const ERROR_RATES_FACET = 'dronelake_errorRates';

export const JOB_NAME = 'drones.telemetry.ingest';

const facet = (producer: string, schemaURL: string, body: Doc): Doc => ({ _producer: producer, _schemaURL: schemaURL, ...body });

function schemaFacet(producer: string, docs: readonly ColumnDoc[]): Doc {
  return facet(producer, SCHEMA_URLS.schema, {
    fields: docs.map((c, i) => ({ name: c.name, type: c.sqlType, description: c.description, ordinal_position: i + 1 })),
  });
}

function assertion(rule: QualityRule, input: RunEventInput): Doc {
  const base = { assertion: rule.assertion, name: rule.name, ...(rule.column && { column: rule.column }), description: rule.description };
  if (rule.reason) {
    const rejected = input.window.rejected_points_by_reason[rule.reason];
    return { ...base, success: rejected === 0, expected: '0', actual: String(rejected) };
  }
  if (rule.dimension === 'timeliness') {
    // qualityRules has a freshness rule only when there is a latency objective.
    const latency = input.slos.find((s) => s.property === 'latency')!;
    return {
      ...base,
      success: latency.met,
      expected: `<= ${latency.target} ${latency.unit}`,
      ...(latency.actual !== null && { actual: `${latency.actual} ${latency.unit}` }),
    };
  }
  // Uniqueness and completeness hold by construction: duplicates are dropped before
  // staging, and the key, time and sink columns are always set.
  return { ...base, success: true, expected: '0', actual: '0', ...(rule.dimension === 'uniqueness' && { params: { duplicatesDropped: input.window.duplicates_dropped } }) };
}

function errorRatesFacet(input: RunEventInput): Doc {
  const w = input.window;
  return facet(input.producer, SCHEMA_URLS.errorRates, {
    windowStart: w.from,
    windowEnd: w.to,
    rows: w.rows,
    receivedPoints: w.received_points,
    errorRate: w.error_rate,
    rejectedPoints: w.rejected_points,
    rejectedPointsByReason: w.rejected_points_by_reason,
    rejectedBatches: w.undecodable_batches,
    rejectedBatchesByReason: w.rejected_batches_by_reason,
    duplicatesDropped: w.duplicates_dropped,
    latePoints: w.late_points,
    missingEntries: w.missing_entries,
    reportedLost: w.reported_lost,
    inFlight: w.in_flight,
    freshnessSeconds: w.freshness_seconds,
    latencyP50Ms: w.latency_p50_ms,
    latencyP99Ms: w.latency_p99_ms,
    slos: input.slos.map(({ property, target, actual, unit, met, breach }) => ({ property, target, actual, unit, met, breach })),
  });
}

function telemetryOutput(input: RunEventInput): Doc {
  const { producer, window } = input;
  const required = COLUMN_DOCS.filter((c) => c.required);
  return {
    ...lakeDataset(input.location.lake, TELEMETRY_PREFIX),
    facets: {
      schema: schemaFacet(producer, [...COLUMN_DOCS, ...PARTITION_DOCS]),
      dataQualityMetrics: facet(producer, SCHEMA_URLS.dataQualityMetrics, {
        rowCount: window.rows,
        bytes: input.outputBytes,
        columnMetrics: Object.fromEntries(required.map((c) => [c.name, { nullCount: 0, count: window.rows }])),
      }),
      dataQualityAssertions: facet(producer, SCHEMA_URLS.dataQualityAssertions, {
        assertions: qualityRules(input.slos).map((rule) => assertion(rule, input)),
      }),
    },
    outputFacets: {
      outputStatistics: facet(producer, SCHEMA_URLS.outputStatistics, { rowCount: window.rows, size: input.outputBytes }),
      [ERROR_RATES_FACET]: errorRatesFacet(input),
    },
  };
}

function quarantineOutput(input: RunEventInput, kind: 'points' | 'batches'): Doc {
  return {
    ...lakeDataset(input.location.lake, `${QUARANTINE_PREFIX}/${kind}`),
    facets: { schema: schemaFacet(input.producer, quarantineDocs(kind)) },
  };
}

/**
 * An OpenLineage 2-0-2 RunEvent of the sink, a streaming job: MQTT telemetry in, the lake's
 * telemetry and quarantine out, with the window's statistics and quality on the telemetry.
 * The job's namespace is the lake, so each lake has its own ingest job; each sink process
 * is a run of it.
 */
export function buildRunEvent(input: RunEventInput): Doc {
  const { producer } = input;
  return {
    eventTime: input.eventTime,
    eventType: input.eventType,
    producer,
    schemaURL: SCHEMA_URLS.runEvent,
    run: { runId: input.runId },
    job: {
      namespace: lakeUrl(input.location.lake),
      name: JOB_NAME,
      facets: {
        jobType: facet(producer, SCHEMA_URLS.jobType, { processingType: 'STREAMING', integration: 'DRONELAKE', jobType: 'JOB' }),
      },
    },
    // Both wires feed the one table: v2 from current agents, v1 (deprecated) from old ones.
    inputs: [TELEMETRY_V2_WILDCARD, TELEMETRY_WILDCARD].map((name) => ({ namespace: `mqtt://${new URL(input.broker).host}`, name })),
    outputs: [telemetryOutput(input), quarantineOutput(input, 'points'), quarantineOutput(input, 'batches')],
  };
}
