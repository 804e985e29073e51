import type { MqttClient } from 'mqtt';
import type { Logger } from 'pino';

/** How often an outage that goes on is logged again, with its attempts so far. */
export const OUTAGE_REMINDER_MS = 60_000;

/** What a watched connection has seen: its outages and failed attempts since start. */
export interface LinkState {
  readonly up: boolean;
  /** Outages since start: each from a lost (or never made) connection to the next connect. */
  readonly outages: number;
  /** Connection attempts that failed, across every outage. */
  readonly failedAttempts: number;
}

/**
 * Logs a connection's outages, not its attempts: one warning when the broker cannot be
 * reached or the connection drops, one again every `reminderMs` while it stays down (or when
 * the error changes), and one line when it is back, with how long it was down and how many
 * attempts failed. The sink retries every second on each of its connections and an agent
 * with backoff up to a minute, for as long as the broker is away: a line per attempt filled
 * a gateway's log with thousands a day that said one thing.
 */
export function watchLink(client: MqttClient, log: Logger, connection: string, reminderMs = OUTAGE_REMINDER_MS): LinkState {
  const state = { up: false, outages: 0, failedAttempts: 0 };
  // The outage under way: when it began, attempts failed, and the last warning's time and error.
  let since: number | null = null;
  let attempts = 0;
  let warnedAt = 0;
  let lastError = '';

  const begin = (now: number) => {
    since = now;
    attempts = 0;
    warnedAt = 0;
    lastError = '';
    state.outages++;
  };
  const failedAttempt = (err: string | null) => {
    const now = Date.now();
    if (since === null) begin(now);
    attempts++;
    state.failedAttempts++;
    const changed = err !== null && err !== lastError;
    if (warnedAt === 0 || changed || now - warnedAt >= reminderMs) {
      const fields = { connection, err: err ?? lastError, attempts, downSeconds: Math.round((now - since!) / 1000) };
      log.warn(fields, attempts === 1 ? 'the broker is unreachable; retrying' : 'the broker is still unreachable; retrying');
      warnedAt = now;
    }
    if (err !== null) lastError = err;
  };

  client.on('connect', () => {
    state.up = true;
    if (since !== null) log.info({ connection, attempts, downSeconds: Math.round((Date.now() - since) / 1000) }, 'reconnected to the broker');
    since = null;
  });
  // While down, an attempt's error comes before its close: the error names the attempt,
  // the close counts it. An error on a connection that is up is logged as it comes, since
  // not every one ends the connection.
  let pendingError: string | null = null;
  client.on('error', (err) => {
    // Our own end(): MQTT.js fails each publish made while it disconnects with an error
    // event, and a stopping agent that hears acks meanwhile logged one per batch.
    if (client.disconnecting) return;
    if (state.up) log.warn({ connection, err: err.message }, 'mqtt error');
    else pendingError = err.message;
  });
  client.on('close', () => {
    const wasUp = state.up;
    state.up = false;
    const err = pendingError;
    pendingError = null;
    // Our own end(): no outage.
    if (client.disconnecting) return;
    if (wasUp) {
      begin(Date.now());
      log.warn({ connection }, 'the connection to the broker was lost; reconnecting');
      warnedAt = Date.now();
      return;
    }
    failedAttempt(err);
  });
  return state;
}
