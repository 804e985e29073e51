import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LakeStorage } from '../sink/storage';
import { readNewCommits, type CommitRecord } from '../sink/checkpoint';
import { currentSnapshot } from '../sink/table/manifests';
import { loadTable, type TableMetadata } from '../sink/table/metadata';
import { liveFiles, type LiveFile } from '../sink/table/scan';

/** The table's current metadata; fails the test if there is no table. */
export async function tableMetadata(storage: LakeStorage): Promise<TableMetadata> {
  const table = await loadTable(storage);
  if (table === null) throw new Error(`${storage.root} has no table`);
  return table.metadata;
}

/** The data files of the table's current snapshot. */
export async function currentFiles(storage: LakeStorage): Promise<LiveFile[]> {
  return liveFiles(storage, currentSnapshot(await tableMetadata(storage)));
}

/** Snapshots of one operation (append, replace) the table keeps. */
export async function snapshotsOf(storage: LakeStorage, operation: string): Promise<number> {
  return (await tableMetadata(storage)).snapshots.filter((s) => s.summary.operation === operation).length;
}

/** Every commit record the table holds, in commit-time order; an unreadable one fails the test. */
export async function commitRecords(storage: LakeStorage): Promise<CommitRecord[]> {
  const table = await loadTable(storage);
  const records: CommitRecord[] = [];
  if (table) {
    const onBad = (key: string, err: Error) => {
      throw new Error(`${key}: ${err.message}`);
    };
    await readNewCommits(storage, table.metadata.properties, onBad, new Map(), (chunk) => records.push(...chunk));
  }
  return records.sort((a, b) => (a.committed_at < b.committed_at ? -1 : a.committed_at > b.committed_at ? 1 : 0));
}

/**
 * A `fetch` that also answers `file://` URLs from disk, with HEAD and byte ranges, as an
 * object store would: the Iceberg reader under test speaks only `fetch`. Other URLs go to
 * the real one.
 */
export function fileFetch(real: typeof fetch): typeof fetch {
  return async (input, init) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    if (!url.startsWith('file:')) return real(input, init);
    let bytes: Buffer;
    try {
      bytes = await readFile(fileURLToPath(url));
    } catch {
      return new Response(null, { status: 404, statusText: 'Not Found' });
    }
    if (init?.method === 'HEAD') return new Response(null, { status: 200, headers: { 'content-length': String(bytes.length) } });
    const range = new Headers(init?.headers).get('range');
    const m = range ? /^bytes=(\d+)-(\d*)$/.exec(range) : null;
    if (m) {
      const start = Number(m[1]);
      const end = m[2] ? Number(m[2]) + 1 : bytes.length;
      return new Response(new Uint8Array(bytes.subarray(start, end)), { status: 206, headers: { 'content-length': String(end - start) } });
    }
    return new Response(new Uint8Array(bytes), { status: 200, headers: { 'content-length': String(bytes.length) } });
  };
}

/** Publishes `text` at `key`, create-only, as a writer of the lake would. */
export async function publishText(storage: LakeStorage, key: string, text: string): Promise<void> {
  const local = path.join(storage.stagingDir, path.posix.basename(key));
  await writeFile(local, text);
  await storage.publish(local, key);
}
