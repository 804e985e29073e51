import { describe, expect, it } from 'vitest';
import { Publisher } from '../agent/publisher';
import { Spool } from '../agent/spool';
import { startBroker, type Broker } from '../broker/server';
import { columnsOfPoints, encodeColumnar } from '../proto/columnar';
import { nowMicros } from '../proto/time';
import { cleanupsAfterEach, quietLog, tempDir, waitFor } from './helpers';

describe("the agent's publisher", () => {
  const cleanups = cleanupsAfterEach();

  it('sends nothing once its stop has begun: a batch read back after close() stays in the spool for the next start', async () => {
    const broker: Broker = await startBroker({ host: '127.0.0.1', port: 0 }, quietLog);
    cleanups.push(() => broker.close());
    const { dir, remove } = await tempDir('publisher-stop');
    cleanups.push(remove);
    const spool = await Spool.open({ dir, fsyncIntervalMs: 0 });
    cleanups.push(() => spool.close());
    const publisher = new Publisher(
      { broker: broker.url, gatewayId: 'gw-p', clientId: 'gw-p-test', window: 64, ackTimeoutMs: 60_000, reconnectMinMs: 100, reconnectMaxMs: 1000, tls: {} },
      spool,
      quietLog,
    );
    await waitFor('connected', () => publisher.stats.connected || undefined);
    const seq = spool.nextBatchSeq();
    const payload = encodeColumnar({ gatewayId: 'gw-p', batchSeq: seq, sentAt: nowMicros() }, columnsOfPoints([{ drone_id: 'gw-p-d1', seq: 0, ts: nowMicros() }]));
    const batch = { seq, points: 1, payload };
    await spool.append(batch);
    // The send reads the batch back from the spool, which ends after this turn: by then the
    // stop has begun, as when a commit ack or a read from disk comes during an agent's stop.
    publisher.enqueue(batch);
    await publisher.close();
    expect(publisher.stats.sent).toBe(0);
    expect(spool.count).toBe(1);
  });
});
