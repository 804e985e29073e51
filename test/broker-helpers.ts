import { execFile, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import path from 'node:path';
import { Writable } from 'node:stream';
import mqtt from 'mqtt';
import pino, { type Logger } from 'pino';
import { addIdentity, writeRegistry, type Registry, type Role } from '../broker/registry';
import type { ScryptCost } from '../broker/secrets';
import { sampleOf, waitFor } from './helpers';

/** Cheap enough to hash a thousand secrets in a test; recorded per entry, as the format allows. */
export const TEST_COST: ScryptCost = { N: 1024, r: 8, p: 1 };

export const HAS_MOSQUITTO = (() => {
  try {
    execFileSync('mosquitto_pub', ['--help'], { stdio: 'ignore' });
    return true;
  } catch (err) {
    // mosquitto_pub --help exits 1 after printing its help: present all the same.
    return (err as NodeJS.ErrnoException).code !== 'ENOENT';
  }
})();

/** Writes a registry of `ids` (with roles) to `dir`/registry.json; returns the file and each id's secret. */
export async function makeRegistry(dir: string, ids: ReadonlyArray<readonly [string, Role]>): Promise<{ file: string; registry: Registry; secrets: Map<string, string> }> {
  const registry: Registry = new Map();
  const secrets = new Map<string, string>();
  await Promise.all(ids.map(async ([id, role]) => secrets.set(id, await addIdentity(registry, id, role, TEST_COST))));
  const file = path.join(dir, 'registry.json');
  await writeRegistry(file, registry);
  return { file, registry, secrets };
}

/** A pino logger whose JSON lines land in `lines`. */
export function capturedLog(level: pino.Level = 'info'): { log: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { log: pino({ level }, sink), lines };
}

/** Connects with MQTT.js, without reconnecting; resolves the client, or the CONNACK return code of a refusal. */
export async function tryConnect(url: string, options: mqtt.IClientOptions): Promise<mqtt.MqttClient | number> {
  try {
    return await mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 10_000, ...options });
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'number') return code;
    throw err;
  }
}

/** Connects with MQTT.js, or fails; the broker may close the connection at will (tests wait for 'close'). */
export async function connect(url: string, options: mqtt.IClientOptions): Promise<mqtt.MqttClient> {
  const result = await tryConnect(url, options);
  if (typeof result === 'number') throw new Error(`${String(options.clientId)} refused with CONNACK ${result}`);
  result.on('error', () => {});
  return result;
}

/** `promise`, or a failure naming `what` after `ms`. */
export async function within<T>(what: string, promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The SUBACK's return codes, 128 for each refused filter (MQTT.js rejects a SUBACK that holds one). */
export async function granted(client: mqtt.MqttClient, filters: string[]): Promise<number[]> {
  try {
    return (await client.subscribeAsync(filters, { qos: 1 })).map((g) => g.qos);
  } catch (err) {
    const packet = (err as { packet?: { granted?: number[] } }).packet;
    if (!packet?.granted) throw err;
    return packet.granted;
  }
}

/** Resolves when `client`'s connection closes. */
export const closed = (client: mqtt.MqttClient): Promise<void> => new Promise((resolve) => (client.connected ? client.once('close', () => resolve()) : resolve()));

/** Runs a mosquitto client (mosquitto_pub or mosquitto_sub) to its end, killed after `timeoutMs`. */
export function mosquitto(program: 'mosquitto_pub' | 'mosquitto_sub', args: string[], timeoutMs = 15_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(program, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

const str = (s: string) => {
  const b = Buffer.from(s, 'utf8');
  return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
};

function frame(typeAndFlags: number, body: Buffer): Buffer {
  const length: number[] = [];
  let n = body.length;
  do {
    length.push((n % 128) | (n >= 128 ? 0x80 : 0));
    n = Math.floor(n / 128);
  } while (n > 0);
  return Buffer.concat([Buffer.from([typeAndFlags, ...length]), body]);
}

/** An MQTT 3.1.1 CONNECT (3.1 with `level: 3`), written out by hand for the raw-socket tests; CleanSession 1 unless `clean: false`. */
export function connectPacket(o: { clientId: string; username?: string; password?: string; keepalive?: number; clean?: boolean; level?: 3 | 4 }): Buffer {
  const flags = (o.clean === false ? 0 : 0x02) | (o.username !== undefined ? 0x80 : 0) | (o.password !== undefined ? 0x40 : 0);
  const keepalive = o.keepalive ?? 60;
  const level = o.level ?? 4;
  const parts = [str(level === 3 ? 'MQIsdp' : 'MQTT'), Buffer.from([level, flags, keepalive >> 8, keepalive & 0xff]), str(o.clientId)];
  if (o.username !== undefined) parts.push(str(o.username));
  if (o.password !== undefined) parts.push(str(o.password));
  return frame(0x10, Buffer.concat(parts));
}

export function subscribePacket(messageId: number, topic: string): Buffer {
  return frame(0x82, Buffer.concat([Buffer.from([messageId >> 8, messageId & 0xff]), str(topic), Buffer.from([1])]));
}

/**
 * A raw TCP connection; `connack` resolves the return code of the first CONNACK, or null if
 * the socket closes first; `received` gives every byte the broker sent so far.
 */
export async function rawClient(
  port: number,
  send?: Buffer,
): Promise<{ socket: net.Socket; connack: Promise<number | null>; closed: Promise<void>; received: () => Buffer }> {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => {});
  await once(socket, 'connect');
  const closedSocket = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  let received = Buffer.alloc(0);
  const connack = new Promise<number | null>((resolve) => {
    socket.on('data', (d: Buffer) => {
      received = Buffer.concat([received, d]);
      if (received.length >= 4 && received[0] === 0x20) resolve(received[3]!);
    });
    void closedSocket.then(() => resolve(null));
  });
  if (send) socket.write(send);
  return { socket, connack, closed: closedSocket, received: () => received };
}

/** The value of one sample of /metrics, e.g. metric(text, 'dronelake_broker_acl_denials_total{action="publish"}'). */
export function metric(text: string, sample: string): number {
  const value = sampleOf(text, sample);
  if (value === undefined) throw new Error(`no sample ${sample} in /metrics`);
  return value;
}


/**
 * A subscriber that stops reading once its CONNACK and SUBACK are in, as a process that
 * hangs: what the broker sends it from then on waits in the socket, then in the broker.
 */
export async function stuckSubscriber(port: number, login: Parameters<typeof connectPacket>[0], topic: string): Promise<net.Socket> {
  const client = await rawClient(port, Buffer.concat([connectPacket(login), subscribePacket(1, topic)]));
  // CONNACK (4 bytes), then SUBACK (5): from here on it reads nothing.
  await waitFor('the CONNACK and SUBACK', () => client.received().length >= 9);
  client.socket.pause();
  return client.socket;
}
