import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { AedesOptions } from 'aedes';
import type { Logger } from 'pino';

export interface BackendConfig {
  /** 'level': sessions and queued messages on disk in `dataDir`; 'memory': lost on restart (tests). */
  persistence: 'level' | 'memory';
  dataDir: string;
  /** redis:// URL shared by every broker of a cluster; with it, persistence lives in Redis. */
  cluster?: string | undefined;
}

/** What Aedes keeps sessions in and routes messages through, and how to release it. */
export interface Backends {
  persistence?: AedesOptions['persistence'];
  mq?: AedesOptions['mq'];
  /** Call after the broker closed. */
  close(): Promise<void>;
}

// Without a callback: CallBackPersistence (aedes-persistence 10 and 11) marks itself ready
// only when set up through its `broker` setter, which Aedes 1.2 no longer uses, and
// destroy(cb) waits for that readiness for ever; the callback-less form returns the promise.
const destroyed = async (p: { destroy(cb?: () => void): Promise<void> | void }): Promise<void> => {
  await p.destroy();
};

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
    const mq = redisEmitter({ connectionString: config.cluster });
    const persistence = redisPersistence({ conn: new Redis(config.cluster) });
    log.info({ cluster: redactUrl(config.cluster) }, 'broker clustered over Redis');
    return {
      mq: mq as unknown as AedesOptions['mq'],
      persistence,
      async close() {
        await destroyed(persistence);
        await new Promise<void>((resolve) => mq.close(() => resolve()));
      },
    };
  }
  if (config.persistence === 'memory') return { close: async () => {} };
  const [{ Level }, { default: levelPersistence }] = await Promise.all([import('level'), import('aedes-persistence-level')]);
  const dir = path.resolve(config.dataDir, 'sessions');
  await mkdir(dir, { recursive: true });
  const db = new Level(dir);
  try {
    await db.open();
  } catch (err) {
    // LevelDB holds a lock file: the usual cause is a second broker on the same directory.
    const cause = (err as { cause?: Error }).cause?.message ?? (err as Error).message;
    throw new Error(`cannot open the session store ${dir}: ${cause}`);
  }
  const persistence = levelPersistence(db);
  log.info({ dir }, 'broker sessions on disk');
  return {
    persistence,
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
