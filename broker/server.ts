import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { Aedes, type AedesOptions, type Client } from 'aedes';
import type { Logger } from 'pino';
import { configOf } from '../deploy/runtime/options';
import { aclHooks, mayReceive, type AclAction } from './acl';
import { Authenticator, Refusal } from './auth';
import { openBackends } from './backends';
import { healthRoute, metricsRoute, serveHttp, type HttpServer } from '../deploy/runtime/http';
import { openListeners, readTlsOptions, type Listeners } from './listeners';
import { isOutputPortTopic } from '../proto/topics';
import { createPortDelivery } from './consumers';
import { brokerMetrics } from './metrics';
import { brokerOptions, checkBrokerOptions, type BrokerOptions } from './options';
import { limitPacketSize } from './packet-size';
import { readRegistry, watchRegistry } from './registry';
import { emptyBrokerStats, type BrokerStats } from './stats';

export type { BrokerStats } from './stats';

export type BrokerConfig = Omit<BrokerOptions, 'config' | 'logLevel'>;

/** What in-process callers (tests, bench, `dronelake up`) get: the command's limits, with sessions in memory. */
export const brokerDefaults: BrokerConfig = configOf(brokerOptions, { persistence: 'memory' });

/** How often the registry file is looked at for changes. */
const REGISTRY_POLL_MS = 1000;

export interface Broker {
  readonly host: string;
  /** The plain TCP port; the TLS port with --tls-only. */
  readonly port: number;
  /** mqtt:// URL clients connect to (mqtts:// with --tls-only). */
  readonly url: string;
  /** mqtts:// URL of the TLS listener, if there is one. */
  readonly tlsUrl: string | undefined;
  /** http:// URL of /health and /metrics, with --http. */
  readonly httpUrl: string | undefined;
  stats(): BrokerStats;
  close(): Promise<void>;
}

const urlOf = (scheme: string, a: AddressInfo) => `${scheme}://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
const remoteOf = (client: Client) => (client.conn as Socket).remoteAddress;

export async function startBroker(given: Partial<BrokerConfig>, log: Logger): Promise<Broker> {
  const config: BrokerConfig = { ...brokerDefaults, ...given };
  checkBrokerOptions(config);
  const registry = config.registry ? await readRegistry(config.registry) : null;
  const tls = config.tlsPort !== undefined ? { port: config.tlsPort, options: readTlsOptions(config, config.connectTimeout * 1000) } : undefined;
  if (!registry) {
    // Anonymous on loopback is the safe default (checkBrokerOptions refuses it elsewhere without
    // --allow-anonymous), so it is news, not a warning; beyond loopback it is a risk taken on purpose.
    if (config.allowAnonymous) log.warn({ host: config.host }, 'accepting anonymous clients beyond loopback (--allow-anonymous)');
    else log.info({ host: config.host }, 'no --registry: accepting anonymous clients, on loopback only');
  }

  const stats = emptyBrokerStats();
  stats.identities = registry?.size ?? 0;
  const auth = new Authenticator(registry, config, (client, reason, identity, detail) => {
    stats.authFailures[reason]++;
    log.warn({ clientId: client.id, identity, reason, detail, remote: remoteOf(client) }, 'connection refused');
  });
  const onDenial = (client: Client | null, action: AclAction, topic: string) => {
    stats.aclDenials[action]++;
    log.warn({ clientId: client?.id, identity: client && auth.identityOf(client)?.id, action, topic }, 'denied by the access rules');
  };
  const consumers = createPortDelivery(config.consumerMaxBehind * 1000, (client, consumer, unsentBytes) =>
    log.warn({ clientId: client.id, consumer, unsentBytes, maxBehindSeconds: config.consumerMaxBehind }, 'consumer behind on the live port for too long; connection closed'),
  );
  const countOut = (packet: { payload: Buffer | string }) => {
    stats.messagesOut++;
    stats.bytesOut += packet.payload.length;
  };
  const authorizeForward: AedesOptions['authorizeForward'] = (client, packet) => {
    const who = auth.identityOf(client);
    if (!auth.anonymous) {
      if (!who || !mayReceive(who, packet.topic)) {
        onDenial(client, 'deliver', packet.topic);
        return null;
      }
      // A gateway hears a small ack now and then. If bytes sent to it earlier still wait in
      // its socket when the next comes, it is not reading: close it now, rather than pile
      // up its deliveries in memory until --drain-timeout. (The sink may pause; it holds
      // back that way while it commits.)
      if (who.role === 'gateway' && client.conn.writableLength > 0) {
        stats.slowConsumers++;
        client.conn.destroy(new Error('slow consumer: not reading what it was sent'));
        return null;
      }
    }
    if (isOutputPortTopic(packet.topic)) {
      // Invariant 6: written by consumers.ts, never by Aedes, which would make the sink wait
      // for a consumer's socket; a consumer that is behind misses it, counted under its identity.
      if (consumers.deliver(client, who?.id ?? 'anonymous', packet)) countOut(packet);
      return null;
    }
    countOut(packet);
    return packet;
  };

  const backends = await openBackends({ persistence: config.persistence, dataDir: config.dataDir, cluster: config.cluster }, log);
  let aedes: Aedes | undefined;
  let listeners: Listeners | undefined;
  let http: HttpServer | undefined;
  let stopWatching: (() => void) | undefined;
  let closing = false;
  const shutdown = async () => {
    closing = true;
    stopWatching?.();
    // Refuse new connections first, then close the clients: they reconnect elsewhere, or
    // here after a restart, and their sessions stay in the persistence.
    const stopped = listeners?.close();
    await new Promise<void>((resolve) => (aedes ? aedes.close(() => resolve()) : resolve()));
    listeners?.destroyAll();
    await stopped;
    await backends.close();
    await http?.close();
  };

  try {
    aedes = await Aedes.createBroker({
      ...(backends.persistence ? { persistence: backends.persistence } : {}),
      ...(backends.mq ? { mq: backends.mq } : {}),
      // Aedes's default of 100 messages in flight is shared by all: once a subscriber that
      // stopped reading holds 100 deliveries, every other message waits behind them (Aedes
      // keeps reading publishers all the same), and if that subscriber then leaves,
      // mqemitter releases the queue recursively and overflows the stack, killing the
      // process. Without the cap, only the stuck subscriber's own deliveries wait, until
      // --drain-timeout closes it.
      concurrency: 0,
      connectTimeout: config.connectTimeout * 1000,
      // No keepaliveLimit: Aedes would refuse keepalive 0, which MQTT 3.1.1 allows, with
      // CONNACK 6, which it does not define. auth.preConnect checks the limit instead.
      maxClientsIdLength: config.maxClientIdLength,
      maxTopicLevels: config.maxTopicLevels,
      drainTimeout: config.drainTimeout * 1000,
      preConnect: auth.preConnect,
      authenticate: auth.authenticate,
      authorizeForward,
      ...(auth.anonymous ? {} : aclHooks((client) => auth.identityOf(client), onDenial)),
    });
    const broker = aedes;
    broker.on('client', (client) => {
      stats.connects++;
      log.debug({ clientId: client.id, identity: auth.identityOf(client) }, 'client connected');
    });
    broker.on('clientDisconnect', (client) => log.debug({ clientId: client.id }, 'client disconnected'));
    // Once a connection fails, Aedes reports each delivery still queued for it as one more
    // error: a sink stopped under load made 2,009 identical lines in a millisecond. The
    // connection's first error is its cause; it is logged and counted, the rest are not.
    const failed = new WeakSet<Client>();
    broker.on('clientError', (client, err) => {
      // A refused CONNECT was counted and logged when it was refused.
      if (err instanceof Refusal || failed.has(client)) return;
      failed.add(client);
      stats.clientErrors++;
      log.warn({ clientId: client.id, identity: auth.identityOf(client)?.id, err: err.message }, 'client error; connection closed');
    });
    broker.on('connectionError', (client, err) => {
      stats.connectionErrors++;
      log.info({ remote: remoteOf(client), err: err.message }, 'connection error before CONNECT; connection closed');
    });
    broker.on('publish', (packet, client) => {
      if (!client) return;
      stats.messagesIn++;
      stats.bytesIn += packet.payload.length;
    });

    if (config.registry) {
      stopWatching = watchRegistry(
        config.registry,
        REGISTRY_POLL_MS,
        (next) => {
          const revoked = auth.replaceRegistry(next);
          stats.identities = next.size;
          log.info({ identities: next.size, closing: revoked.length }, 'registry reloaded');
          for (const client of revoked) {
            log.warn({ clientId: client.id }, 'its identity left the registry or changed role; connection closed');
            client.close();
          }
        },
        (err) => {
          stats.registryReloadFailures++;
          log.error({ err: err.message }, 'registry reload failed; the previous registry stays in force');
        },
      );
    }

    const onConnection = (socket: Duplex) => {
      limitPacketSize(socket, config.maxPacketBytes, () => stats.oversizedPackets++);
      broker.handle(socket);
    };
    listeners = await openListeners({ host: config.host, port: config.tlsOnly ? undefined : config.port, tls, tcpKeepalive: config.tcpKeepalive }, onConnection, (err) => {
      stats.connectionErrors++;
      log.info({ err: err.message }, 'TLS handshake failed');
    });
    const current = (): BrokerStats => ({
      ...stats,
      authFailures: { ...stats.authFailures },
      aclDenials: { ...stats.aclDenials },
      consumerDrops: consumers.drops(),
      clients: broker.connectedClients,
      storeLinksDown: backends.storeLinksDown().length,
    });
    const up = listeners;
    // Named with their count, so a broker started on the wrong store shows it at once.
    const sessionStore = { store: backends.store, sessionsRestored: await backends.sessions() };
    if (config.http) {
      http = await serveHttp(config.http, [
        // A Redis outage is named but leaves the broker healthy: it hits every broker of the
        // cluster alike, and probes that failed on it would only restart them or move their
        // clients to a broker no better off.
        healthRoute(() => ({
          healthy: !closing && up.listening(),
          body: { listening: !closing && up.listening(), clients: broker.connectedClients, identities: stats.identities, ...sessionStore, storeLinksDown: backends.storeLinksDown() },
        })),
        metricsRoute(brokerMetrics(current)),
      ]);
    }

    const primary = (listeners.plain ?? listeners.tls)!;
    const url = urlOf(listeners.plain ? 'mqtt' : 'mqtts', primary);
    const tlsUrl = listeners.tls && urlOf('mqtts', listeners.tls);
    log.info({ url, tlsUrl, http: http?.url, registry: config.registry, identities: stats.identities, ...sessionStore }, 'broker listening');
    return {
      host: primary.address,
      port: primary.port,
      url,
      tlsUrl,
      httpUrl: http?.url,
      stats: current,
      close: async () => {
        await shutdown();
        log.info('broker stopped');
      },
    };
  } catch (err) {
    await shutdown();
    throw err;
  }
}
