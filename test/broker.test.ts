import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { startBroker } from '../broker/server';
import { quietLog } from './helpers';

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
});
