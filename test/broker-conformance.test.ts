import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type Broker } from '../broker/server';
import { capturedLog, connectPacket, HAS_MOSQUITTO, makeRegistry, mosquitto, rawClient, within } from './broker-helpers';
import { CLI, logLines, ROOT, tempDir, waitFor } from './helpers';

/**
 * The rules of MQTT 3.1.1 that the broker enforces on a CONNECT on top of Aedes, checked as a
 * foreign client sees them: CONNECT packets written byte by byte on a raw socket (MQTT.js
 * refuses to send some of them), and the exact bytes that come back.
 */

/** CONNACK: type 0x20, remaining length 2, session present 0 [MQTT-3.2.2-4 for a refusal], return code. */
const connack = (code: number) => Buffer.from([0x20, 0x02, 0x00, code]);
const PINGREQ = Buffer.from([0xc0, 0x00]);
const PINGRESP = Buffer.from([0xd0, 0x00]);

type RawClient = Awaited<ReturnType<typeof rawClient>>;

/** Sends `packet`; resolves every byte the broker sent before it closed the connection (it must, within 5 s). */
async function refusedWith(port: number, packet: Buffer): Promise<Buffer> {
  const c = await rawClient(port, packet);
  await within('the broker to close the refused connection', c.closed, 5000);
  return c.received();
}

/** Sends `packet`, expects CONNACK 0, then a PINGREQ answered: the connection is live. */
async function accepted(port: number, packet: Buffer): Promise<RawClient> {
  const c = await rawClient(port, packet);
  await within('the CONNACK', c.connack, 5000);
  expect(c.received()).toEqual(connack(0));
  await ping(c);
  return c;
}

async function ping(c: RawClient): Promise<void> {
  const before = c.received().length;
  c.socket.write(PINGREQ);
  await waitFor('the PINGRESP', () => c.received().length >= before + 2, 5000);
  expect(c.received().subarray(before)).toEqual(PINGRESP);
}

/** The kernel's timer on the broker's end of a loopback connection, from /proc/net/tcp: [kind, centiseconds left]. */
function brokerSideTimer(brokerPort: number, clientPort: number): [number, number] {
  const hexPort = (p: number) => p.toString(16).toUpperCase().padStart(4, '0');
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    // local_address rem_address st ... tr:tm->when
    if (f[1]?.endsWith(`:${hexPort(brokerPort)}`) && f[2]?.endsWith(`:${hexPort(clientPort)}`) && f[3] === '01') {
      const [kind, when] = f[5]!.split(':');
      return [parseInt(kind!, 16), parseInt(when!, 16)];
    }
  }
  throw new Error(`no established connection ${brokerPort} <- ${clientPort} in /proc/net/tcp`);
}

/**
 * Centiseconds until the broker's end of the connection is probed: kind 2 is sk_timer, the
 * keepalive timer of an established socket. Until the client's delayed ACK of the broker's
 * last bytes comes, the retransmit timer (1) shows instead.
 */
async function keepaliveDue(brokerPort: number, clientPort: number): Promise<number> {
  const [kind, due] = await waitFor('the keepalive timer', () => {
    const timer = brokerSideTimer(brokerPort, clientPort);
    return timer[0] !== 1 && timer;
  }, 5000);
  expect(kind).toBe(2);
  return due;
}

describe('CONNECT with the default options and no registry', () => {
  let broker: Broker;
  const { log, lines } = capturedLog('debug');
  const open: RawClient[] = [];

  beforeAll(async () => {
    broker = await startBroker({ host: '127.0.0.1', port: 0 }, log);
  });
  afterAll(async () => {
    for (const c of open) c.socket.destroy();
    await broker?.close();
  });

  it('accepts keepalive 0, which MQTT 3.1.1 allows, and puts TCP keepalive on its socket', async () => {
    const c = await accepted(broker.port, connectPacket({ clientId: 'paho-ka0', keepalive: 0 }));
    open.push(c);
    if (process.platform !== 'linux') return console.log('TCP keepalive timer not checked: /proc/net/tcp is Linux only');
    // Due after --tcp-keepalive (60 s) of silence.
    const due = await keepaliveDue(broker.port, c.socket.localPort!);
    expect(due).toBeGreaterThan(5500);
    expect(due).toBeLessThanOrEqual(6000);
  });

  it('refuses a keepalive above --max-keepalive (300 s) with 0x02, accepts 300', async () => {
    open.push(await accepted(broker.port, connectPacket({ clientId: 'ka-300', keepalive: 300 })));
    const before = broker.stats().authFailures.keepalive_too_long;
    expect(await refusedWith(broker.port, connectPacket({ clientId: 'ka-301', keepalive: 301 }))).toEqual(connack(2));
    expect(await refusedWith(broker.port, connectPacket({ clientId: 'ka-max', keepalive: 65535 }))).toEqual(connack(2));
    expect(broker.stats().authFailures.keepalive_too_long).toBe(before + 2);
    expect(lines.find((l) => l['msg'] === 'connection refused' && l['clientId'] === 'ka-301')).toMatchObject({ reason: 'keepalive_too_long', detail: 'keepalive 301 s' });
  });

  it.skipIf(!HAS_MOSQUITTO)('mosquitto_pub, a client no one here wrote, names the keepalive refusal (skipped without mosquitto-clients)', async () => {
    const args = ['-h', '127.0.0.1', '-p', String(broker.port), '-i', 'mosq-ka', '-t', 'conformance', '-m', 'x', '-q', '1'];
    expect(await mosquitto('mosquitto_pub', [...args, '-k', '300'])).toMatchObject({ code: 0, stderr: '' });
    const refused = await mosquitto('mosquitto_pub', [...args, '-k', '301']);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('Connection Refused: identifier rejected.');
  });

  it('[MQTT-3.1.3-8] refuses a zero-byte client id with CleanSession 0 with 0x02, and closes the connection', async () => {
    const before = broker.stats().authFailures.empty_client_id;
    expect(await refusedWith(broker.port, connectPacket({ clientId: '', clean: false, keepalive: 0 }))).toEqual(connack(2));
    expect(broker.stats().authFailures.empty_client_id).toBe(before + 1);
  });

  it('[MQTT-3.1.3-6] accepts a zero-byte client id with CleanSession 1 under a unique generated id', async () => {
    const connectedBefore = lines.filter((l) => l['msg'] === 'client connected').length;
    const first = await accepted(broker.port, connectPacket({ clientId: '', keepalive: 0 }));
    const second = await accepted(broker.port, connectPacket({ clientId: '', keepalive: 0 }));
    open.push(first, second);
    // Had both got the same id, the second would have taken the first's over and closed it.
    await ping(first);
    const ids = lines.filter((l) => l['msg'] === 'client connected').slice(connectedBefore).map((l) => l['clientId']);
    expect(ids).toHaveLength(2);
    expect(ids[0]).toMatch(/^aedes_[0-9a-f-]{36}$/);
    expect(ids[1]).toMatch(/^aedes_[0-9a-f-]{36}$/);
    expect(ids[0]).not.toBe(ids[1]);
  });

  it('refuses an empty client id in MQTT 3.1 (level 3 requires 1-23 characters) with 0x02, whatever CleanSession says', async () => {
    expect(await refusedWith(broker.port, connectPacket({ clientId: '', level: 3 }))).toEqual(connack(2));
    open.push(await accepted(broker.port, connectPacket({ clientId: 'mqtt31', level: 3 })));
  });

  it('[MQTT-3.1.3-9] refuses a client id longer than --max-client-id-length (128) with 0x02, accepts 128', async () => {
    const before = broker.stats().authFailures.client_id_too_long;
    open.push(await accepted(broker.port, connectPacket({ clientId: 'x'.repeat(128) })));
    expect(await refusedWith(broker.port, connectPacket({ clientId: 'y'.repeat(129) }))).toEqual(connack(2));
    expect(broker.stats().authFailures.client_id_too_long).toBe(before + 1);
  });

  it('[MQTT-3.1.2-2] refuses protocol level 5 with 0x01 (Aedes)', async () => {
    expect(await refusedWith(broker.port, Buffer.concat([Buffer.from([0x10, 0x0d, 0x00, 0x04]), Buffer.from('MQTT'), Buffer.from([5, 0x02, 0, 60, 0, 0, 0])]))).toEqual(
      connack(1),
    );
  });
});

describe('CONNECT limits set otherwise', () => {
  it('takes any keepalive with --max-keepalive 0, and an empty id (generated, 42 characters) with --max-client-id-length 23', async () => {
    const broker = await startBroker({ host: '127.0.0.1', port: 0, maxKeepalive: 0, maxClientIdLength: 23 }, capturedLog().log);
    const open: RawClient[] = [];
    try {
      open.push(await accepted(broker.port, connectPacket({ clientId: 'ka-max', keepalive: 65535 })));
      open.push(await accepted(broker.port, connectPacket({ clientId: '', keepalive: 0 })));
      expect(await refusedWith(broker.port, connectPacket({ clientId: 'z'.repeat(24) }))).toEqual(connack(2));
    } finally {
      for (const c of open) c.socket.destroy();
      await broker.close();
    }
  });
});

describe('TCP keepalive on the TLS listener', () => {
  it.skipIf(process.platform !== 'linux')('is on for a keepalive-0 client over TLS too (skipped off Linux: reads /proc/net/tcp)', async () => {
    const { dir, remove } = await tempDir('conformance-tls');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'broker.key', '-out', 'broker.pem', '-days', '1', '-subj', '/CN=localhost'], { cwd: dir, stdio: 'pipe' });
    const broker = await startBroker(
      { host: '127.0.0.1', port: 0, tlsPort: 0, tlsOnly: true, tlsCert: path.join(dir, 'broker.pem'), tlsKey: path.join(dir, 'broker.key'), tcpKeepalive: 45 },
      capturedLog().log,
    );
    const socket = tls.connect({ host: '127.0.0.1', port: broker.port, rejectUnauthorized: false });
    socket.on('error', () => {});
    try {
      await once(socket, 'secureConnect');
      let received = Buffer.alloc(0);
      socket.on('data', (d: Buffer) => (received = Buffer.concat([received, d])));
      socket.write(connectPacket({ clientId: 'tls-ka0', keepalive: 0 }));
      await waitFor('the CONNACK', () => received.length >= 4, 5000);
      expect(received).toEqual(connack(0));
      const due = await keepaliveDue(broker.port, socket.localPort!);
      expect(due).toBeGreaterThan(4000);
      expect(due).toBeLessThanOrEqual(4500);
    } finally {
      socket.destroy();
      await broker.close();
      await remove();
    }
  });
});

describe('CONNECT with a registry', () => {
  let broker: Broker;
  let secret: string;
  let cleanup: () => Promise<void>;

  beforeAll(async () => {
    const dir = await tempDir('broker-conformance');
    cleanup = dir.remove;
    const made = await makeRegistry(dir.dir, [['gw-1', 'gateway']]);
    secret = made.secrets.get('gw-1')!;
    broker = await startBroker({ host: '127.0.0.1', port: 0, registry: made.file, maxConnectionsPerIdentity: 1 }, capturedLog().log);
  });
  afterAll(async () => {
    await broker?.close();
    await cleanup?.();
  });

  it('answers each refusal with a code MQTT 3.1.1 defines: 5 without credentials, 4 for a bad password, 3 beyond the connection limit, 5 for a foreign client id', async () => {
    expect(await refusedWith(broker.port, connectPacket({ clientId: 'gw-1', keepalive: 0 }))).toEqual(connack(5));
    expect(await refusedWith(broker.port, connectPacket({ clientId: 'gw-1', username: 'gw-1', password: 'wrong', keepalive: 0 }))).toEqual(connack(4));
    expect(await refusedWith(broker.port, connectPacket({ clientId: 'gw-2', username: 'gw-1', password: secret, keepalive: 0 }))).toEqual(connack(5));
    // The CONNECT rules come before the credentials: an empty persistent id is 2 even with a good password.
    expect(await refusedWith(broker.port, connectPacket({ clientId: '', clean: false, username: 'gw-1', password: secret }))).toEqual(connack(2));
    const held = await accepted(broker.port, connectPacket({ clientId: 'gw-1-a', username: 'gw-1', password: secret, keepalive: 0 }));
    try {
      expect(await refusedWith(broker.port, connectPacket({ clientId: 'gw-1-b', username: 'gw-1', password: secret, keepalive: 0 }))).toEqual(connack(3));
    } finally {
      held.socket.destroy();
    }
  });
});

/** Whether this process may make a network namespace of its own (root on Linux, with unshare and nsenter). */
const CAN_NETNS = (() => {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return false;
  try {
    execFileSync('unshare', ['-n', 'nsenter', '--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe('a keepalive-0 client whose link dies', () => {
  // Loopback always answers TCP keepalive probes; only a link taken down stops them. The
  // broker (dist/cli.js) and the client run in a private network namespace whose loopback
  // the test takes down, which needs root.
  it.skipIf(!CAN_NETNS)('is closed by TCP keepalive about --tcp-keepalive + 10 s after the link went silent (skipped unless root on Linux: needs a network namespace)', async () => {
    const broker = spawn('unshare', ['-n', 'sh', '-c', `ip link set lo up && exec "${process.execPath}" "${CLI}" broker --port 1883 --persistence memory --tcp-keepalive 1`], {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    broker.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<void>((resolve) => broker.once('close', () => resolve()));
    const netns = `--net=/proc/${broker.pid}/ns/net`;
    // A foreign client: CONNECT with keepalive 0 and never a byte more; it prints the CONNACK in hex.
    const script = `const s = require('net').connect(1883, '127.0.0.1', () => s.write(Buffer.from(process.argv[1], 'hex'))); s.on('data', (d) => console.log(d.toString('hex'))); s.on('error', () => {});`;
    let client: ChildProcess | undefined;
    try {
      await waitFor('the broker to listen', () => logLines(stderr).some((l) => l['msg'] === 'broker listening'));
      client = spawn('nsenter', [netns, process.execPath, '-e', script, connectPacket({ clientId: 'silent', keepalive: 0 }).toString('hex')], { stdio: ['ignore', 'pipe', 'ignore'] });
      let stdout = '';
      client.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
      await waitFor("the client's CONNACK", () => stdout.includes('20020000'), 10_000);
      execFileSync('nsenter', [netns, 'ip', 'link', 'set', 'lo', 'down']);
      const cut = Date.now();
      const closed = await waitFor('the broker to close the dead connection', () => logLines(stderr).find((l) => l['msg'] === 'client error; connection closed'), 30_000);
      const after = Date.now() - cut;
      expect(closed).toMatchObject({ clientId: 'silent', err: 'read ETIMEDOUT' });
      // 1 s of silence, then 10 probes a second apart.
      expect(after).toBeGreaterThanOrEqual(9_000);
      expect(after).toBeLessThan(20_000);
      console.log(`keepalive-0 client on a dead link closed ${after} ms after the link went down (--tcp-keepalive 1)`);
    } finally {
      client?.kill('SIGKILL');
      broker.kill('SIGKILL');
      await exited;
    }
  });
});
