import type { LakeStorage } from '../storage';
import { keyUri, loadTable, metadataKey, type TableMetadata } from '../table/metadata';

// The drones telemetry as an Apache Iceberg v2 table: what the REST catalog serves and
// the page's snapshots section shows, read as the sink's own readers read it.

export type { TableMetadata };

/** The table's current metadata: its version, its file's URL and its content. */
export interface CurrentTable {
  version: number;
  metadataLocation: string;
  metadata: TableMetadata;
}

/** The current version of the table (see `loadTable`), or null when the lake holds no table yet. */
export async function readCurrentTable(storage: LakeStorage): Promise<CurrentTable | null> {
  const table = await loadTable(storage);
  return table && { version: table.version, metadataLocation: keyUri(storage, metadataKey(table.version)), metadata: table.metadata };
}
