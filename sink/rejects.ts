import { createHash } from 'node:crypto';
import { DAY_MS } from './layout';

/** A rejected message seen again within this long of its first rejection is a repeat. */
export const REPEAT_WINDOW_MS = DAY_MS;
/** Distinct rejected messages remembered at most (invariant 6); the oldest is forgotten first. */
export const REPEAT_MEMORY = 10_000;

/**
 * Which rejected messages the sink has seen: a gateway re-sends a batch the sink could not
 * decode after every ack timeout, and the broker redelivers what a sink took before it
 * restarted. Invariant 5: each distinct message (topic and bytes) is quarantined and counted
 * once per window; its copies are counted as repeats, so one broken batch does not inflate
 * the error rate for as long as its gateway keeps it. Kept in memory: a restarted sink
 * counts a message it had seen before once more.
 */
export interface RejectMemory {
  /** True the first time within the window (quarantine and count it), false for a repeat. */
  first(topic: string, payload: Uint8Array, nowMs: number, buffer: string): boolean;
  /** Forgets the messages taken into `buffer`, whose commit failed: their next copy is the first again. */
  forget(buffer: string): void;
}

export function createRejectMemory(windowMs = REPEAT_WINDOW_MS, capacity = REPEAT_MEMORY): RejectMemory {
  // Insertion order is first-seen order, so expiry and eviction take from the front.
  const seen = new Map<string, { at: number; buffer: string }>();
  return {
    first(topic, payload, nowMs, buffer) {
      for (const [key, entry] of seen) {
        if (nowMs - entry.at < windowMs && seen.size < capacity) break;
        seen.delete(key);
      }
      const key = createHash('sha256').update(topic).update('\0').update(payload).digest('base64');
      if (seen.has(key)) return false;
      seen.set(key, { at: nowMs, buffer });
      return true;
    },
    forget(buffer) {
      for (const [key, entry] of seen) if (entry.buffer === buffer) seen.delete(key);
    },
  };
}
