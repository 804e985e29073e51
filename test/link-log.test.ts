import mqtt from 'mqtt';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type Broker } from '../broker/server';
import { watchLink } from '../deploy/runtime/link-log';
import { freePort, quietLog, waitFor } from './helpers';

/** A logger whose lines land in `lines`, parsed. */
function capturedLog(): { log: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) };
  return { log: pino({ level: 'info' }, stream), lines };
}
const withMsg = (lines: Array<Record<string, unknown>>, msg: string) => lines.filter((l) => l['msg'] === msg);

describe('the log of a connection to the broker', () => {
  let broker: Broker | null = null;
  let client: mqtt.MqttClient | null = null;
  afterEach(async () => {
    await client?.endAsync(true);
    await broker?.close();
    client = null;
    broker = null;
  });

  it('logs an outage, not each of its attempts: once, a reminder per period, and once when the broker is back', async () => {
    const port = await freePort();
    const { log, lines } = capturedLog();
    // Nothing listens on the port yet: every attempt is refused, 20 ms apart.
    client = mqtt.connect({ host: '127.0.0.1', port, reconnectPeriod: 20, connectTimeout: 2000 });
    const started = Date.now();
    const link = watchLink(client, log, 'test', 400);
    await waitFor('30 refused attempts', () => link.failedAttempts >= 30);
    const elapsed = Date.now() - started;
    const first = withMsg(lines, 'the broker is unreachable; retrying');
    expect(first).toHaveLength(1);
    expect(first[0]).toMatchObject({ connection: 'test', attempts: 1, level: 40 });
    expect(String(first[0]!['err'])).toMatch(/ECONNREFUSED/);
    // A reminder per 400 ms at most (one more for the attempt that crosses the last period).
    const reminders = withMsg(lines, 'the broker is still unreachable; retrying');
    expect(reminders.length).toBeLessThanOrEqual(Math.floor(elapsed / 400) + 1);
    await waitFor('a reminder', () => withMsg(lines, 'the broker is still unreachable; retrying').length > 0, 5000);
    const reminder = withMsg(lines, 'the broker is still unreachable; retrying')[0]!;
    expect(Number(reminder['attempts'])).toBeGreaterThan(1);
    // Nothing else: no line per attempt.
    expect(lines.length).toBe(1 + withMsg(lines, 'the broker is still unreachable; retrying').length);

    broker = await startBroker({ host: '127.0.0.1', port }, quietLog);
    await waitFor('the reconnect', () => link.up);
    const back = withMsg(lines, 'reconnected to the broker');
    expect(back).toHaveLength(1);
    expect(back[0]!['attempts']).toBe(link.failedAttempts);
    expect(link.outages).toBe(1);

    // The broker goes: one line for the loss; our own end() afterwards is no outage.
    await broker.close();
    broker = null;
    await waitFor('the loss', () => withMsg(lines, 'the connection to the broker was lost; reconnecting').length === 1);
    await waitFor('a refused attempt', () => withMsg(lines, 'the broker is unreachable; retrying').length === 2);
    expect(link.outages).toBe(2);
    const before = lines.length;
    await client.endAsync(true);
    client = null;
    expect(lines.length).toBe(before);
  }, 30_000);

  it('logs nothing of our own end(): a publish that comes while the client disconnects is no error of the link', async () => {
    broker = await startBroker({ host: '127.0.0.1', port: 0 }, quietLog);
    const { log, lines } = capturedLog();
    client = mqtt.connect(broker.url, { reconnectPeriod: 0 });
    const link = watchLink(client, log, 'test');
    await waitFor('connected', () => link.up || undefined);
    // As an agent's publisher does when a commit ack or a read from its spool comes in
    // during its stop: MQTT.js emits 'error' for each publish once end() has begun.
    const ending = client.endAsync();
    const errors: string[] = [];
    client.on('error', (err) => errors.push(err.message));
    for (let i = 0; i < 3; i++) client.publish('dronelake/test', 'x', { qos: 1 });
    await ending;
    client = null;
    expect(errors).toEqual(['client disconnecting', 'client disconnecting', 'client disconnecting']);
    expect(lines).toEqual([]);
  });
});
