/**
 * Exponential backoff with full jitter: attempt n waits a uniform random time in
 * [0, min(max, min * 2^n)]. A fixed period, as MQTT.js's own reconnect uses, makes a
 * whole fleet that lost the same broker reconnect in lockstep.
 */
export function backoffDelayMs(attempt: number, minMs: number, maxMs: number, random: () => number = Math.random): number {
  const cap = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * cap);
}
