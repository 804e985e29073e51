import mqtt from 'mqtt';
import { startAgent, type Agent } from '../agent/agent';
import { agentOptions } from '../agent/options';
import { startBroker } from '../broker/server';
import { configOf, type OptionSpecs } from '../deploy/runtime/options';
import { batchHead, BatchWriter, decodeAck, encodeAck, joinBatch } from '../proto/codec';
import { ColumnsBuilder, encodeColumnar, type Compression } from '../proto/columnar';
import { newStreamId } from '../proto/stream';
import { nowMicros } from '../proto/time';
import { ackTopic, TELEMETRY_V2_WILDCARD, TELEMETRY_WILDCARD, telemetryTopic, telemetryTopicV2 } from '../proto/topics';
import { decodeTelemetry } from '../sink/decode';
import { sinkOptions } from '../sink/options';
import { startSink } from '../sink/sink';
import type { TelemetryPoint } from '../proto/types';
import { naiveRoles } from './naive';
import { simulatedPoints } from './points';
import type { RoleArgs, RoleStarter } from './procs';
import { measureEncoding } from './wire';

/** Role args -> the component's config: the args that are its options, each checked by its option's schema. */
const configFrom = <S extends OptionSpecs>(specs: S, args: RoleArgs) => configOf(specs, Object.fromEntries(Object.entries(args).filter(([k]) => k in specs)));

const sumOf = (agents: Agent[], key: 'pointsIn' | 'pointsAcked' | 'pendingPoints' | 'pendingBytes' | 'resent') =>
  agents.reduce((n, a) => n + a.stats()[key], 0);

export const roles: Record<string, RoleStarter> = {
  async broker(args, log) {
    const broker = await startBroker({ host: '127.0.0.1', port: Number(args['port'] ?? 0) }, log);
    return { info: { url: broker.url }, stats: () => ({ ...broker.stats() }), stop: () => broker.close() };
  },

  async sink(args, log) {
    const sink = await startSink(configFrom(sinkOptions, args), log);
    return { info: {}, stats: () => ({ ...sink.stats() }), stop: () => sink.close() };
  },

  /** `gateways` agents, each with a simulated fleet, sharing `drones` drones at `hz`. */
  async agents(args, log) {
    const gateways = Number(args['gateways']);
    const drones = Number(args['drones']);
    const agents: Agent[] = [];
    for (let g = 0; g < gateways; g++) {
      const share = Math.floor(drones / gateways) + (g < drones % gateways ? 1 : 0);
      const gateway = `${String(args['prefix'] ?? 'gw')}-${g}`;
      agents.push(await startAgent(configFrom(agentOptions, { ...args, gateway, simulate: share, spool: `${String(args['spoolRoot'])}/${gateway}` }), log));
    }
    return {
      info: {},
      stats: () => ({
        pointsIn: sumOf(agents, 'pointsIn'),
        pointsAcked: sumOf(agents, 'pointsAcked'),
        pendingPoints: sumOf(agents, 'pendingPoints'),
        pendingBytes: sumOf(agents, 'pendingBytes'),
        resent: sumOf(agents, 'resent'),
      }),
      async stop() {
        await Promise.all(agents.map((a) => a.drain(Number(args['drainMs'] ?? 30_000))));
        await Promise.all(agents.map((a) => a.close()));
      },
    };
  },

  /**
   * A light load generator, as mqtt-benchmark is: each gateway replays one batch of
   * simulated points under fresh batch numbers, keeping `window` batches unacknowledged.
   * The sink stores each (drone_id, stream, seq) once, so every replay moves the points' seq on,
   * and their times past the last replay's, as a flight goes on (each drone's points then
   * reach the sink in time order, as an agent sends them), and encodes the batch again: about
   * 1.5 us per point of the generator's own CPU (v1).
   * `wire` v2 sends columnar batches, compressed as `compression` says, on v2 topics.
   */
  async replay(args) {
    const gateways = Number(args['gateways']);
    const v2 = args['wire'] === 'v2';
    const compression = (args['compression'] ?? 'none') as Compression;
    const columns = new ColumnsBuilder();
    const window = Number(args['window'] ?? 64);
    const batchPoints = Number(args['batchPoints'] ?? 1000);
    const drones = Math.min(200, batchPoints);
    const writer = new BatchWriter();
    let wireBytes = 0;
    /** Adds a gateway's own drones' points to the wire's writer, each one's seq and time moved past the last send's. */
    const addNext = (points: TelemetryPoint[], perDrone: number, span: number) => {
      for (const p of points) {
        p.seq += perDrone;
        p.ts += span;
        if (v2) columns.add(p);
        else writer.add(p);
      }
    };
    let sent = 0;
    let acked = 0;
    let running = true;
    const clients = await Promise.all(
      Array.from({ length: gateways }, async (_, g) => {
        const gatewayId = `replay-${g}`;
        const points = await simulatedPoints(batchPoints, drones, gatewayId);
        const counts = new Map<string, number>();
        for (const p of points) counts.set(p.drone_id, (counts.get(p.drone_id) ?? 0) + 1);
        const perDrone = Math.max(...counts.values());
        // The next replay's first point comes after this one's last.
        const times = points.map((p) => p.ts);
        const span = Math.max(...times) - Math.min(...times) + 1;
        const client = await mqtt.connectAsync(String(args['broker']), { clientId: `${gatewayId}-bench` });
        let seq = nowMicros();
        const stream = newStreamId();
        let inFlight = 0;
        const pump = () => {
          while (running && inFlight < window) {
            inFlight++;
            sent += batchPoints;
            const head = { gatewayId, batchSeq: seq++, sentAt: nowMicros(), stream };
            addNext(points, perDrone, span);
            if (v2) {
              const payload = encodeColumnar(head, columns.view(), compression);
              columns.reset();
              wireBytes = payload.length;
              client.publish(telemetryTopicV2(gatewayId), Buffer.from(payload), { qos: 1 });
            } else {
              const body = writer.finishPoints();
              wireBytes = body.length;
              client.publish(telemetryTopic(gatewayId), Buffer.from(joinBatch(batchHead(head), body)), { qos: 1 });
            }
          }
        };
        client.on('message', (_t, payload) => {
          const n = decodeAck(payload).batch_seqs.length;
          inFlight -= n;
          acked += n * batchPoints;
          pump();
        });
        await client.subscribeAsync(ackTopic(gatewayId), { qos: 1 });
        pump();
        return client;
      }),
    );
    return {
      info: {},
      stats: () => ({ pointsSent: sent, pointsAcked: acked, wireBytesPerBatch: wireBytes }),
      async stop() {
        running = false;
        await Promise.all(clients.map((c) => c.endAsync()));
      },
    };
  },

  /** Measures the agent's batching and the wire's compressions (wire.ts), and reports the figures as it starts. */
  async encoding(args) {
    return { info: await measureEncoding(args['quick'] === true), stats: () => ({}), stop: async () => undefined };
  },

  /** Acks every batch at once: a stand-in sink, so the agent alone is what is measured. */
  async acker(args) {
    const client = await mqtt.connectAsync(String(args['broker']), { clientId: 'bench-acker' });
    let batches = 0;
    client.on('message', (topic, payload) => {
      const decoded = decodeTelemetry(topic, payload);
      if (!decoded.ok) return;
      const { batch } = decoded;
      batches++;
      client.publish(ackTopic(batch.gateway_id), Buffer.from(encodeAck({ gateway_id: batch.gateway_id, batch_seqs: [batch.batch_seq], committed_at: nowMicros() })), { qos: 0 });
    });
    await client.subscribeAsync(TELEMETRY_V2_WILDCARD, { qos: 0 });
    await client.subscribeAsync(TELEMETRY_WILDCARD, { qos: 0 });
    return { info: {}, stats: () => ({ batches }), stop: () => client.endAsync() };
  },

  ...naiveRoles,
};
