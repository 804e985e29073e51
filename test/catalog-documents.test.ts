import { DuckDBInstance } from '@duckdb/node-api';
import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import { describe, expect, it } from 'vitest';
import { LAKE_COLUMNS } from '../proto/columns';
import { nowMicros } from '../proto/time';
import { FlightState, GpsFix, type TelemetryPoint } from '../proto/types';
import { INVALID_REASONS, invalidReason, MIN_TS_MICROS, type InvalidReason } from '../proto/validate';
import { COLUMN_DOCS } from '../sink/catalog/columns-doc';
import { buildContract, CONTRACT_ID, type ContractInput } from '../sink/catalog/contract';
import { buildRunEvent, ERROR_RATES_FACET, errorRatesFacetSchema, type RunEventInput } from '../sink/catalog/lineage';
import { buildProduct } from '../sink/catalog/product';
import { qualityRules } from '../sink/catalog/rules';
import type { QualityMetrics, SloStatus } from '../sink/catalog/types';
import { sloTargets } from '../sink/slo';
import { BATCH_REJECT_REASONS } from '../sink/stats';
import { HAS_SCHEMAS, loadValidators } from './schemas';

type Json = Record<string, any>;

const LOCAL = { lake: '/srv/fleet/lake' };
const S3 = { lake: 's3://fleet-lake/prod', s3Endpoint: 'http://127.0.0.1:4569' };
const OWNERSHIP = { team: 'fleet-data', owner: 'ana@fleet.example', support: 'mailto:fleet-data@fleet.example' };
const SLOS = sloTargets({ availabilityPct: 99.5, minThroughput: 100, maxErrorRate: 0.01, maxCommitIntervalSeconds: 10, maxFreshnessSeconds: 600, retentionDays: 365 });
const SKEW_S = 300;
const CREATED = '2026-11-25T10:00:00.000Z';
const RUN_ID = '0f8e4a52-3c1b-4d8e-9a57-2b6c1d0e9f31';
const PRODUCER = 'https://github.com/dronelake/dronelake';

const LIVE = { after: 'commit', format: 'json', broker: 'mqtt://127.0.0.1:1883', alertBatteryPct: 20, alertSilenceSeconds: 60 } as const;

const contractInput = (location: ContractInput['location']): ContractInput => ({
  location,
  ownership: OWNERSHIP,
  slos: SLOS,
  version: '0.1.0',
  flushIntervalSeconds: 5,
  latenessSeconds: 3600,
  maxFutureSkewSeconds: SKEW_S,
  createdAt: CREATED,
});

const zeroes = <K extends string>(keys: readonly K[]): Record<K, number> => Object.fromEntries(keys.map((k) => [k, 0])) as Record<K, number>;

const EMPTY: QualityMetrics = {
  from: '2026-11-25T10:00:00.000Z',
  to: '2026-11-25T10:00:00.000Z',
  rows: 0,
  received_points: 0,
  missing_entries: 0,
  drones: 0,
  streams: 0,
  streams_by_drone: {},
  reported_lost: 0,
  in_flight: 0,
  rejected_points: 0,
  rejected_points_by_reason: zeroes(INVALID_REASONS),
  undecodable_batches: 0,
  rejected_batches_by_reason: zeroes(BATCH_REJECT_REASONS),
  rejected_batch_repeats: 0,
  error_rate: 0,
  duplicates_dropped: 0,
  late_points: 0,
  freshness_seconds: null,
  latency_p50_ms: null,
  latency_p99_ms: null,
  throughput_rows_per_second: 0,
  partitions: {},
};

const BUSY: QualityMetrics = {
  ...EMPTY,
  from: '2026-11-25T10:00:00.000Z',
  to: '2026-11-25T10:01:00.000Z',
  rows: 11_815,
  received_points: 12_000,
  missing_entries: 3,
  reported_lost: 10,
  in_flight: 4,
  rejected_points: 150,
  rejected_points_by_reason: { ...zeroes(INVALID_REASONS), lat_range: 100, ts_in_future: 50 },
  undecodable_batches: 2,
  rejected_batches_by_reason: { ...zeroes(BATCH_REJECT_REASONS), undecodable: 2 },
  rejected_batch_repeats: 3,
  error_rate: 152 / 12_002,
  duplicates_dropped: 30,
  late_points: 5,
  freshness_seconds: 2.5,
  latency_p50_ms: 800,
  latency_p99_ms: 2400,
  throughput_rows_per_second: 11_815 / 60,
  partitions: { 'date=2026-11-25/hour=09': 5, 'date=2026-11-25/hour=10': 11_810 },
};

const STATUS: SloStatus[] = [
  { property: 'availability', target: 99.5, actual: 100, unit: '%', met: true, breach: 0 },
  { property: 'throughput', target: 100, actual: 196.9, unit: 'rows/s', met: true, breach: 0 },
  { property: 'errorRate', target: 0.01, actual: 0.0127, unit: 'ratio', met: false, breach: 0.0027 },
  { property: 'frequency', target: 10, actual: 5, unit: 's', met: true, breach: 0 },
  { property: 'latency', target: 600, actual: 2.5, unit: 's', met: true, breach: 0 },
  { property: 'retention', target: 365, actual: null, unit: 'd', met: true, breach: 0 },
];

const eventInput = (eventType: RunEventInput['eventType'], window: QualityMetrics, slos: SloStatus[], location: RunEventInput['location'] = LOCAL): RunEventInput => ({
  runId: RUN_ID,
  eventType,
  eventTime: window.to,
  window,
  slos,
  location,
  outputBytes: window.rows * 40,
  producer: PRODUCER,
  broker: 'mqtt://broker.fleet.example:1883',
});

const telemetryObject = (contract: Json): Json => contract['schema'].find((o: Json) => o['name'] === 'telemetry');
const propertyOf = (contract: Json, name: string): Json => telemetryObject(contract)['properties'].find((p: Json) => p['name'] === name);

/** Every quality rule of the telemetry object, by name, wherever it sits. */
function contractRules(contract: Json): Map<string, Json & { on?: string }> {
  const object = telemetryObject(contract);
  const entries = [...object['quality'], ...object['properties'].flatMap((p: Json) => (p['quality'] ?? []).map((q: Json) => ({ ...q, on: p['name'] })))];
  return new Map(entries.map((q: Json) => [q['name'], q]));
}

const telemetryOutput = (event: Json): Json => event['outputs'][0];
const assertions = (event: Json): Json[] => telemetryOutput(event)['facets']['dataQualityAssertions']['assertions'];

describe('catalog documents', () => {
  describe('columns', () => {
    it('documents every lake column, in file order, with a description from the proto and a unit from its name', () => {
      expect(COLUMN_DOCS.map((c) => c.name)).toEqual(LAKE_COLUMNS.map((c) => c.name));
      for (const doc of COLUMN_DOCS) expect(doc.description.length, doc.name).toBeGreaterThan(2);
      const units = Object.fromEntries(COLUMN_DOCS.filter((c) => c.unit).map((c) => [c.name, c.unit]));
      expect(units).toEqual({ lat: 'deg', lon: 'deg', alt_m: 'm', rel_alt_m: 'm', ground_speed_mps: 'm/s', vertical_speed_mps: 'm/s', heading_deg: 'deg', battery_pct: '%', battery_voltage_v: 'V' });
      // Every double in the lake is a measurement, and has a unit.
      for (const c of LAKE_COLUMNS.filter((c) => c.sqlType === 'DOUBLE')) expect(units[c.name], c.name).toBeDefined();

      const doc = (name: string) => COLUMN_DOCS.find((c) => c.name === name)!;
      expect(doc('alt_m').description).toBe('alt: metres above mean sea level');
      expect(doc('ts').description).toContain('event time, microseconds since the Unix epoch, UTC; stored as a UTC timestamp');
      expect(doc('gps_fix').description).toContain('one of unspecified, none, 2d, 3d, dgps, rtk_float, rtk_fixed');
      expect(doc('gateway_id').description).toContain('gateway');
      expect(COLUMN_DOCS.filter((c) => c.required).map((c) => c.name)).toEqual(['drone_id', 'seq', 'ts', 'gateway_id', 'ingested_at']);
    });

    it('puts every column in the contract, with its types, description and unit, the key and the partitions', () => {
      const contract = buildContract(contractInput(LOCAL)) as Json;
      const properties: Json[] = telemetryObject(contract)['properties'];
      expect(properties.map((p) => p['name'])).toEqual([...LAKE_COLUMNS.map((c) => c.name), 'date', 'hour']);
      for (const doc of COLUMN_DOCS) {
        const p = propertyOf(contract, doc.name);
        expect(p['description']).toBe(doc.description);
        expect(p['physicalType']).toBe(doc.sqlType);
        expect(p['required']).toBe(doc.required);
        expect(p['customProperties']?.find((c: Json) => c['property'] === 'unit')?.value ?? null).toBe(doc.unit);
      }
      const keyed = properties.filter((p) => p['primaryKey']).map((p) => [p['name'], p['primaryKeyPosition']]);
      expect(keyed).toEqual([
        // In file order; the key's order is (drone_id, stream, seq).
        ['drone_id', 1],
        ['seq', 3],
        ['stream', 2],
      ]);
      const partitions = properties.filter((p) => p['partitioned']).map((p) => [p['name'], p['partitionKeyPosition']]);
      expect(partitions).toEqual([
        ['date', 1],
        ['hour', 2],
      ]);
      expect(propertyOf(contract, 'lat')['logicalTypeOptions']).toEqual({ format: 'f64', minimum: -90, maximum: 90 });
      expect(propertyOf(contract, 'ts')['logicalTypeOptions']).toMatchObject({ timezone: true, minimum: '2000-01-01T00:00:00.000Z' });
      expect(contract['schema'].map((o: Json) => o['name'])).toEqual(['telemetry', 'quarantined_points', 'quarantined_batches']);
    });
  });

  describe('quality rules', () => {
    it('name every point rule, the key, the required columns and freshness, the same in the contract and the events', () => {
      const contract = buildContract(contractInput(LOCAL)) as Json;
      const rules = contractRules(contract);
      const names = [...rules.keys()];
      expect(new Set(names).size).toBe(names.length);
      expect(names).toEqual(expect.arrayContaining([...INVALID_REASONS, 'drone_seq_unique', 'freshness', 'drone_id_not_null', 'seq_not_null', 'ts_not_null', 'gateway_id_not_null', 'ingested_at_not_null']));
      expect(names.sort()).toEqual(qualityRules(SLOS).map((r) => r.name).sort());
      expect(rules.get('lat_range')).toMatchObject({ on: 'lat', dimension: 'conformity', type: 'sql', mustBe: 0 });
      expect(rules.get('drone_seq_unique')).toMatchObject({ dimension: 'uniqueness' });
      expect(rules.get('drone_seq_unique')!.on).toBeUndefined();
      expect(rules.get('freshness')).toMatchObject({ on: 'ts', dimension: 'timeliness', mustBeLessOrEqualTo: 600, unit: 's' });
      expect(rules.get('ts_in_future')!['query']).toContain(`to_seconds(${SKEW_S})`);

      const event = buildRunEvent(eventInput('RUNNING', BUSY, STATUS)) as Json;
      const asserted = assertions(event);
      expect(asserted.map((a) => a['name']).sort()).toEqual(names.sort());
      for (const a of asserted) expect(a['column'], a['name']).toBe(rules.get(a['name'])!.on);
    });

    it('have no freshness rule without a latency objective', () => {
      const contract = buildContract({ ...contractInput(LOCAL), slos: SLOS.filter((s) => s.property !== 'latency') }) as Json;
      expect(contractRules(contract).has('freshness')).toBe(false);
      const event = buildRunEvent(eventInput('START', EMPTY, [])) as Json;
      expect(assertions(event).map((a) => a['name'])).not.toContain('freshness');
    });

    it("report the window's rejections in the events: a rule fails when points broke it", () => {
      const event = buildRunEvent(eventInput('RUNNING', BUSY, STATUS)) as Json;
      const byName = new Map(assertions(event).map((a) => [a['name'], a]));
      expect(byName.get('lat_range')).toMatchObject({ success: false, column: 'lat', expected: '0', actual: '100' });
      expect(byName.get('ts_in_future')).toMatchObject({ success: false, actual: '50' });
      expect(byName.get('lon_range')).toMatchObject({ success: true, actual: '0' });
      expect(byName.get('drone_seq_unique')).toMatchObject({ success: true, params: { duplicatesDropped: 30 } });
      expect(byName.get('freshness')).toMatchObject({ success: true, column: 'ts', expected: '<= 600 s', actual: '2.5 s' });
    });

    it("hold on valid rows, and each point rule's query counts a row that breaks it", async () => {
      const contract = buildContract(contractInput(LOCAL)) as Json;
      const rules = contractRules(contract);
      const now = nowMicros();
      const valid: TelemetryPoint = { drone_id: 'gw-1.d_0001', seq: 7, ts: now - 5_000_000, lat: 47.4, lon: 8.5, alt_m: 500, battery_pct: 80, gps_fix: GpsFix.fix3d, flight_state: FlightState.cruise, armed: true };
      const broken: Record<InvalidReason, Partial<TelemetryPoint>> = {
        drone_id_pattern: { drone_id: 'no spaces allowed' },
        seq_range: { seq: 2 ** 53 },
        stream_range: { stream: 2 ** 53 },
        ts_before_2000: { ts: MIN_TS_MICROS - 1_000_000 },
        ts_in_future: { ts: now + (SKEW_S + 60) * 1_000_000 },
        not_finite: { alt_m: Number.POSITIVE_INFINITY },
        lat_range: { lat: 91 },
        lon_range: { lon: -181 },
        battery_pct_range: { battery_pct: 100.5 },
        enum_unknown: { flight_state: 99 },
      };

      const literal = (column: (typeof LAKE_COLUMNS)[number], value: unknown): string => {
        if (value == null) return 'NULL';
        if (column.enumNames) return `'${column.enumNames[value as number] ?? String(value)}'`;
        if (column.kind === 'timestamp') return `make_timestamp(${value as number})::TIMESTAMPTZ`;
        if (typeof value === 'string') return `'${value.replaceAll("'", "''")}'`;
        if (typeof value === 'number' && !Number.isFinite(value)) return `'${value}'::DOUBLE`;
        return String(value);
      };
      const row = (p: TelemetryPoint): string => {
        const sink: Record<string, unknown> = { gateway_id: 'gw-1', ingested_at: now };
        return `(${LAKE_COLUMNS.map((c) => literal(c, c.origin === 'sink' ? sink[c.name] : p[c.name as keyof TelemetryPoint])).join(', ')})`;
      };

      const db = await DuckDBInstance.create(':memory:');
      const conn = await db.connect();
      try {
        await conn.run("SET TimeZone = 'UTC'");
        await conn.run(`CREATE TABLE telemetry (${LAKE_COLUMNS.map((c) => `${c.name} ${c.sqlType}`).join(', ')})`);
        const count = async (query: string): Promise<number> => Number((await conn.runAndReadAll(query)).getRows()[0]![0]);
        const load = async (points: TelemetryPoint[]) => {
          await conn.run('DELETE FROM telemetry');
          await conn.run(`INSERT INTO telemetry VALUES ${points.map(row).join(', ')}`);
        };

        await load([valid, { ...valid, seq: 8, drone_id: 'gw-2.d_0002' }]);
        for (const [name, rule] of rules) {
          const value = await count(rule['query']);
          if ('mustBe' in rule) expect(value, name).toBe(rule['mustBe']);
          else expect(value, name).toBeLessThanOrEqual(rule['mustBeLessOrEqualTo']);
        }

        for (const reason of INVALID_REASONS) {
          const bad = { ...valid, seq: 9, ...broken[reason] };
          expect(invalidReason(bad, now, SKEW_S * 1_000_000), reason).toBe(reason);
          await load([valid, bad]);
          expect(await count(rules.get(reason)!['query']), reason).toBe(1);
        }

        await load([valid, valid]);
        expect(await count(rules.get('drone_seq_unique')!['query'])).toBe(1);
      } finally {
        conn.closeSync();
        db.closeSync();
      }
    });
  });

  describe('the contract', () => {
    it('describes a local lake with local servers, and the layout', () => {
      const contract = buildContract(contractInput(LOCAL)) as Json;
      expect(contract).toMatchObject({ apiVersion: 'v3.1.0', kind: 'DataContract', id: CONTRACT_ID, status: 'active', domain: 'drones', version: '0.1.0', contractCreatedTs: CREATED });
      expect(contract['servers']).toEqual([
        expect.objectContaining({ server: 'telemetry', type: 'local', format: 'iceberg', path: '/srv/fleet/lake/drones/telemetry/v1' }),
        expect.objectContaining({ server: 'quarantined_points', type: 'local', format: 'json', path: '/srv/fleet/lake/drones/_quarantine/points/**/*.ndjson' }),
        expect.objectContaining({ server: 'quarantined_batches', type: 'local', format: 'json', path: '/srv/fleet/lake/drones/_quarantine/batches/**/*.ndjson' }),
      ]);
      expect(contract['servers'][0]['description']).toContain('drones/telemetry/v1/date=YYYY-MM-DD/hour=HH/');
      expect(contract['servers'][0]['customProperties']).toEqual(
        expect.arrayContaining([
          { property: 'tableFormat', value: 'iceberg', description: expect.any(String) },
          { property: 'metadataLocation', value: 'file:///srv/fleet/lake/drones/telemetry/v1/metadata/', description: expect.any(String) },
          { property: 'layoutGlob', value: 'drones/telemetry/v1/**/*.parquet', description: expect.any(String) },
        ]),
      );
      expect(contract['description']['limitations']).toContain('grace period');
      expect(contract['description']['limitations']).toContain('3600 s after their hour ends');
    });

    it('describes an S3 lake with S3 servers and the endpoint', () => {
      const contract = buildContract(contractInput(S3)) as Json;
      expect(contract['servers'][0]).toMatchObject({ type: 's3', location: 's3://fleet-lake/prod/drones/telemetry/v1', endpointUrl: S3.s3Endpoint, format: 'iceberg' });
      expect(contract['servers'][1]).toMatchObject({ type: 's3', location: 's3://fleet-lake/prod/drones/_quarantine/points/**/*.ndjson', format: 'json', delimiter: 'new_line' });
      expect(buildContract(contractInput({ lake: 's3://fleet-lake' })) as Json).not.toHaveProperty('servers.0.endpointUrl');
    });

    it('states each objective as an SLA property', () => {
      const contract = buildContract(contractInput(LOCAL)) as Json;
      expect(contract['slaProperties'].map((s: Json) => [s['property'], s['value'], s['unit']])).toEqual(SLOS.map((s) => [s.property, s.target, s.unit]));
      expect(contract['slaProperties'].find((s: Json) => s['property'] === 'latency')).toMatchObject({ element: 'telemetry.ts' });
    });
  });

  describe('the lineage events', () => {
    it('name the datasets after the lake and the broker', () => {
      const local = buildRunEvent(eventInput('START', EMPTY, [])) as Json;
      expect(local['job']).toMatchObject({ namespace: 'file:///srv/fleet/lake', name: 'drones.telemetry.ingest', facets: { jobType: { processingType: 'STREAMING', integration: 'DRONELAKE', jobType: 'JOB' } } });
      expect(local['inputs']).toEqual([
        { namespace: 'mqtt://broker.fleet.example:1883', name: 'dronelake/v2/telemetry/+/+' },
        { namespace: 'mqtt://broker.fleet.example:1883', name: 'dronelake/v1/telemetry/+' },
      ]);
      expect(local['outputs'].map((o: Json) => [o['namespace'], o['name']])).toEqual([
        ['file', '/srv/fleet/lake/drones/telemetry/v1'],
        ['file', '/srv/fleet/lake/drones/_quarantine/points'],
        ['file', '/srv/fleet/lake/drones/_quarantine/batches'],
      ]);
      const s3 = buildRunEvent(eventInput('START', EMPTY, [], S3)) as Json;
      expect(s3['job']['namespace']).toBe('s3://fleet-lake/prod');
      expect(telemetryOutput(s3)).toMatchObject({ namespace: 's3://fleet-lake', name: 'prod/drones/telemetry/v1' });
    });

    it("carry the window's statistics", () => {
      const event = buildRunEvent(eventInput('RUNNING', BUSY, STATUS)) as Json;
      const out = telemetryOutput(event);
      expect(out['outputFacets']['outputStatistics']).toMatchObject({ rowCount: 11_815, size: 11_815 * 40 });
      expect(out['facets']['dataQualityMetrics']).toMatchObject({ rowCount: 11_815, columnMetrics: { drone_id: { nullCount: 0, count: 11_815 } } });
      expect(out['facets']['schema']['fields'].map((f: Json) => f['name'])).toEqual([...LAKE_COLUMNS.map((c) => c.name), 'date', 'hour']);
      expect(out['outputFacets'][ERROR_RATES_FACET]).toMatchObject({
        errorRate: BUSY.error_rate,
        rejectedPoints: 150,
        rejectedPointsByReason: { lat_range: 100, ts_in_future: 50 },
        rejectedBatches: 2,
        duplicatesDropped: 30,
        latePoints: 5,
        missingEntries: 3,
        reportedLost: 10,
        inFlight: 4,
        freshnessSeconds: 2.5,
        slos: STATUS,
      });
    });

    it('are valid under our own schema of the error-rates facet', () => {
      const ajv = new Ajv2020({ allErrors: true, allowUnionTypes: true });
      addFormats(ajv);
      // Our part of the facet; the OpenLineage base it extends (`_producer`, `_schemaURL`) is checked with the official schemas below.
      const body = errorRatesFacetSchema.$defs.ErrorRatesOutputDatasetFacet.allOf[1] as Json;
      const validate = ajv.compile({ ...body, $defs: { SloStatus: errorRatesFacetSchema.$defs.SloStatus } });
      for (const [window, slos] of [
        [EMPTY, []],
        [BUSY, STATUS],
      ] as const) {
        const facet = (buildRunEvent(eventInput('RUNNING', window, [...slos])) as Json)['outputs'][0]['outputFacets'][ERROR_RATES_FACET];
        expect(validate(facet), JSON.stringify(validate.errors)).toBe(true);
        expect(facet['_schemaURL']).toBe(`${errorRatesFacetSchema.$id}#/$defs/ErrorRatesOutputDatasetFacet`);
        expect(facet['_producer']).toBe(PRODUCER);
        expect(Object.keys(facet).filter((k) => !k.startsWith('_')).sort()).toEqual(Object.keys(body['properties']).sort());
        expect(validate({ ...facet, errorRate: 1.5 })).toBe(false);
      }
      expect(Object.keys(body['properties']['rejectedPointsByReason']['properties'])).toEqual([...INVALID_REASONS]);
      expect(Object.keys(body['properties']['rejectedBatchesByReason']['properties'])).toEqual([...BATCH_REJECT_REASONS]);
    });
  });

  it("list the page, the Iceberg REST catalog and every machine-readable document among the descriptor's management ports, at the sink's URL", () => {
    const product = buildProduct({ location: LOCAL, ownership: OWNERSHIP, version: '0.1.0', contractId: CONTRACT_ID, httpUrl: 'http://127.0.0.1:9464' }) as Json;
    const urls = Object.fromEntries((product['managementPorts'] as Json[]).filter((p) => p['type'] === 'rest').map((p) => [p['name'], p['url']]));
    expect(urls).toEqual({
      page: 'http://127.0.0.1:9464/',
      iceberg: 'http://127.0.0.1:9464/iceberg',
      contract: 'http://127.0.0.1:9464/catalog/contract',
      product: 'http://127.0.0.1:9464/catalog/product',
      'slo-status': 'http://127.0.0.1:9464/catalog/slo-status',
      'quality-history': 'http://127.0.0.1:9464/catalog/quality',
      lineage: 'http://127.0.0.1:9464/catalog/lineage',
      quality: 'http://127.0.0.1:9464/quality/latest',
      metrics: 'http://127.0.0.1:9464/metrics',
    });
  });

  it('list both input wires: v2 on bucket topics, and v1 as deprecated', () => {
    const product = buildProduct({ location: LOCAL, ownership: OWNERSHIP, version: '0.1.0', contractId: CONTRACT_ID }) as Json;
    const ports = product['inputPorts'].map((p: Json) => ({ name: p['name'], version: p['version'], tags: p['tags'], ...Object.fromEntries(p['customProperties'].map((c: Json) => [c['property'], c['value']])) }));
    expect(ports).toMatchObject([
      { name: 'gateway-telemetry', version: 'v2', topic: 'dronelake/v2/telemetry/{bucket}/{gatewayId}', bucket: 'CRC-32(gatewayId) mod 64', message: 'dronelake.telemetry.v1.ColumnarBatch' },
      { name: 'gateway-telemetry-v1', version: 'v1', tags: ['deprecated'], topic: 'dronelake/v1/telemetry/{gatewayId}', message: 'dronelake.telemetry.v1.Batch', status: 'deprecated' },
    ]);
  });

  it('are the same document for the same input', () => {
    const twice = <T>(build: () => T): [string, string] => [JSON.stringify(build()), JSON.stringify(build())];
    for (const [a, b] of [
      twice(() => buildContract(contractInput(LOCAL))),
      twice(() => buildContract(contractInput(S3))),
      twice(() => buildProduct({ location: S3, ownership: OWNERSHIP, version: '0.1.0', contractId: CONTRACT_ID, createdAt: CREATED })),
      twice(() => buildRunEvent(eventInput('RUNNING', BUSY, STATUS))),
    ]) {
      expect(a).toBe(b);
    }
  });

  describe('against the official schemas', () => {
    const validators = loadValidators();
    const why = HAS_SCHEMAS ? '' : ' (skipped: ../shared/schemas is not there)';

    it.skipIf(!HAS_SCHEMAS)(`the contract of a local lake and of an S3 lake is valid ODCS v3.1.0${why}`, () => {
      for (const location of [LOCAL, S3, { lake: 's3://fleet-lake' }]) {
        expect(validators!.contract(buildContract(contractInput(location))), location.lake).toEqual([]);
      }
      const { createdAt: _, ...undated } = contractInput(LOCAL);
      expect(validators!.contract(buildContract({ ...undated, slos: [] }))).toEqual([]);
      // With the live port, the events are a dataset of their own, on a server of their own.
      const withLive = buildContract({ ...contractInput(LOCAL), live: LIVE }) as Json;
      expect(validators!.contract(withLive)).toEqual([]);
      expect((withLive['schema'] as Json[]).map((o) => o['name'])).toEqual(['telemetry', 'quarantined_points', 'quarantined_batches', 'events']);
    });

    it.skipIf(!HAS_SCHEMAS)(`the product descriptor is valid ODPS v1.0.0${why}`, () => {
      const base = { ownership: OWNERSHIP, version: '0.1.0', contractId: CONTRACT_ID };
      for (const doc of [
        buildProduct({ ...base, location: LOCAL }),
        buildProduct({ ...base, location: S3, httpUrl: 'http://127.0.0.1:9464', createdAt: CREATED }),
        buildProduct({ ...base, location: LOCAL, httpUrl: 'http://127.0.0.1:9464', live: LIVE }),
      ]) {
        expect(validators!.product(doc)).toEqual([]);
      }
    });

    it.skipIf(!HAS_SCHEMAS)(`START, RUNNING, COMPLETE and FAIL events are valid OpenLineage 2-0-2, facets included${why}`, () => {
      for (const input of [
        eventInput('START', EMPTY, []),
        eventInput('RUNNING', BUSY, STATUS),
        eventInput('RUNNING', BUSY, STATUS, S3),
        eventInput('COMPLETE', BUSY, STATUS),
        eventInput('FAIL', EMPTY, STATUS),
      ]) {
        expect(validators!.runEvent(buildRunEvent(input)), input.eventType).toEqual([]);
      }
    });

    it.skipIf(!HAS_SCHEMAS)(`the validators reject broken documents, with readable messages${why}`, () => {
      const contract = { ...(buildContract(contractInput(LOCAL)) as Json), quality: [] };
      expect(validators!.contract(contract)).toContain('/ must NOT have additional properties: quality');
      const product = buildProduct({ location: LOCAL, ownership: OWNERSHIP, version: '0.1.0', contractId: CONTRACT_ID }) as Json;
      expect(validators!.product({ ...product, inputPorts: [{ name: 'x' }] })).toEqual(expect.arrayContaining(['/inputPorts/0 must have required property \'version\': version']));

      const event = buildRunEvent(eventInput('RUNNING', BUSY, STATUS)) as Json;
      const stats = event['outputs'][0]['outputFacets']['outputStatistics'];
      stats['rowCount'] = 'many';
      expect(validators!.runEvent(event)).toEqual(['/outputs/0/outputFacets/outputStatistics/rowCount must be integer']);
      stats['rowCount'] = 1;
      stats['_schemaURL'] = 'https://openlineage.io/spec/facets/9-9-9/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet';
      expect(validators!.runEvent(event)[0]).toContain('names no known facet schema');
      expect(validators!.runEvent({ ...event, run: { runId: 'not-a-uuid' } }).join('\n')).toContain('/run/runId must match format "uuid"');
    });
  });
});
