import { createSimulatedFleet } from '../agent/simulator';
import type { TelemetryPoint } from '../proto/types';

/**
 * Points of a realistic fleet, made by the simulator on a clock that jumps 10 s per
 * 50 ms tick: 200x real time, with the same 0.1 s between a drone's points.
 */
export async function simulatedPoints(count: number, drones: number, gatewayId = 'gw-bench'): Promise<TelemetryPoint[]> {
  const points: TelemetryPoint[] = [];
  let clock = Date.UTC(2026, 0, 1) * 1000;
  const fleet = createSimulatedFleet({ gatewayId, drones, hz: 10, firstSeq: () => 0, clock: () => (clock += 10_000_000), maxBacklogMs: Number.POSITIVE_INFINITY });
  await new Promise<void>((resolve) => {
    fleet.start({
      accepting: true,
      flush: async () => undefined,
      emit(p) {
        if (points.length < count) points.push(p);
        if (points.length === count) resolve();
      },
    });
  });
  await fleet.stop();
  return points;
}
