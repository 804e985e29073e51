import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type Broker } from '../broker/server';
import { ackTopic, gatewayOfTelemetryTopic, telemetryTopic, TELEMETRY_V2_WILDCARD, TELEMETRY_WILDCARD } from '../proto/topics';
import { closed, connect, granted, HAS_MOSQUITTO, makeRegistry, mosquitto, tryConnect, within } from './broker-helpers';
import { quietLog, runCli, tempDir, waitFor } from './helpers';

const openssl = (args: string[], cwd: string) => execFileSync('openssl', args, { cwd, stdio: 'pipe' });

/** A throwaway CA, a server certificate for 127.0.0.1, and client certificates with the given CNs; plus one from a CA nobody trusts. */
function makePki(dir: string, cns: string[]): void {
  const key = (name: string) => openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`], dir);
  const ca = (name: string) => {
    key(name);
    openssl(['req', '-x509', '-new', '-key', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=${name}`], dir);
  };
  const sign = (name: string, cn: string, by: string, ext?: string) => {
    key(name);
    openssl(['req', '-new', '-key', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`], dir);
    const extArgs = ext ? ['-extfile', ext] : [];
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${by}.pem`, '-CAkey', `${by}.key`, '-set_serial', String(Date.now() + name.length), '-out', `${name}.pem`, '-days', '2', ...extArgs], dir);
  };
  ca('ca');
  ca('rogue-ca');
  writeFileSync(path.join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  sign('server', 'localhost', 'ca', 'server.ext');
  for (const cn of cns) sign(cn, cn, 'ca');
  sign('rogue-gw-a', 'gw-a', 'rogue-ca');
}

describe('broker over TLS', () => {
  let broker: Broker;
  let dir: string;
  let cleanup: () => Promise<void>;
  let secrets: Map<string, string>;
  let sink: mqtt.MqttClient;
  const atSink: string[] = [];
  const clients: mqtt.MqttClient[] = [];
  const pem = (name: string) => readFileSync(path.join(dir, `${name}.pem`));
  const keyOf = (name: string) => readFileSync(path.join(dir, `${name}.key`));
  const tlsOptions = (cert?: string) => ({ ca: pem('ca'), ...(cert ? { cert: pem(cert), key: keyOf(cert) } : {}) });
  const keep = (c: mqtt.MqttClient) => {
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    ({ dir, remove: cleanup } = await tempDir('broker-tls'));
    makePki(dir, ['gw-a', 'dronelake-sink', 'gw-unknown']);
    ({ secrets } = await makeRegistry(dir, [
      ['gw-a', 'gateway'],
      ['gw-b', 'gateway'],
      ['dronelake-sink', 'sink'],
    ]));
    broker = await startBroker(
      {
        host: '127.0.0.1',
        port: 0,
        registry: path.join(dir, 'registry.json'),
        tlsPort: 0,
        tlsCert: path.join(dir, 'server.pem'),
        tlsKey: path.join(dir, 'server.key'),
        tlsCa: path.join(dir, 'ca.pem'),
      },
      quietLog,
    );
    // The sink proves itself with its certificate too.
    sink = keep(await connect(broker.tlsUrl!, { clientId: 'dronelake-sink', ...tlsOptions('dronelake-sink') }));
    await sink.subscribeAsync(TELEMETRY_WILDCARD, { qos: 1 });
    sink.on('message', (_t, p) => atSink.push(p.toString()));
  });

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    await broker?.close();
    await cleanup();
  });

  it('takes a gateway over TLS with its password', async () => {
    expect(broker.tlsUrl).toMatch(/^mqtts:\/\/127\.0\.0\.1:\d+$/);
    const b = keep(await connect(broker.tlsUrl!, { clientId: 'gw-b-1', username: 'gw-b', password: secrets.get('gw-b')!, ...tlsOptions() }));
    await b.publishAsync(telemetryTopic('gw-b'), 'gw-b over tls', { qos: 1 });
    await waitFor('gw-b telemetry', () => atSink.includes('gw-b over tls'));
    expect(await tryConnect(broker.tlsUrl!, { clientId: 'gw-b-2', username: 'gw-b', password: 'wrong', ...tlsOptions() })).toBe(4);
    expect(await tryConnect(broker.tlsUrl!, { clientId: 'gw-b-2', ...tlsOptions() })).toBe(5);
  });

  it('takes a gateway by its client certificate alone (CN = id), with the rights of its role', async () => {
    const a = keep(await connect(broker.tlsUrl!, { clientId: 'gw-a-1', ...tlsOptions('gw-a') }));
    const acks: string[] = [];
    a.on('message', (_t, p) => acks.push(p.toString()));
    expect(await granted(a, [ackTopic('gw-a'), ackTopic('gw-b'), TELEMETRY_WILDCARD])).toEqual([1, 128, 128]);
    await a.publishAsync(telemetryTopic('gw-a'), 'gw-a by certificate', { qos: 1 });
    await waitFor('gw-a telemetry', () => atSink.includes('gw-a by certificate'));
    await sink.publishAsync(ackTopic('gw-a'), 'ack for gw-a', { qos: 1 });
    await waitFor('the ack', () => acks.includes('ack for gw-a'));
    const gone = closed(a);
    a.publish(telemetryTopic('gw-b'), 'forged', { qos: 1 });
    await gone;
    expect(atSink).not.toContain('forged');
  });

  it('takes the agent by its client certificate, its own TLS socket checking the server by name', async () => {
    const v2From: string[] = [];
    const onMessage = (t: string) => v2From.push(gatewayOfTelemetryTopic(t) ?? t);
    sink.on('message', onMessage);
    await sink.subscribeAsync(TELEMETRY_V2_WILDCARD, { qos: 1 });
    const port = new URL(broker.tlsUrl!).port;
    const agent = runCli(['agent', '--broker', `mqtts://localhost:${port}`, '--gateway', 'gw-a', '--ca', path.join(dir, 'ca.pem'), '--cert', path.join(dir, 'gw-a.pem'), '--key', path.join(dir, 'gw-a.key'), '--spool', path.join(dir, 'agent-spool'), '--simulate', '1', '--linger', '0.1', '--log-level', 'warn']);
    try {
      await waitFor("gw-a's batches over TLS", () => v2From.includes('gw-a'));
    } finally {
      agent.child.kill('SIGKILL');
      sink.off('message', onMessage);
    }
    expect(new Set(v2From)).toEqual(new Set(['gw-a']));
  });

  it('refuses a certificate whose CN is not in the registry, one from an untrusted CA, and a gateway certificate acting as the sink', async () => {
    const before = broker.stats().authFailures;
    expect(await tryConnect(broker.tlsUrl!, { clientId: 'gw-unknown-1', ...tlsOptions('gw-unknown') })).toBe(5);
    // Not even with a password of a known gateway: the certificate speaks for the client.
    expect(await tryConnect(broker.tlsUrl!, { clientId: 'gw-b-1', username: 'gw-b', password: secrets.get('gw-b')!, ...tlsOptions('gw-unknown') })).toBe(5);
    expect(await tryConnect(broker.tlsUrl!, { clientId: 'gw-a-1', ca: pem('ca'), cert: pem('rogue-gw-a'), key: keyOf('rogue-gw-a') })).toBe(5);
    expect(await tryConnect(broker.tlsUrl!, { clientId: 'dronelake-sink', ...tlsOptions('gw-a') })).toBe(5);
    expect(await tryConnect(broker.tlsUrl!, { clientId: 'dronelake-sink-acks', ...tlsOptions('gw-a') })).toBe(5);
    const after = broker.stats().authFailures;
    expect(after.unknown_certificate - before.unknown_certificate).toBe(2);
    expect(after.untrusted_certificate - before.untrusted_certificate).toBe(1);
    expect(after.client_id_not_owned - before.client_id_not_owned).toBe(2);
    expect(sink.connected).toBe(true);
  });

  it('keeps TLS and plain MQTT apart: plain bytes on the TLS port are a handshake error', async () => {
    const errors = broker.stats().connectionErrors;
    const socket = net.connect(Number(new URL(broker.tlsUrl!).port), '127.0.0.1');
    socket.on('error', () => {});
    socket.write(Buffer.from([0x10, 0x0c, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c, 0x00, 0x00]));
    await within('the TLS listener to drop it', new Promise((r) => socket.once('close', r)), 5000);
    expect(broker.stats().connectionErrors).toBe(errors + 1);
    // The plain listener takes passwords, not certificates.
    const plain = keep(await connect(broker.url, { clientId: 'gw-b-plain', username: 'gw-b', password: secrets.get('gw-b')! }));
    expect(plain.connected).toBe(true);
  });

  it.skipIf(!HAS_MOSQUITTO)(`takes mosquitto_pub by client certificate or by password over TLS, and refuses an unknown CN${HAS_MOSQUITTO ? '' : ' (skipped: mosquitto_pub is not on PATH; apt-get install mosquitto-clients)'}`, async () => {
    const port = new URL(broker.tlsUrl!).port;
    const base = ['-h', '127.0.0.1', '-p', port, '--cafile', path.join(dir, 'ca.pem'), '-q', '1'];
    const byCert = await mosquitto('mosquitto_pub', [...base, '--cert', path.join(dir, 'gw-a.pem'), '--key', path.join(dir, 'gw-a.key'), '-i', 'gw-a-m', '-t', telemetryTopic('gw-a'), '-m', 'mosquitto by certificate']);
    expect(byCert.code, byCert.stderr).toBe(0);
    const byPassword = await mosquitto('mosquitto_pub', [...base, '-u', 'gw-b', '-P', secrets.get('gw-b')!, '-i', 'gw-b-m', '-t', telemetryTopic('gw-b'), '-m', 'mosquitto by password']);
    expect(byPassword.code, byPassword.stderr).toBe(0);
    await waitFor('both at the sink', () => atSink.includes('mosquitto by certificate') && atSink.includes('mosquitto by password'));
    const unknown = await mosquitto('mosquitto_pub', [...base, '--cert', path.join(dir, 'gw-unknown.pem'), '--key', path.join(dir, 'gw-unknown.key'), '-i', 'gw-unknown-m', '-t', telemetryTopic('gw-unknown'), '-m', 'x']);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toContain('Connection Refused: not authorised');
  });


  it('listens on TLS alone with --tls-only, and gives a TLS handshake no longer than a CONNECT', async () => {
    const only = await startBroker(
      { host: '127.0.0.1', port: 0, tlsPort: 0, tlsOnly: true, tlsCert: path.join(dir, 'server.pem'), tlsKey: path.join(dir, 'server.key'), connectTimeout: 1 },
      quietLog,
    );
    try {
      expect(only.url).toBe(only.tlsUrl);
      expect(only.url).toMatch(/^mqtts:/);
      const c = await connect(only.url, { clientId: 'anyone', ca: pem('ca') });
      await c.endAsync();
      // Node would wait 120 s for a ClientHello that never comes.
      const started = Date.now();
      const silent = net.connect(Number(new URL(only.url).port), '127.0.0.1');
      silent.on('error', () => {});
      await within('the silent TLS connection to be closed', new Promise((r) => silent.once('close', r)), 5000);
      expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    } finally {
      await only.close();
    }
  });
});
