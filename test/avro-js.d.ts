// The second Avro decoder the table's manifests are checked with (Apache Avro's JavaScript
// implementation) ships no types. Its files module is imported alone: the package's index
// also loads a deprecated validator that needs a package it does not declare.
declare module 'avro-js/lib/files.js' {
  import type { Readable } from 'node:stream';
  export function createFileDecoder(path: string): Readable;
  export function extractFileHeader(path: string): { meta: Record<string, unknown> } | null;
}
