import type http from 'node:http';
import { DuckDBInstance } from '@duckdb/node-api';
import type { Logger } from 'pino';
import { openIngestAuth, type IngestAuth } from '../../agent/ingest-auth';
import { send, serveHttp, type HttpServer, type Route } from '../../deploy/runtime/http';
import { openLake, type StorageConfig } from '../open-storage';
import type { LakeStorage } from '../storage';
import { catalogDocuments, DOCUMENT_PATHS, documentRoutes } from './documents';
import { ICEBERG_BASE, icebergRoutes, sendIcebergError } from './iceberg-rest';
import { newPageCache, pageData, queryOn, type PageData } from './page-data';
import { PAGE_DATA_PATH, pageRoutes, readPageScript } from './page';

// The product's home over HTTP: the page for people, the Iceberg REST catalog for
// engines and the documents for programs. `dronelake catalog serve` serves it from any
// lake; the sink mounts the same routes on its --http.

/** The documents offered, as the page lists them. */
const DOCUMENTS: PageData['documents'] = [
  { path: DOCUMENT_PATHS.contract, description: 'the ODCS data contract (JSON)' },
  { path: DOCUMENT_PATHS.product, description: 'the ODPS product descriptor (JSON)' },
  { path: DOCUMENT_PATHS.sloStatus, description: "the objectives' status at the last quality window" },
  { path: DOCUMENT_PATHS.quality, description: 'the quality windows of the last 7 days (?days=1..7)' },
  { path: DOCUMENT_PATHS.lineage, description: 'the OpenLineage run events of the last 7 days (?days=1..7)' },
  { path: `${ICEBERG_BASE}/v1/config`, description: 'the Iceberg REST catalog (namespace drones, table telemetry)' },
];

export interface CatalogRouteSettings {
  /** The live port's SSE handler, when the server has one (the sink with --live). */
  live?: ((req: http.IncomingMessage, res: http.ServerResponse) => void) | undefined;
  /** The tokens a request must carry; undefined lets every request in (loopback only). */
  auth?: IngestAuth | undefined;
}

export interface CatalogRoutes {
  routes: Route[];
  close(): void;
}

/** The same words whatever was wrong with the token: the answer does not tell which ids exist. */
const REFUSED = { missing_token: 'this catalog needs a token: send Authorization: Bearer TOKEN', unknown_token: 'the token is not one this catalog knows', bad_token: 'the token is not one this catalog knows' } as const;

/** Every route but the page's shell and script (no data in them) answers 401 without a token of the file. */
function guarded(route: Route, auth: IngestAuth): Route {
  return {
    ...route,
    async handle(req, res) {
      const grant = await auth.check(req);
      if (typeof grant === 'string') {
        res.setHeader('WWW-Authenticate', 'Bearer realm="dronelake catalog"');
        if (route.path.startsWith(ICEBERG_BASE)) sendIcebergError(res, 401, 'NotAuthorizedException', REFUSED[grant]);
        else send(res, 401, { error: REFUSED[grant] });
        return;
      }
      // Read-only: the catalog has no route that changes anything, whoever the token is.
      await route.handle(req, res);
    },
  };
}

export async function catalogRoutes(storage: LakeStorage, log: Logger, settings: CatalogRouteSettings = {}): Promise<CatalogRoutes> {
  const onBadRecord = (key: string, err: Error) => log.warn({ key, err: err.message }, 'skipped an unreadable catalog file');
  const docs = catalogDocuments(storage, onBadRecord);
  const script = readPageScript();
  // The page's tracks and sample rows are read with DuckDB, one query at a time.
  const db = await DuckDBInstance.create(':memory:', { threads: '1' });
  const conn = await db.connect();
  await conn.run("SET TimeZone = 'UTC'");
  const query = queryOn(conn);
  const cache = newPageCache();
  const pageSettings = { live: settings.live !== undefined, tokens: settings.auth !== undefined, documents: DOCUMENTS };
  // Views that ask while the page's data is being made share it, rather than each read the lake.
  let making: Promise<PageData> | null = null;
  const currentPage = (): Promise<PageData> => {
    making ??= pageData(docs, query, pageSettings, cache).finally(() => {
      making = null;
    });
    return making;
  };
  const data: Route[] = [
    {
      method: 'GET',
      path: PAGE_DATA_PATH,
      async handle(_req, res) {
        if ((await docs.contract()) === null) send(res, 404, { error: `${storage.root} has no catalog yet: no sink has written to this lake` });
        else send(res, 200, await currentPage());
      },
    },
    ...documentRoutes(docs),
    ...icebergRoutes({ table: docs.table, namespaceProperties: { description: "the drones data product: the fleet's telemetry", product: '/catalog/product' } }),
    ...(settings.live ? [{ method: 'GET' as const, path: '/live', handle: settings.live }] : []),
  ];
  const auth = settings.auth;
  // Read the history, the commit checkpoints and the table once now, so that the first person to
  // open the page does not wait for a week of windows to be read. A lake no sink has
  // written to yet is not an error here: the page says so when asked.
  void currentPage().catch(() => undefined);
  return {
    routes: [...pageRoutes(script, auth !== undefined), ...(auth ? data.map((r) => guarded(r, auth)) : data)],
    close() {
      conn.closeSync();
      db.closeSync();
    },
  };
}

export interface CatalogServer extends HttpServer {
  close(): Promise<void>;
}

export interface CatalogServeConfig extends StorageConfig {
  http: string;
  httpTokens?: string | undefined;
}

/** `dronelake catalog serve`: the routes over a lake this process only reads. */
export async function startCatalogServer(config: CatalogServeConfig, log: Logger): Promise<CatalogServer> {
  const storage = await openLake(config);
  const auth = config.httpTokens === undefined ? undefined : await openIngestAuth(config.httpTokens, 1000, (err) => log.warn({ err: err.message }, 'the token file could not be read again; the tokens before stay in force'));
  let mounted: CatalogRoutes | undefined;
  let server: HttpServer | undefined;
  try {
    mounted = await catalogRoutes(storage, log, { auth });
    server = await serveHttp(config.http, mounted.routes);
  } catch (err) {
    mounted?.close();
    auth?.close();
    await storage.close();
    throw err;
  }
  const http = server;
  const routes = mounted;
  log.info({ url: http.url, lake: storage.root, tokens: auth !== undefined }, 'catalog listening');
  return {
    url: http.url,
    async close() {
      await http.close();
      routes.close();
      auth?.close();
      await storage.close();
    },
  };
}
