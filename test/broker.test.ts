import net from 'node:net';
import mqtt from 'mqtt';
import { describe, expect, it } from 'vitest';
import { startBroker } from '../broker/server';
import { capturedLog, stuckSubscriber } from './broker-helpers';
import { quietLog, waitFor } from './helpers';

describe('broker', () => {
  it('shuts down at once even while a client is still in its CONNECT handshake', async () => {
    const broker = await startBroker({ host: '127.0.0.1', port: 0 }, quietLog);
    // A TCP connection that never sends CONNECT: Aedes does not count it as a client yet.
    const socket = net.connect(broker.port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    const started = Date.now();
    await broker.close();
    expect(Date.now() - started).toBeLessThan(2000);
    socket.destroy();
  });

  it('logs and counts a failed connection once, however many deliveries it had queued', async () => {
    const { log, lines } = capturedLog('info');
    const broker = await startBroker({ host: '127.0.0.1', port: 0 }, log);
    const pub = await mqtt.connectAsync(broker.url, { clientId: 'pub' });
    try {
      const socket = await stuckSubscriber(broker.port, { clientId: 'stuck' }, 't/#');
      // 19 MB at QoS 1: more than the socket holds, so deliveries queue in the broker.
      const payload = Buffer.alloc(65_536, 1);
      for (let i = 0; i < 300; i++) await pub.publishAsync('t/x', payload, { qos: 1 });
      socket.destroy();
      const failures = () => lines.filter((l) => l['msg'] === 'client error; connection closed');
      await waitFor('the failure logged', () => failures().length > 0);
      // Then the broker still serves, and its queued deliveries to the dead connection have
      // all failed by now: before, each was one more line and one more count (226 here).
      await pub.publishAsync('t/x', 'after', { qos: 1 });
      expect(failures().map((l) => l['clientId'])).toEqual(['stuck']);
      expect(broker.stats().clientErrors).toBe(1);
    } finally {
      await pub.endAsync();
      await broker.close();
    }
  });
});
