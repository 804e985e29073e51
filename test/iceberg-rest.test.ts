import { IcebergError, IcebergRestCatalog } from 'iceberg-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { EXAMPLE_QUERY_KEY, TABLE_METADATA_PREFIX } from '../sink/layout';
import { startCatalogServer, type CatalogServer } from '../sink/catalog/serve';
import type { LakeStorage } from '../sink/storage';
import { cli, quietLog, runCli, tempDir, waitFor } from './helpers';
import { newManifestCache } from '../sink/table/manifests';
import { keyUri, loadTable, metadataKey } from '../sink/table/metadata';
import { tableWriter, type TableWriter } from '../sink/table/transaction';
import { publishText } from './table';
import { BACKENDS, testLake, type TestLake } from './lakes';

describe.each(BACKENDS)('the Iceberg REST catalog, read with iceberg-js (%s lake)', (backend) => {
  let lake: TestLake;
  let storage: LakeStorage;
  let server: CatalogServer;
  let catalog: IcebergRestCatalog;
  /** The table's own writer commits to it, as a sink does. */
  let writer: TableWriter;
  /** The raw load-table answers: iceberg-js hands back the metadata only, and the location is what tells a client the table changed. */
  const loaded: Array<Record<string, unknown>> = [];

  beforeAll(async () => {
    lake = await testLake(backend);
    storage = await lake.open('rest-writer');
    writer = tableWriter(storage, 'rest-writer', { snapshotRetentionMs: 3_600_000 }, newManifestCache());
    server = await startCatalogServer({ ...lake.config, http: '127.0.0.1:0' }, quietLog);
    catalog = new IcebergRestCatalog({
      baseUrl: `${server.url}/iceberg`,
      fetch: async (input, init) => {
        const res = await fetch(input, init);
        if (init?.method === 'GET' && String(input).includes('/tables/') && res.ok) loaded.push((await res.clone().json()) as Record<string, unknown>);
        return res;
      },
    });
  }, 60_000);

  afterAll(async () => {
    await server?.close();
    await storage?.close();
    await lake?.remove();
  });

  it('lists the namespace and no table before the lake is an Iceberg table', async () => {
    expect(await catalog.listNamespaces()).toEqual([{ namespace: ['drones'] }]);
    expect(await catalog.namespaceExists({ namespace: ['drones'] })).toBe(true);
    expect(await catalog.namespaceExists({ namespace: ['robots'] })).toBe(false);
    expect((await catalog.loadNamespaceMetadata({ namespace: ['drones'] })).properties).toMatchObject({ product: '/catalog/product' });
    expect(await catalog.listTables({ namespace: ['drones'] })).toEqual([]);
    expect(await catalog.tableExists({ namespace: ['drones'], name: 'telemetry' })).toBe(false);
    const err = await catalog.loadTable({ namespace: ['drones'], name: 'telemetry' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IcebergError);
    expect(err).toMatchObject({ status: 404, icebergType: 'NoSuchTableException', message: 'table does not exist: drones.telemetry: the lake is not an Iceberg table yet' });
  });

  it("loads the table at its current metadata file, and follows a new version, not the version hint", async () => {
    // A first commit creates the table (v1) and makes its first snapshot (v2).
    const first = await writer.append([], { 'dronelake.commit': '1' });
    expect(first.version).toBe(2);
    expect(await catalog.listTables({ namespace: ['drones'] })).toEqual([{ namespace: ['drones'], name: 'telemetry' }]);
    expect(await catalog.tableExists({ namespace: ['drones'], name: 'telemetry' })).toBe(true);
    const v2 = await catalog.loadTable({ namespace: ['drones'], name: 'telemetry' });
    expect(v2).toEqual(JSON.parse(JSON.stringify((await loadTable(storage))!.metadata)));
    expect(v2['current-snapshot-id']).toBe(first.snapshotId);
    expect(loaded.at(-1)!['metadata-location']).toBe(keyUri(storage, metadataKey(2)));

    // Another commit, and a hint left behind at 2, as after a writer that crashed before replacing it.
    const second = await writer.append([], { 'dronelake.commit': '2' });
    await storage.replace(await stagedText(storage, '2\n'), `${TABLE_METADATA_PREFIX}/version-hint.text`);
    const v3 = await catalog.loadTable({ namespace: ['drones'], name: 'telemetry' });
    expect(v3['current-snapshot-id']).toBe(second.snapshotId);
    expect(v3).toMatchObject({ snapshots: [{ 'snapshot-id': first.snapshotId }, { 'snapshot-id': second.snapshotId, 'parent-snapshot-id': first.snapshotId }] });
    expect(loaded.at(-1)!['metadata-location']).toBe(keyUri(storage, metadataKey(3)));
    expect(loaded.map((l) => l['metadata-location'])).toHaveLength(2);
  });

  it('answers in the spec\'s error model: an unknown namespace, a write, a damaged metadata file', async () => {
    const get = async (p: string, init?: RequestInit) => {
      const res = await fetch(`${server.url}${p}`, init);
      return { status: res.status, body: (await res.json()) as unknown };
    };
    expect(await get('/iceberg/v1/namespaces/robots/tables')).toEqual({ status: 404, body: { error: { code: 404, type: 'NoSuchNamespaceException', message: 'namespace does not exist: robots' } } });
    expect(await get('/iceberg/v1/namespaces/drones/tables/flights')).toEqual({ status: 404, body: { error: { code: 404, type: 'NoSuchTableException', message: 'table does not exist: drones.flights' } } });
    expect(await get('/iceberg/v1/namespaces/drones/tables', { method: 'POST', body: '{}' })).toMatchObject({ status: 405, body: { error: { code: 405, type: 'UnsupportedOperationException' } } });
    expect(await get('/iceberg/v1/namespaces/%E0%A4%A/tables')).toMatchObject({ status: 400, body: { error: { code: 400, type: 'BadRequestException' } } });
    expect(await get('/iceberg/v2/config')).toMatchObject({ status: 404, body: { error: { code: 404, type: 'NoSuchResourceException' } } });
    expect(await get('/iceberg/v1/config?warehouse=anything')).toMatchObject({ status: 200, body: { defaults: {}, overrides: {} } });
    // A newer version that is not table metadata is the server's problem, said in one line.
    const current = JSON.parse((await storage.read(metadataKey(3)))!.toString()) as Record<string, unknown>;
    await publishText(storage, metadataKey(4), JSON.stringify({ ...current, 'format-version': 1 }));
    expect(await get('/iceberg/v1/namespaces/drones/tables/telemetry')).toEqual({
      status: 500,
      body: { error: { code: 500, type: 'ServiceFailureException', message: `${TABLE_METADATA_PREFIX}/v4.metadata.json: not valid Iceberg v2 table metadata: format-version: Invalid input: expected 2` } },
    });
  });
});

describe('catalog serve refuses', () => {
  it('a non-loopback address without tokens: exit 2, one line', async () => {
    const r = await cli(['catalog', 'serve', '--lake', '.', '--http', '0.0.0.0:0']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('dronelake: --http 0.0.0.0:0 is not a loopback address, and without --http-tokens anyone who reaches it could read the product; give --http-tokens FILE\n');
  });

  it('with tokens, a request without one (401) or with a wrong one (401); with one, a bad path is a 404 with a JSON error', async () => {
    const tmp = await tempDir('catalog-tokens');
    const lake = await testLake('local');
    const tokens = path.join(tmp.dir, 'tokens.json');
    const added = await cli(['agent', 'token', 'add', 'reader', '--drones', '*', '--http-tokens', tokens]);
    expect(added.code, added.stderr).toBe(0);
    const token = added.stdout.trim().split('\n').at(-1)!;
    // `catalog serve` reads lakes a sink has written to: those have a catalog folder.
    const storage = await lake.open('w');
    await publishText(storage, EXAMPLE_QUERY_KEY, 'SELECT 1;\n');
    await storage.close();
    const serve = runCli(['catalog', 'serve', ...lake.args, '--http', '127.0.0.1:0', '--http-tokens', tokens, '--json', '--log-level', 'silent']);
    try {
      const started = await waitFor('the URL served', () => {
        if (serve.child.exitCode !== null) throw new Error(`catalog serve exited ${serve.child.exitCode}: ${serve.stderr()}`);
        return serve.stdout().includes('\n') && serve.stdout();
      });
      const { url } = JSON.parse(started) as { url: string };
      const status = async (p: string, auth?: string) => {
        const res = await fetch(`${url}${p}`, auth ? { headers: { Authorization: `Bearer ${auth}` } } : {});
        return { status: res.status, body: res.headers.get('content-type')?.startsWith('application/json') ? ((await res.json()) as unknown) : await res.text() };
      };
      expect(await status('/catalog/contract')).toEqual({ status: 401, body: { error: 'this catalog needs a token: send Authorization: Bearer TOKEN' } });
      expect(await status('/iceberg/v1/namespaces')).toEqual({ status: 401, body: { error: { code: 401, type: 'NotAuthorizedException', message: 'this catalog needs a token: send Authorization: Bearer TOKEN' } } });
      expect(await status('/catalog/page.json', 'reader.wrong')).toEqual({ status: 401, body: { error: 'the token is not one this catalog knows' } });
      expect(await status('/iceberg/v1/namespaces', token)).toEqual({ status: 200, body: { namespaces: [['drones']] } });
      const missing = await status('/no/such/path', token);
      expect(missing.status).toBe(404);
      expect(missing.body).toMatchObject({ error: expect.stringMatching(/^no route GET \/no\/such\/path; try GET \/, /) });
      // The page's shell and script hold no data: a person opens /#token=... and the script sends the token.
      expect((await status('/')).status).toBe(200);
    } finally {
      serve.child.kill('SIGTERM');
      expect(await serve.exited).toBe(0);
      await lake.remove();
      await tmp.remove();
    }
  });
});

/** A staged local file holding `text`, for a replace. */
async function stagedText(storage: LakeStorage, text: string): Promise<string> {
  const local = path.join(storage.stagingDir, `hint-${Date.now()}`);
  await writeFile(local, text);
  return local;
}
