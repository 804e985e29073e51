import path from 'node:path';
import { pathToFileURL } from 'node:url';

export const isS3Lake = (lake: string): boolean => lake.startsWith('s3://');

const trimSlashes = (s: string): string => s.replace(/^\/+|\/+$/g, '');

/** A key of the lake as a local path: the lake is a directory. */
export const lakePath = (lake: string, key: string): string => path.join(path.resolve(lake), key);

/**
 * A key of the lake as a URL, or the lake's own without a key. A local lake becomes an
 * absolute file: URL, so documents read from elsewhere still point at the data.
 */
export function lakeUrl(lake: string, key = ''): string {
  if (!isS3Lake(lake)) return pathToFileURL(lakePath(lake, key)).href;
  const root = lake.replace(/\/+$/, '');
  return key ? `${root}/${key.replace(/^\/+/, '')}` : root;
}

/**
 * OpenLineage's name for a dataset under the lake (its naming spec: a local path is
 * namespace `file`, name the absolute path; S3 is namespace `s3://bucket`, name the key).
 */
export function lakeDataset(lake: string, key: string): { namespace: string; name: string } {
  if (!isS3Lake(lake)) return { namespace: 'file', name: lakePath(lake, key) };
  const [bucket = '', ...prefix] = trimSlashes(lake.slice('s3://'.length)).split('/');
  return { namespace: `s3://${bucket}`, name: [...prefix.filter(Boolean), trimSlashes(key)].join('/') };
}
