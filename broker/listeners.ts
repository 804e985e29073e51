import { once } from 'node:events';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { readPem } from '../deploy/runtime/files';
import { UsageError } from '../deploy/runtime/options';

/** Bytes queued on a client's socket before a write reports it full (see consumers.ts). */
export const SOCKET_HIGH_WATER_MARK = 1024 * 1024;

export interface ListenerConfig {
  host: string;
  /** Plain TCP; undefined for none. */
  port: number | undefined;
  /** options from readTlsOptions; undefined for no TLS listener. */
  tls: { port: number; options: tls.TlsOptions } | undefined;
  /** Seconds a connection may stay silent before TCP keepalive probes it. */
  tcpKeepalive: number;
}

export interface Listeners {
  /** Where each listener listens; undefined for one not opened. */
  readonly plain: net.AddressInfo | undefined;
  readonly tls: net.AddressInfo | undefined;
  listening(): boolean;
  /** Stops accepting; resolves once every connection is gone (see destroyAll). */
  close(): Promise<void>;
  destroyAll(): void;
}

export interface TlsFiles {
  tlsCert?: string | undefined;
  tlsKey?: string | undefined;
  tlsCa?: string | undefined;
}

/** The TLS listener's settings from its PEM files, read and checked before anything is opened. */
export function readTlsOptions(files: TlsFiles, handshakeTimeoutMs: number): tls.TlsOptions {
  const options: tls.TlsOptions = {
    cert: readPem('--tls-cert', files.tlsCert!),
    key: readPem('--tls-key', files.tlsKey!),
    // A client certificate is asked for but not required: a client without one may still
    // give a password. Whether one was given, and trusted, is judged at CONNECT.
    ...(files.tlsCa ? { ca: readPem('--tls-ca', files.tlsCa), requestCert: true, rejectUnauthorized: false } : {}),
    // The TLS handshake gets the time the CONNECT gets: a silent client holds no socket longer.
    handshakeTimeout: handshakeTimeoutMs,
  };
  try {
    tls.createSecureContext(options);
  } catch (err) {
    throw new UsageError(`--tls-cert, --tls-key, --tls-ca: ${(err as Error).message}`);
  }
  return options;
}

async function listen(server: net.Server, port: number, host: string): Promise<net.AddressInfo> {
  server.listen(port, host);
  await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => Promise.reject(err))]);
  return server.address() as net.AddressInfo;
}

/** Opens the plain and TLS listeners; every connection, TLS once its handshake is done, goes to `onConnection`. */
export async function openListeners(config: ListenerConfig, onConnection: (socket: Duplex) => void, onTlsError: (err: Error) => void): Promise<Listeners> {
  const servers: net.Server[] = [];
  // Aedes closes the clients it knows; a socket still in its CONNECT (or TLS) handshake is
  // not one of them, and server.close() would wait for it for ever.
  const sockets = new Set<net.Socket>();
  const track = (server: net.Server) => {
    servers.push(server);
    server.on('connection', (socket: net.Socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    });
    return server;
  };
  let closing = false;
  const close = () => {
    closing = true;
    return Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())))).then(() => undefined);
  };
  // TCP keepalive on every connection, TLS ones included: a client with MQTT keepalive 0 is
  // never timed out by Aedes, and a link that died without a FIN (power loss, a dropped
  // cellular bearer, a NAT that forgot it) would hold its session for ever. The kernel probes
  // a silent connection after tcpKeepalive seconds; Node 20 (libuv) then sends 10 probes a
  // second apart, and the tenth unanswered closes the socket with ETIMEDOUT (invariant 6).
  //
  // Aedes makes a publisher wait while a delivery waits for its receiver's socket to drain,
  // which happens once more than the socket's high-water mark is queued. consumers.ts drops a
  // live-port delivery that would reach the mark, so no publisher (the sink) waits on a
  // consumer; a larger mark than Node's 16 KiB lets a consumer that reads fall that far
  // behind, a commit's burst, without missing anything.
  const keepAlive: net.ServerOpts = { keepAlive: true, keepAliveInitialDelay: config.tcpKeepalive * 1000, highWaterMark: SOCKET_HIGH_WATER_MARK };
  try {
    const plain = config.port !== undefined ? await listen(track(net.createServer(keepAlive, onConnection)), config.port, config.host) : undefined;
    let secure: net.AddressInfo | undefined;
    if (config.tls) {
      const server = track(tls.createServer({ ...keepAlive, ...config.tls.options }, onConnection));
      // With a listener here, Node leaves the failed socket (a handshake timeout included) open.
      server.on('tlsClientError', (err, socket) => {
        socket.destroy();
        onTlsError(err);
      });
      secure = await listen(server, config.tls.port, config.host);
    }
    return {
      plain,
      tls: secure,
      listening: () => !closing && servers.every((s) => s.listening),
      close,
      destroyAll: () => {
        for (const socket of sockets) socket.destroy();
      },
    };
  } catch (err) {
    await close();
    throw err;
  }
}
