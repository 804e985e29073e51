// parquetjs-lite ships no types; this declares only what bench/parquet-writers.ts uses.
declare module 'parquetjs-lite' {
  // lib/compression.js: LZO and BROTLI throw "Not Supported in Lite version", and there is no ZSTD.
  export type ParquetCompression = 'UNCOMPRESSED' | 'GZIP' | 'SNAPPY';

  export interface ParquetFieldOptions {
    type: 'UTF8' | 'UINT_64' | 'TIMESTAMP_MICROS' | 'DOUBLE' | 'UINT_32' | 'BOOLEAN';
    optional?: boolean;
    compression?: ParquetCompression;
  }

  class ParquetSchema {
    constructor(fields: Record<string, ParquetFieldOptions>);
  }

  class ParquetWriter {
    static openFile(schema: ParquetSchema, path: string, opts?: { rowGroupSize?: number }): Promise<ParquetWriter>;
    appendRow(row: Record<string, unknown>): Promise<void>;
    close(): Promise<void>;
  }

  // A CommonJS module: Node's ESM loader hands module.exports over as the default export.
  const parquet: { ParquetSchema: typeof ParquetSchema; ParquetWriter: typeof ParquetWriter };
  export default parquet;
}
