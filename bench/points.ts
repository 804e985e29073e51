import { createSimulatedFleet } from '../agent/simulator';
import type { TelemetryPoint } from '../proto/types';

/**
 * Hands `emit` the first `count` points of a realistic fleet, each only for the call, made
 * by the simulator on a clock that jumps 10 s per 50 ms tick: 200x real time, with the same
 * 0.1 s between a drone's points. For more points than fit in memory as objects.
 */
export async function forEachSimulatedPoint(count: number, drones: number, gatewayId: string, emit: (p: TelemetryPoint) => void): Promise<void> {
  let clock = Date.UTC(2026, 0, 1) * 1000;
  let n = 0;
  const fleet = createSimulatedFleet({ gatewayId, drones, hz: 10, firstSeq: () => 0, clock: () => (clock += 10_000_000), maxBacklogMs: Number.POSITIVE_INFINITY });
  await new Promise<void>((resolve) => {
    fleet.start({
      accepting: true,
      flush: async () => undefined,
      emit(p) {
        if (n < count) emit(p);
        if (++n === count) resolve();
      },
    });
  });
  await fleet.stop();
}

/** The first `count` points of a realistic fleet (forEachSimulatedPoint), as an array. */
export async function simulatedPoints(count: number, drones: number, gatewayId = 'gw-bench'): Promise<TelemetryPoint[]> {
  const points: TelemetryPoint[] = [];
  // A source's point is the consumer's only during emit (agent/source.ts): kept, it is copied.
  await forEachSimulatedPoint(count, drones, gatewayId, (p) => points.push({ ...p }));
  return points;
}
