import mqtt from 'mqtt';
import type { Logger } from 'pino';
import { UsageError } from '../deploy/runtime/options';

/**
 * Subscribes the sink's telemetry session to each filter, one per SUBSCRIBE (with Redis
 * persistence, Aedes never answers a SUBSCRIBE of several filters on a persistent session).
 * A connection that drops before the SUBACK is not the end of the start: the filter is asked
 * again once the client has reconnected. `resubscribe` makes MQTT.js send it: it notes a
 * filter as subscribed when it sends the SUBSCRIBE, so a plain retry is answered from that
 * note without asking the broker, and its reconnect re-subscribes nothing while the broker
 * says the session is present. The sink would then run deaf to that filter.
 * A refused filter ends the start with one line: an identity without the sink role would
 * otherwise run and hear nothing.
 */
export async function subscribeTelemetry(client: mqtt.MqttClient, filters: readonly string[], log: Logger, signal?: AbortSignal): Promise<void> {
  for (const filter of filters) {
    for (;;) {
      try {
        // MQTT.js holds a SUBSCRIBE until it is connected: with no broker, for ever.
        await unlessAborted(client.subscribeAsync(Object.assign({ [filter]: { qos: 1 as const } }, { resubscribe: true })), signal);
        break;
      } catch (err) {
        if (err instanceof StartAborted) throw err;
        // MQTT.js rejects a SUBACK that refuses the filter (a code with 0x80 set), with the SUBACK attached.
        if (err instanceof mqtt.ErrorWithSubackPacket && err.packet !== undefined) throw new UsageError(`the broker refused the subscription to ${filter}: the sink's identity needs the sink role`);
        if (client.disconnecting || client.disconnected) throw err;
        log.warn({ filter, err: (err as Error).message }, 'subscribe lost with the connection; asking again once reconnected');
        await unlessAborted(new Promise<void>((resolve) => client.once('connect', () => resolve())), signal);
      }
    }
  }
}

/** The start was stopped (a signal) before the sink was subscribed: it opened nothing it leaves behind. */
export class StartAborted extends Error {
  constructor() {
    super('stopped while starting');
  }
}

function unlessAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(new StartAborted());
  return new Promise<T>((resolve, reject) => {
    const abort = () => reject(new StartAborted());
    signal.addEventListener('abort', abort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', abort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', abort);
        reject(err);
      },
    );
  });
}
