import type http from 'node:http';
import { send, type Route } from '../../deploy/runtime/http';
import type { CurrentTable } from './iceberg-table';

// The Iceberg REST catalog, read-only, per the Iceberg REST OpenAPI spec
// (open-api/rest-catalog-open-api.yaml): one namespace, `drones`, with one table,
// `telemetry`. Any Iceberg engine attaches the product by URL: {base}/iceberg.

export const ICEBERG_BASE = '/iceberg';
export const NAMESPACE = 'drones';
export const TABLE = 'telemetry';

/** What the catalog supports, as CatalogConfig.endpoints names it: clients call nothing else. */
const ENDPOINTS = [
  'GET /v1/{prefix}/namespaces',
  'GET /v1/{prefix}/namespaces/{namespace}',
  'HEAD /v1/{prefix}/namespaces/{namespace}',
  'GET /v1/{prefix}/namespaces/{namespace}/tables',
  'GET /v1/{prefix}/namespaces/{namespace}/tables/{table}',
  'HEAD /v1/{prefix}/namespaces/{namespace}/tables/{table}',
];

/** The spec's IcebergErrorResponse: `{"error": ErrorModel}`. */
export function sendIcebergError(res: http.ServerResponse, code: number, type: string, message: string): void {
  send(res, code, { error: { message, type, code } });
}

export interface IcebergSource {
  /** The table's current metadata, or null when the lake holds no Iceberg table yet. */
  table(): Promise<CurrentTable | null>;
  /** The namespace's properties: what a person learns of it in an engine's catalog browser. */
  namespaceProperties: Record<string, string>;
}

/** The routes under /iceberg: one handler, since the spec's paths carry the namespace and table. */
export function icebergRoutes(source: IcebergSource): Route[] {
  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const parts = url.pathname.slice(ICEBERG_BASE.length).split('/').filter((p) => p !== '');
    const method = req.method ?? 'GET';
    if (method !== 'GET' && method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      sendIcebergError(res, 405, 'UnsupportedOperationException', `this catalog is read-only: ${method} is not supported; it answers GET and HEAD`);
      return;
    }
    let decoded: string[];
    try {
      decoded = parts.map((p) => decodeURIComponent(p));
    } catch {
      sendIcebergError(res, 400, 'BadRequestException', `malformed path ${url.pathname}: a part is not valid percent-encoding`);
      return;
    }
    const [version, resource, namespace, tables, table, ...rest] = decoded;
    const notFound = () => sendIcebergError(res, 404, 'NoSuchResourceException', `no such resource ${url.pathname}; the catalog serves ${ICEBERG_BASE}/v1/config and ${ICEBERG_BASE}/v1/namespaces/...`);
    if (version !== 'v1' || resource === undefined) return notFound();
    if (resource === 'config' && namespace === undefined) {
      // No prefix and no warehouse: the catalog has one product, whatever the client asks.
      send(res, 200, { defaults: {}, overrides: {}, endpoints: ENDPOINTS });
      return;
    }
    if (resource !== 'namespaces') return notFound();
    if (namespace === undefined) {
      // One level of namespaces: `drones` has no children.
      send(res, 200, { namespaces: url.searchParams.has('parent') ? [] : [[NAMESPACE]] });
      return;
    }
    // A multi-level namespace comes as its parts joined by %1F: none exists here.
    if (namespace !== NAMESPACE) {
      sendIcebergError(res, 404, 'NoSuchNamespaceException', `namespace does not exist: ${namespace.replaceAll('\x1f', '.')}`);
      return;
    }
    if (tables === undefined) {
      if (method === 'HEAD') res.writeHead(204).end();
      else send(res, 200, { namespace: [NAMESPACE], properties: source.namespaceProperties });
      return;
    }
    if (tables !== 'tables' || rest.length > 0) return notFound();
    const current = await source.table();
    if (table === undefined) {
      send(res, 200, { identifiers: current === null ? [] : [{ namespace: [NAMESPACE], name: TABLE }] });
      return;
    }
    if (table !== TABLE || current === null) {
      const why = current === null && table === TABLE ? ': the lake is not an Iceberg table yet' : '';
      sendIcebergError(res, 404, 'NoSuchTableException', `table does not exist: ${NAMESPACE}.${table}${why}`);
      return;
    }
    if (method === 'HEAD') {
      res.writeHead(204).end();
      return;
    }
    // Clients compare metadata locations to learn whether the table changed.
    send(res, 200, { 'metadata-location': current.metadataLocation, metadata: current.metadata, config: {} });
  }
  return [
    {
      method: 'ANY',
      path: `${ICEBERG_BASE}/`,
      prefix: true,
      handle(req, res) {
        return handle(req, res).catch((err: Error) => sendIcebergError(res, 500, 'ServiceFailureException', err.message.split('\n')[0]!));
      },
    },
  ];
}
