import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface BrokerHttp {
  readonly url: string;
  close(): Promise<void>;
}

function send(res: http.ServerResponse, status: number, body: string, contentType: string): void {
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

/** GET /health (200 while the broker listens, else 503) and GET /metrics (Prometheus text). */
export async function serveBrokerHttp(hostPort: string, metrics: Registry, health: () => { healthy: boolean; body: Record<string, unknown> }): Promise<BrokerHttp> {
  const split = hostPort.lastIndexOf(':');
  const host = hostPort.slice(0, split).replace(/^\[|\]$/g, '');
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/health') {
      const { healthy, body } = health();
      send(res, healthy ? 200 : 503, `${JSON.stringify(body)}\n`, 'application/json');
    } else if (req.method === 'GET' && path === '/metrics') {
      metrics.metrics().then(
        (text) => send(res, 200, text, metrics.contentType),
        (err: unknown) => send(res, 500, `${JSON.stringify({ error: (err as Error).message })}\n`, 'application/json'),
      );
    } else {
      send(res, 404, `${JSON.stringify({ error: `no route ${req.method} ${path}; try GET /health, GET /metrics` })}\n`, 'application/json');
    }
  });
  server.listen(Number(hostPort.slice(split + 1)), host);
  await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => Promise.reject(err))]);
  const address = server.address() as AddressInfo;
  return {
    url: `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
