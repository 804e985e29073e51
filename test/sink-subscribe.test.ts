import net from 'node:net';
import mqtt from 'mqtt';
import { describe, expect, it } from 'vitest';
import { startBroker, type Broker } from '../broker/server';
import { nowMicros } from '../proto/time';
import { sinkConfig } from '../sink/options';
import { startSink, type Sink } from '../sink/sink';
import { capturedLog, makeRegistry, within } from './broker-helpers';
import { cleanupsAfterEach, cli, cruisePoint, freePort, logLines, runCli, tempDir, waitFor, wireMessage } from './helpers';
import { testLake, type TestLake } from './lakes';

/** An MQTT SUBSCRIBE packet's fixed-header byte. */
const SUBSCRIBE = 0x82;

describe('the sink subscribing at start', () => {
  const cleanups = cleanupsAfterEach();

  it('asks again when the connection drops before the SUBACK, then takes telemetry', async () => {
    const broker: Broker = await startBroker({ host: '127.0.0.1', port: 0 }, capturedLog().log);
    cleanups.push(() => broker.close());
    const lake: TestLake = await testLake('local');
    cleanups.push(() => lake.remove());
    // A loopback relay in front of the broker that cuts the first connection to carry a SUBSCRIBE.
    let cuts = 0;
    const sockets = new Set<net.Socket>();
    const relay = net.createServer((down) => {
      const up = net.connect(Number(new URL(broker.url).port), '127.0.0.1');
      for (const s of [down, up]) {
        sockets.add(s);
        s.on('error', () => {});
        s.on('close', () => sockets.delete(s));
      }
      down.on('data', (chunk: Buffer) => {
        if (cuts === 0 && chunk[0] === SUBSCRIBE) {
          cuts++;
          down.destroy();
          up.destroy();
          return;
        }
        up.write(chunk);
      });
      up.pipe(down);
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => { for (const s of sockets) s.destroy(); relay.close(resolve); }));
    const relayUrl = `mqtt://127.0.0.1:${(relay.address() as net.AddressInfo).port}`;

    const { log, lines } = capturedLog('warn');
    const sink: Sink = await within('the sink to start', startSink(sinkConfig({ broker: relayUrl, ...lake.config, flushInterval: 0.3 }), log), 20_000);
    cleanups.push(() => sink.close());
    expect(cuts).toBe(1);
    expect(lines.filter((l) => l['msg'] === 'subscribe lost with the connection; asking again once reconnected')).toHaveLength(1);

    // The session really holds the subscription: a batch sent straight to the broker lands.
    const gateway = await mqtt.connectAsync(broker.url, { clientId: 'gw-sub' });
    cleanups.push(() => gateway.endAsync());
    const t0 = nowMicros() - 2_000_000;
    const { topic, payload } = wireMessage('v2', { gateway_id: 'gw-sub', batch_seq: 1, sent_at: nowMicros(), points: [0, 1, 2].map((i) => cruisePoint('d-sub', i, t0 + i * 100_000)) });
    await gateway.publishAsync(topic, Buffer.from(payload), { qos: 1 });
    await waitFor('the 3 points committed', async () => {
      await sink.flush();
      return sink.stats().pointsCommitted === 3;
    });
    expect(await lake.query('SELECT count(*)::INT AS n, count(DISTINCT seq)::INT AS d FROM telemetry')).toEqual([{ n: 3, d: 3 }]);
  });

  /** A broker whose registry knows one identity, gw-a, a gateway: it may not subscribe to telemetry. */
  async function gatewayOnlyBroker(name: string) {
    const { dir, remove } = await tempDir(name);
    cleanups.push(remove);
    const { file, secrets } = await makeRegistry(dir, [['gw-a', 'gateway']]);
    const broker = await startBroker({ host: '127.0.0.1', port: 0, registry: file }, capturedLog().log);
    cleanups.push(() => broker.close());
    return { dir, broker, password: secrets.get('gw-a')! };
  }

  it('refuses to start under an identity the broker will not let subscribe', async () => {
    const { broker, password } = await gatewayOnlyBroker('sink-sub');
    const lake = await testLake('local');
    cleanups.push(() => lake.remove());
    const options = sinkConfig({ broker: broker.url, ...lake.config, clientId: 'gw-a', username: 'gw-a', password });
    await expect(within('the refusal', startSink(options, capturedLog('debug').log), 20_000)).rejects.toThrow(/^the broker refused the subscription to dronelake\/v2\/telemetry\/\+\/\+: the sink's identity needs the sink role$/);
  });

  it('dronelake sink: a refused identity is one line and exit 2, with nothing left running', async () => {
    const { dir, broker, password } = await gatewayOnlyBroker('sink-sub-cli');
    const r = await cli(['sink', '--broker', broker.url, '--lake', `${dir}/lake`, '--client-id', 'gw-a', '--username', 'gw-a', '--password', password, '--log-level', 'error'], 30_000);
    expect([r.code, r.stderr, r.stdout]).toEqual([2, "dronelake: the broker refused the subscription to dronelake/v2/telemetry/+/+: the sink's identity needs the sink role\n", '']);
  });

  it('dronelake sink: SIGTERM while it waits for a broker that is not there ends the start, exit 0', async () => {
    const { dir, remove } = await tempDir('sink-sub-term');
    cleanups.push(remove);
    const sink = runCli(['sink', '--broker', `mqtt://127.0.0.1:${await freePort()}`, '--lake', `${dir}/lake`]);
    cleanups.push(async () => sink.child.kill('SIGKILL'));
    // Started as far as it can: its telemetry connection is being refused.
    await waitFor('a refused connection in the log', () => logLines(sink.stderr()).some((l) => String(l['err']).includes('ECONNREFUSED')));
    sink.child.kill('SIGTERM');
    expect(await within('the sink to exit', sink.exited, 10_000)).toBe(0);
  });
});
