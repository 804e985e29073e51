/** Wall-clock time in microseconds since the Unix epoch. */
export function nowMicros(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

export const MICROS_PER_HOUR = 3_600_000_000;
