import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { TELEMETRY_PREFIX } from '../sink/layout';
import { lakeUrl } from '../sink/catalog/lake-url';
import type { LakeStorage } from '../sink/storage';

// INTERIM FIXTURE: until the sink writes the lake as an Iceberg table, this test writes
// the table's metadata files itself, as a writer would (create-only, v1, v2, ...), with a
// schema of a few of the lake's columns. At merge, a real sink writes them instead.
const TABLE_UUID = '9c12d441-03fe-4693-9a96-a0705ddf69c1';
export function tableMetadata(lake: string, snapshots: number): Record<string, unknown> {
  const location = lakeUrl(lake, TELEMETRY_PREFIX);
  const list = Array.from({ length: snapshots }, (_, i) => ({
    'snapshot-id': 1000 + i,
    ...(i > 0 && { 'parent-snapshot-id': 1000 + i - 1 }),
    'sequence-number': i + 1,
    'timestamp-ms': 1_796_000_000_000 + i * 5000,
    'manifest-list': `${location}/metadata/snap-${1000 + i}-1-${TABLE_UUID}.avro`,
    summary: { operation: 'append', 'added-records': String(100 * (i + 1)) },
    'schema-id': 0,
  }));
  return {
    'format-version': 2,
    'table-uuid': TABLE_UUID,
    location,
    'last-sequence-number': snapshots,
    'last-updated-ms': 1_796_000_000_000 + snapshots * 5000,
    'last-column-id': 4,
    'current-schema-id': 0,
    schemas: [
      {
        type: 'struct',
        'schema-id': 0,
        'identifier-field-ids': [1, 2],
        fields: [
          { id: 1, name: 'drone_id', required: true, type: 'string' },
          { id: 2, name: 'seq', required: true, type: 'long' },
          { id: 3, name: 'ts', required: true, type: 'timestamptz' },
          { id: 4, name: 'battery_pct', required: false, type: 'double' },
        ],
      },
    ],
    'default-spec-id': 0,
    'partition-specs': [{ 'spec-id': 0, fields: [{ 'source-id': 3, 'field-id': 1000, name: 'ts_hour', transform: 'hour' }] }],
    'last-partition-id': 1000,
    'default-sort-order-id': 0,
    'sort-orders': [{ 'order-id': 0, fields: [] }],
    properties: { 'write.format.default': 'parquet' },
    ...(snapshots > 0 && { 'current-snapshot-id': 1000 + snapshots - 1 }),
    snapshots: list,
    'snapshot-log': list.map((s) => ({ 'snapshot-id': s['snapshot-id'], 'timestamp-ms': s['timestamp-ms'] })),
    'metadata-log': [],
  };
}

export async function publishText(storage: LakeStorage, key: string, text: string): Promise<void> {
  const local = path.join(storage.stagingDir, path.posix.basename(key));
  await writeFile(local, text);
  await storage.publish(local, key);
}

