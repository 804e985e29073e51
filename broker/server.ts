import { once } from 'node:events';
import net from 'node:net';
import { Aedes } from 'aedes';
import type { Logger } from 'pino';

export interface BrokerConfig {
  host: string;
  port: number;
}

export interface BrokerStats {
  clients: number;
  connects: number;
  clientErrors: number;
}

export interface Broker {
  readonly host: string;
  readonly port: number;
  /** mqtt:// URL clients connect to. */
  readonly url: string;
  stats(): BrokerStats;
  close(): Promise<void>;
}

export async function startBroker(config: BrokerConfig, log: Logger): Promise<Broker> {
  const aedes = await Aedes.createBroker();
  const server = net.createServer(aedes.handle);
  // Aedes closes the clients it knows; a socket still in its CONNECT handshake is not one
  // of them, and server.close() would wait for it for ever.
  const sockets = new Set<net.Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  const stats: BrokerStats = { clients: 0, connects: 0, clientErrors: 0 };

  aedes.on('client', (client) => {
    stats.connects++;
    log.debug({ clientId: client.id }, 'client connected');
  });
  aedes.on('clientDisconnect', (client) => log.debug({ clientId: client.id }, 'client disconnected'));
  aedes.on('clientError', (client, err) => {
    stats.clientErrors++;
    log.warn({ clientId: client.id, err: err.message }, 'client error');
  });

  server.listen(config.port, config.host);
  await Promise.race([once(server, 'listening'), once(server, 'error').then(([err]) => Promise.reject(err))]);
  const address = server.address() as net.AddressInfo;
  const url = `mqtt://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  log.info({ url }, 'broker listening');

  return {
    host: address.address,
    port: address.port,
    url,
    stats: () => ({ ...stats, clients: aedes.connectedClients }),
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
      log.info('broker stopped');
    },
  };
}
