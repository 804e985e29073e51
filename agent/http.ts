import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface AgentHttp {
  readonly url: string;
  close(): Promise<void>;
}

export interface AgentHttpRoutes {
  ingest: { handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> };
  metrics: Registry;
  health(): { healthy: boolean; body: Record<string, unknown> };
}

function send(res: http.ServerResponse, status: number, body: unknown, contentType = 'application/json'): void {
  const text = typeof body === 'string' ? body : `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/** The agent's local HTTP endpoint: the ingest API, the health check and Prometheus metrics. */
export async function serveAgentHttp(hostPort: string, routes: AgentHttpRoutes): Promise<AgentHttp> {
  const split = hostPort.lastIndexOf(':');
  const host = hostPort.slice(0, split).replace(/^\[|\]$/g, '');
  const port = Number(hostPort.slice(split + 1));
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/v1/points') {
      routes.ingest.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) send(res, 500, { error: (err as Error).message });
      });
    } else if (path === '/health' && req.method === 'GET') {
      const { healthy, body } = routes.health();
      send(res, healthy ? 200 : 503, body);
    } else if (path === '/metrics' && req.method === 'GET') {
      routes.metrics.metrics().then(
        (text) => send(res, 200, text, routes.metrics.contentType),
        (err: unknown) => send(res, 500, { error: (err as Error).message }),
      );
    } else {
      send(res, 404, { error: `no route ${req.method} ${path}; try POST /v1/points, GET /health, GET /metrics` });
    }
  });
  server.listen(port, host);
  await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => Promise.reject(err))]);
  const address = server.address() as AddressInfo;
  return {
    url: `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
