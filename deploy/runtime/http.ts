import { once } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import type { Registry } from 'prom-client';
import { readPem } from './files';
import { hostOf, isLoopback, optionSchemas, UsageError, type OptionSpec } from './options';

export interface HttpServer {
  readonly url: string;
  close(): Promise<void>;
}

export interface Route {
  /** ANY: the handler answers every method itself (say, 405 with an Allow header). */
  method: 'GET' | 'POST' | 'ANY';
  /** The exact path, or with `prefix` every path that starts with it. */
  path: string;
  prefix?: boolean;
  handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> | void;
}

export function send(res: http.ServerResponse, status: number, body: unknown, contentType = 'application/json'): void {
  const text = typeof body === 'string' ? body : `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/** GET /health from a probe: 200 when healthy, else 503, with the probe's body. */
export const healthRoute = (probe: () => { healthy: boolean; body: Record<string, unknown> }): Route => ({
  method: 'GET',
  path: '/health',
  handle(_req, res) {
    const { healthy, body } = probe();
    send(res, healthy ? 200 : 503, body);
  },
});

/** GET /metrics: a prom-client registry in Prometheus text. */
export const metricsRoute = (registry: Registry): Route => ({
  method: 'GET',
  path: '/metrics',
  async handle(_req, res) {
    send(res, 200, await registry.metrics(), registry.contentType);
  },
});

/** Read-only endpoints answer anyone who reaches them: off loopback only when the operator says so. */
export const httpPublicOption = {
  type: 'boolean',
  describe: 'allow --http on an address other than loopback: anyone who reaches it can read what it serves',
  schema: optionSchemas.flag(),
} satisfies OptionSpec;

/**
 * Secure by default, as the broker's --host: an HTTP endpoint that tells anyone who
 * reaches it `what` (its /metrics name gateways, drones and volumes) stays on loopback
 * unless --http-public says otherwise.
 */
export function checkHttpBind(hostPort: string | undefined, isPublic: boolean, what: string): void {
  if (hostPort !== undefined && !isPublic && !isLoopback(hostOf(hostPort))) {
    throw new UsageError(`--http ${hostPort} is not a loopback address, and anyone who reaches it could read ${what}; give --http-public to accept that`);
  }
}

/** Certificate and key of an HTTPS endpoint, read and checked at start-up. */
export function readHttpTls(certFile: string, keyFile: string, certFlag: string, keyFlag: string): tls.SecureContextOptions {
  const options = { cert: readPem(certFlag, certFile), key: readPem(keyFlag, keyFile) };
  try {
    tls.createSecureContext(options);
  } catch (err) {
    throw new UsageError(`${certFlag}, ${keyFlag}: ${(err as Error).message}`);
  }
  return options;
}

/**
 * A small HTTP server on HOST:PORT for a component's routes; anything else is a 404 that
 * lists them. With `tlsOptions` (readHttpTls) it serves HTTPS.
 */
export async function serveHttp(hostPort: string, routes: Route[], tlsOptions?: tls.SecureContextOptions): Promise<HttpServer> {
  const split = hostPort.lastIndexOf(':');
  const host = hostOf(hostPort);
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const route = routes.find((r) => (r.prefix ? path.startsWith(r.path) : r.path === path) && (r.method === 'ANY' || r.method === req.method));
    if (!route) {
      send(res, 404, { error: `no route ${req.method} ${path}; try ${routes.map((r) => `${r.method} ${r.path}`).join(', ')}` });
      return;
    }
    Promise.resolve()
      .then(() => route.handle(req, res))
      .catch((err: unknown) => {
        if (!res.headersSent) send(res, 500, { error: (err as Error).message });
      });
  };
  const server = tlsOptions ? https.createServer(tlsOptions, handler) : http.createServer(handler);
  server.listen(Number(hostPort.slice(split + 1)), host);
  await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => Promise.reject(err))]);
  const address = server.address() as AddressInfo;
  return {
    url: `${tlsOptions ? 'https' : 'http'}://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
