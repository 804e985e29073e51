import { EventEmitter } from 'node:events';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { AedesOptions } from 'aedes';
import type { Redis, RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { UsageError } from '../deploy/runtime/options';

export interface BackendConfig {
  /** 'level': sessions and queued messages on disk in `dataDir`; 'memory': lost on restart (tests). */
  persistence: 'level' | 'memory';
  /** Required with 'level' (checkBrokerOptions). */
  dataDir?: string | undefined;
  /** redis:// URL shared by every broker of a cluster; with it, persistence lives in Redis. */
  cluster?: string | undefined;
}

/** What Aedes keeps sessions in and routes messages through, and how to release it. */
export interface Backends {
  persistence?: AedesOptions['persistence'];
  mq?: AedesOptions['mq'];
  /** Where sessions live, for the start-up log and /health: a directory, a Redis URL (no password), or 'memory'. */
  store: string;
  /** The store's connections that are down now, by name: a cluster's Redis connections; none for a store on disk or in memory. */
  storeLinksDown(): string[];
  /** Sessions the store holds (clients with subscriptions); call once Aedes has set the persistence up. */
  sessions(): Promise<number>;
  /** Call after the broker closed. */
  close(): Promise<void>;
}

// Without a callback: CallBackPersistence (aedes-persistence 10 and 11) marks itself ready
// only when set up through its `broker` setter, which Aedes 1.2 no longer uses, and
// destroy(cb) waits for that readiness for ever; the callback-less form returns the promise.
const destroyed = async (p: { destroy(cb?: () => void): Promise<void> | void }): Promise<void> => {
  await p.destroy();
};

const countSessions = (p: Pick<AedesCallbackPersistence, 'countOffline'>): Promise<number> =>
  new Promise((resolve, reject) => p.countOffline((err, _subscriptions, clients) => (err ? reject(err) : resolve(clients))));

/**
 * Every Redis connection's options. Without CLIENT SETINFO at connect: ioredis 5.8.2 and
 * later send it before their ready check (INFO), and a SUBSCRIBE the message bus sends in
 * that gap (a client subscribing on a broker whose Redis connection is coming up) puts the
 * connection in subscriber mode, where the INFO fails ("Connection in subscriber mode";
 * ioredis issue 2037, fixed in 6, which mqemitter-redis does not take). Then the ready
 * check follows the connect within the same turn of the event loop.
 */
export const REDIS_OPTIONS = { disableClientInfo: true } as const satisfies RedisOptions;

/**
 * Logs a Redis connection's outages, not its attempts: ioredis reports an error per
 * reconnect attempt, up to one every 2 s for as long as Redis is away. One warning when it
 * is lost, one line when it is ready again.
 */
function watchRedis(conn: Redis, log: Logger, connection: string): Redis {
  let downSince: number | null = null;
  conn.on('error', (err: Error) => {
    if (downSince !== null) return;
    downSince = Date.now();
    log.warn({ connection, err: err.message }, 'the Redis connection failed; reconnecting');
  });
  conn.on('ready', () => {
    if (downSince === null) return;
    log.info({ connection, downSeconds: Math.round((Date.now() - downSince) / 1000) }, 'the Redis connection is back');
    downSince = null;
  });
  return conn;
}

/**
 * Opens the broker's session store and message bus. Alone, a broker routes in memory and
 * keeps sessions (the sink's subscription and the QoS 1 messages queued for it while it is
 * away) in LevelDB, so they outlive a broker restart. In a cluster, brokers route through
 * Redis pub/sub and keep sessions in Redis, so a gateway on one broker reaches a sink on
 * another, and a client that moves between brokers finds its session. The modules load
 * only when used: a broker in memory never loads LevelDB or a Redis client.
 */
export async function openBackends(config: BackendConfig, log: Logger): Promise<Backends> {
  if (config.cluster) {
    const [{ default: redisEmitter }, { default: redisPersistence }, { Redis }] = await Promise.all([
      import('mqemitter-redis'),
      import('aedes-persistence-redis'),
      import('ioredis'),
    ]);
    const url = config.cluster;
    const links = new Map<string, Redis>();
    const connect = (name: string) => {
      const conn = watchRedis(new Redis(url, REDIS_OPTIONS), log, name);
      links.set(name, conn);
      return conn;
    };
    const mq = redisEmitter({ subConn: connect('bus-subscribe'), pubConn: connect('bus-publish') });
    // mqemitter-redis passes its connections' errors on to an emitter of its own, which
    // throws them when nothing listens: a Redis restart would end the broker. watchRedis
    // logs them.
    const { state } = mq as unknown as { state?: unknown };
    if (!(state instanceof EventEmitter)) throw new Error('mqemitter-redis has no state emitter to take its errors');
    state.on('error', () => {});
    const persistence = redisPersistence({ conn: connect('sessions') });
    log.info({ cluster: redactUrl(config.cluster) }, 'broker clustered over Redis');
    return {
      mq: mq as unknown as AedesOptions['mq'],
      persistence,
      store: redactUrl(config.cluster),
      // ioredis's own status: 'ready' once connected and checked, anything else while not.
      storeLinksDown: () => [...links].filter(([, conn]) => conn.status !== 'ready').map(([name]) => name).sort(),
      sessions: () => countSessions(persistence),
      async close() {
        await destroyed(persistence);
        await new Promise<void>((resolve) => mq.close(() => resolve()));
      },
    };
  }
  if (config.persistence === 'memory') return { store: 'memory', storeLinksDown: () => [], sessions: async () => 0, close: async () => {} };
  if (!config.dataDir) throw new Error('--persistence level needs --data-dir');
  const [{ Level }, { default: levelPersistence }] = await Promise.all([import('level'), import('aedes-persistence-level')]);
  const dir = path.resolve(config.dataDir, 'sessions');
  await mkdir(dir, { recursive: true });
  const db = new Level(dir);
  try {
    await db.open();
  } catch (err) {
    const cause = (err as { cause?: Error & { code?: string } }).cause;
    // LevelDB holds a lock file while a broker has the store open.
    // A configuration error, reported as one line: two brokers on one store mix deployments.
    if (cause?.code === 'LEVEL_LOCKED' || /\block\b/i.test(cause?.message ?? '')) {
      throw new UsageError(`the session store ${dir} is in use by another broker; give each broker its own --data-dir`);
    }
    throw new Error(`cannot open the session store ${dir}: ${cause?.message ?? (err as Error).message}`);
  }
  const persistence = levelPersistence(db);
  return {
    persistence,
    store: dir,
    storeLinksDown: () => [],
    sessions: () => countSessions(persistence),
    async close() {
      // The persistence closes the database it was given.
      await destroyed(persistence);
    },
  };
}

/** The URL without its password, for logs. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'redis://(unparsable)';
  }
}
