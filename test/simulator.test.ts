import { describe, it, expect } from 'vitest';
import { createSimulatedFleet, RECEPTION_DELAY_MAX_US, type SimulatorOptions } from '../agent/simulator';
import type { SourceOutput } from '../agent/source';
import { nowMicros } from '../proto/time';
import { FlightState, GpsFix, type TelemetryPoint } from '../proto/types';
import { invalidReason } from '../proto/validate';

const HOME = { lat: 47.3769, lon: 8.5417, altM: 408 };
const T0_US = Date.UTC(2025, 0, 1) * 1000;
const MAX_SKEW_US = 60e6;

class Collector implements SourceOutput {
  readonly points: TelemetryPoint[] = [];
  private open = true;
  /** When a source last found this output refusing points (microseconds). */
  lastRefusedUs = 0;
  get accepting(): boolean {
    if (!this.open) this.lastRefusedUs = nowMicros();
    return this.open;
  }
  set accepting(open: boolean) {
    this.open = open;
  }
  emit(point: TelemetryPoint): void {
    // A source's point is ours only during the call (agent/source.ts): kept, it is copied.
    this.points.push({ ...point });
  }
  async flush(): Promise<void> {}
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function until(cond: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond() && performance.now() < deadline) await sleep(10);
}

/** A clock that moves `stepUs` per call, so each tick flies that much simulated time. */
function steppingClock(stepUs: number): { clock: () => number; now: () => number } {
  let t = T0_US;
  return { clock: () => (t += stepUs), now: () => t };
}

/** Distinct first seqs per drone, so a mix-up between drones shows. */
const firstSeq = (id: string) => Number(id.slice(-4)) * 1000 + 7;

function options(overrides: Partial<SimulatorOptions>): SimulatorOptions {
  return { gatewayId: 'gw-test', drones: 20, hz: 10, seed: 42, firstSeq, home: HOME, ...overrides };
}

function byDrone(points: readonly TelemetryPoint[]): Map<string, TelemetryPoint[]> {
  const m = new Map<string, TelemetryPoint[]>();
  for (const p of points) {
    const list = m.get(p.drone_id);
    if (list) list.push(p);
    else m.set(p.drone_id, [p]);
  }
  return m;
}

/** Rule breaks of a collected run: invalid points, seq gaps, non-increasing ts. */
function streamProblems(points: readonly TelemetryPoint[], nowUs: number): string[] {
  const problems: string[] = [];
  for (const p of points) {
    const reason = invalidReason(p, nowUs, MAX_SKEW_US);
    if (reason !== null) problems.push(`${reason}: ${JSON.stringify(p)}`);
  }
  for (const [id, ps] of byDrone(points)) {
    if (ps[0]?.seq !== firstSeq(id)) problems.push(`${id} starts at seq ${ps[0]?.seq}`);
    for (let i = 1; i < ps.length; i++) {
      const a = ps[i - 1]!;
      const b = ps[i]!;
      if (b.seq !== a.seq + 1) problems.push(`${id} seq ${a.seq} -> ${b.seq}`);
      if (!(b.ts > a.ts)) problems.push(`${id} ts ${a.ts} -> ${b.ts}`);
    }
  }
  return problems;
}

const NEXT_STATE: ReadonlyMap<number, number> = new Map([
  [FlightState.idle, FlightState.takeoff],
  [FlightState.takeoff, FlightState.cruise],
  [FlightState.cruise, FlightState.delivering],
  [FlightState.delivering, FlightState.returning],
  [FlightState.returning, FlightState.landing],
  [FlightState.landing, FlightState.landed],
  [FlightState.landed, FlightState.idle],
]);

/** Breaks of physical and semantic plausibility along one drone's points. */
function flightProblems(id: string, ps: readonly TelemetryPoint[]): string[] {
  const problems: string[] = [];
  const missionPattern = new RegExp(`^M-${id}-(\\d+)$`);
  let lastMission = 0;
  for (let i = 0; i < ps.length; i++) {
    const p = ps[i]!;
    const at = `${id} #${i} ${JSON.stringify(p)}`;
    const onMission = p.flight_state !== FlightState.idle && p.flight_state !== FlightState.landed;
    if (onMission) {
      const n = Number(missionPattern.exec(p.mission_id ?? '')?.[1]);
      const continues = n === lastMission || lastMission === 0;
      if (!Number.isInteger(n) || !(continues || (n === lastMission + 1 && p.flight_state === FlightState.takeoff))) {
        problems.push(`mission id: ${at}`);
      }
      lastMission = n;
    } else if (p.mission_id != null) problems.push(`mission id while on the ground: ${at}`);
    if (p.armed !== onMission) problems.push(`armed: ${at}`);

    const battery = p.battery_pct ?? NaN;
    if (!(battery >= 0 && battery <= 100)) problems.push(`battery: ${at}`);
    const volts = p.battery_voltage_v ?? NaN;
    if (!(volts >= 19.5 && volts <= 25.5)) problems.push(`voltage: ${at}`);
    const heading = p.heading_deg ?? NaN;
    if (!(heading >= 0 && heading < 360)) problems.push(`heading: ${at}`);
    const rel = p.rel_alt_m ?? NaN;
    if (!(rel >= -0.5 && rel <= 121)) problems.push(`rel alt: ${at}`);
    if (Math.abs((p.alt_m ?? NaN) - (HOME.altM + rel)) > 1e-9) problems.push(`alt: ${at}`);
    if (!(Math.abs(p.vertical_speed_mps ?? NaN) <= 3.2)) problems.push(`vertical speed: ${at}`);

    // A drone without a fix knows neither where it is nor how fast it moves.
    const sats = p.satellites ?? NaN;
    if (p.gps_fix === GpsFix.none) {
      if (p.lat != null || p.lon != null || p.ground_speed_mps != null || !(sats < 4)) problems.push(`no fix: ${at}`);
      if (p.flight_state !== FlightState.idle) problems.push(`no fix in flight: ${at}`);
    } else {
      if (p.lat == null || p.lon == null || p.ground_speed_mps == null) problems.push(`fix without position: ${at}`);
      if (!(sats >= 6 && sats <= 20)) problems.push(`satellites: ${at}`);
      if (!((p.ground_speed_mps ?? NaN) <= 18.5)) problems.push(`ground speed: ${at}`);
      const north = ((p.lat ?? NaN) - HOME.lat) * 111_320;
      const east = ((p.lon ?? NaN) - HOME.lon) * 111_320 * Math.cos((HOME.lat * Math.PI) / 180);
      if (!(Math.hypot(north, east) <= 8100)) problems.push(`too far from the depot: ${at}`);
    }

    if (i === 0) continue;
    const q = ps[i - 1]!;
    const dt = (p.ts - q.ts) / 1e6;
    if (p.flight_state !== q.flight_state && NEXT_STATE.get(q.flight_state ?? 0) !== p.flight_state) {
      problems.push(`state ${q.flight_state} -> ${p.flight_state}: ${at}`);
    }
    if ((p.battery_pct ?? 0) > (q.battery_pct ?? 0) && p.flight_state !== FlightState.idle) {
      problems.push(`battery rose in flight: ${at}`);
    }
    if (p.lat != null && p.lon != null && q.lat != null && q.lon != null) {
      const north = (p.lat - q.lat) * 111_320;
      const east = (p.lon - q.lon) * 111_320 * Math.cos((HOME.lat * Math.PI) / 180);
      // Cruise tops out at 18 m/s; the rest is GPS error moving between fixes.
      if (!(Math.hypot(north, east) <= 18 * dt + 15)) problems.push(`jumped ${Math.hypot(north, east)} m in ${dt} s: ${at}`);
    }
  }
  return problems;
}

describe('simulated fleet', () => {
  it('emits valid points at the configured rate, seq +1 from firstSeq and ts increasing per drone', async () => {
    const out = new Collector();
    const fleet = createSimulatedFleet(options({ drones: 20, hz: 10 }));
    const startUs = nowMicros();
    const t0 = performance.now();
    fleet.start(out);
    await until(() => fleet.generated >= 200, 5000);
    const elapsedS = (performance.now() - t0) / 1000;
    const generated = fleet.generated;
    await fleet.stop();

    const expected = 20 * 10 * elapsedS;
    expect(Math.abs(generated - expected)).toBeLessThanOrEqual(0.15 * expected);
    expect(out.points.length).toBe(generated);

    const endUs = nowMicros();
    expect(streamProblems(out.points, endUs)).toEqual([]);
    const ids = [...byDrone(out.points).keys()].sort();
    expect(ids).toEqual(Array.from({ length: 20 }, (_, i) => `gw-test-d${String(i + 1).padStart(4, '0')}`));
    // A point's ts is its sample time plus the reception jitter, at most
    // RECEPTION_DELAY_MAX_US: the last samples before the stop may carry a ts that much past it.
    for (const p of out.points) {
      expect(p.ts).toBeGreaterThanOrEqual(startUs);
      expect(p.ts).toBeLessThanOrEqual(endUs + RECEPTION_DELAY_MAX_US);
    }
  });

  it('emits nothing once stop() resolves', async () => {
    const out = new Collector();
    const fleet = createSimulatedFleet(options({ drones: 20, hz: 100 }));
    fleet.start(out);
    await until(() => fleet.generated > 0, 2000);
    await fleet.stop();
    const stoppedAt = fleet.generated;
    expect(stoppedAt).toBeGreaterThan(0);
    await sleep(100);
    expect(fleet.generated).toBe(stoppedAt);
    await sleep(100);
    expect(fleet.generated).toBe(stoppedAt);
    expect(out.points.length).toBe(stoppedAt);
  });

  it('drops the points owed while not accepting and resumes without a seq gap or a burst', async () => {
    const out = new Collector();
    const fleet = createSimulatedFleet(options({ drones: 20, hz: 20 }));
    fleet.start(out);
    await until(() => fleet.generated >= 100, 3000);

    out.accepting = false;
    const pausedUs = nowMicros();
    const pausedCount = fleet.generated;
    await sleep(300);
    expect(fleet.generated).toBe(pausedCount);
    out.accepting = true;
    const resumedUs = nowMicros();

    const perDrone = (n: number) => () => [...byDrone(out.points.slice(pausedCount)).values()].filter((ps) => ps.length >= n).length === 20;
    await until(perDrone(3), 3000);
    await fleet.stop();

    expect(streamProblems(out.points, nowMicros())).toEqual([]);
    expect(perDrone(3)()).toBe(true);
    // The slots the fleet found refused are dropped: the first point after them falls due
    // after the last tick that saw the pause (one 50 ms period of slack: that tick read its
    // clock a moment before asking). A point timed between would be a burst of owed
    // points. Ticks run late on a loaded machine, so the bound is that tick, not the resume.
    // A point sampled just before the pause is received up to the reception delay later.
    expect(out.lastRefusedUs).toBeGreaterThan(pausedUs);
    expect(out.lastRefusedUs).toBeLessThan(resumedUs);
    const inPause = out.points.filter((p) => p.ts > pausedUs + RECEPTION_DELAY_MAX_US && p.ts < out.lastRefusedUs - 50_000);
    expect(inPause).toEqual([]);
  });

  it('flies whole delivery missions that make physical sense', async () => {
    const out = new Collector();
    const { clock, now } = steppingClock(120e6);
    const fleet = createSimulatedFleet(options({ drones: 6, hz: 1, clock, maxBacklogMs: Number.POSITIVE_INFINITY }));
    const allStates = [...NEXT_STATE.keys()];
    const flewWholeMissions = () => {
      const streams = byDrone(out.points);
      if (streams.size < 6) return false;
      for (const ps of streams.values()) {
        const seen = new Set(ps.map((p) => p.flight_state));
        if (!allStates.every((s) => seen.has(s))) return false;
        // and at least one mission seen from takeoff to touchdown
        const takeoff = ps.findIndex((p) => p.flight_state === FlightState.takeoff);
        if (takeoff < 0 || !ps.slice(takeoff).some((p) => p.flight_state === FlightState.landed)) return false;
      }
      return true;
    };
    fleet.start(out);
    await until(flewWholeMissions, 8000);
    await fleet.stop();

    expect(flewWholeMissions()).toBe(true);
    expect(streamProblems(out.points, now())).toEqual([]);
    for (const [id, ps] of byDrone(out.points)) expect(flightProblems(id, ps)).toEqual([]);

    // Each completed mission should cost a believable share of the battery.
    const costs: number[] = [];
    for (const ps of byDrone(out.points).values()) {
      const byMission = new Map<string, TelemetryPoint[]>();
      for (const p of ps) if (p.mission_id != null) byMission.set(p.mission_id, [...(byMission.get(p.mission_id) ?? []), p]);
      for (const mps of byMission.values()) {
        const first = mps[0]!;
        const last = mps[mps.length - 1]!;
        if (first.flight_state === FlightState.takeoff && last.flight_state === FlightState.landing) {
          costs.push((first.battery_pct ?? 0) - (last.battery_pct ?? 0));
        }
      }
    }
    expect(costs.length).toBeGreaterThan(0);
    expect(costs.filter((c) => !(c > 5 && c < 55))).toEqual([]);
  });

  it('staggers drones so a 15-second run of the fleet shows many flight states', async () => {
    const out = new Collector();
    const { clock } = steppingClock(15e6);
    const fleet = createSimulatedFleet(options({ drones: 100, hz: 1, clock, maxBacklogMs: Number.POSITIVE_INFINITY }));
    fleet.start(out);
    await until(() => fleet.generated >= 100 * 14, 3000);
    await fleet.stop();

    const states = new Set(out.points.map((p) => p.flight_state));
    const changed = [...byDrone(out.points).values()].filter((ps) => new Set(ps.map((p) => p.flight_state)).size > 1);
    console.log(`simulator: 15 s of 100 drones show ${states.size} states; ${changed.length} drones changed state`);
    expect(states.size).toBeGreaterThanOrEqual(4);
    expect(changed.length).toBeGreaterThan(0);
  });

  it('samples points 1/hz apart at fractional rates, each received a few ms later', async () => {
    const out = new Collector();
    const { clock, now } = steppingClock(10e6);
    const fleet = createSimulatedFleet(options({ drones: 3, hz: 0.5, clock, maxBacklogMs: Number.POSITIVE_INFINITY }));
    fleet.start(out);
    await until(() => fleet.generated >= 30, 3000);
    await fleet.stop();

    expect(streamProblems(out.points, now())).toEqual([]);
    const gaps = new Set<number>();
    for (const ps of byDrone(out.points).values()) for (let i = 1; i < ps.length; i++) gaps.add(ps[i]!.ts - ps[i - 1]!.ts);
    // Samples are 2 s apart; reception delays of 2 ms and up jitter the gaps within the cap.
    for (const gap of gaps) expect(Math.abs(gap - 2e6)).toBeLessThanOrEqual(RECEPTION_DELAY_MAX_US);
    expect(gaps.size).toBeGreaterThan(1);
  });

  it('jitters reception at high rates too, the delays scaled under the cap of 0.4 sample periods', async () => {
    const out = new Collector();
    const { clock, now } = steppingClock(50_000);
    const fleet = createSimulatedFleet(options({ drones: 3, hz: 500, clock, maxBacklogMs: Number.POSITIVE_INFINITY }));
    fleet.start(out);
    await until(() => fleet.generated >= 3_000, 3000);
    await fleet.stop();

    expect(streamProblems(out.points, now())).toEqual([]);
    const gaps: number[] = [];
    for (const ps of byDrone(out.points).values()) for (let i = 1; i < ps.length; i++) gaps.push(ps[i]!.ts - ps[i - 1]!.ts);
    // Samples 2,000 us apart, each received under 800 us later: gaps within 2,000 ± 800, and
    // many of them, not one constant delay.
    expect(Math.max(...gaps.map((gap) => Math.abs(gap - 2000)))).toBeLessThan(800);
    expect(new Set(gaps).size).toBeGreaterThan(100);
  });

  it('sends values as MAVLink quantizes them: degE7, mm, cm/s, cdeg, whole percent, mV', async () => {
    const out = new Collector();
    const { clock } = steppingClock(30e6);
    const fleet = createSimulatedFleet(options({ drones: 20, hz: 2, clock, maxBacklogMs: Number.POSITIVE_INFINITY }));
    fleet.start(out);
    await until(() => fleet.generated >= 5000, 5000);
    await fleet.stop();
    expect(out.points.length).toBeGreaterThanOrEqual(5000);

    // x is a whole number of 1/scale units, exactly as the integer divided by scale.
    const onGrid = (x: number | null | undefined, scale: number) => x == null || Math.round(x * scale) / scale === x;
    const off: string[] = [];
    const grids: Array<[keyof TelemetryPoint, number]> = [
      ['lat', 1e7],
      ['lon', 1e7],
      ['alt_m', 1e3],
      ['rel_alt_m', 1e3],
      ['ground_speed_mps', 1e2],
      ['vertical_speed_mps', 1e2],
      ['heading_deg', 1e2],
      ['battery_pct', 1],
      ['battery_voltage_v', 1e3],
    ];
    for (const p of out.points) {
      for (const [field, scale] of grids) if (!onGrid(p[field] as number | null, scale)) off.push(`${field} ${String(p[field])}`);
      // An autopilot's integers have no -0.
      if (Object.is(p.vertical_speed_mps, -0)) off.push('vertical_speed_mps -0');
      if (Object.is(p.rel_alt_m, -0)) off.push('rel_alt_m -0');
    }
    expect(off.slice(0, 5)).toEqual([]);
    // Quantized, not constant: the values still move.
    expect(new Set(out.points.map((p) => p.lat)).size).toBeGreaterThan(1000);
    expect(new Set(out.points.map((p) => p.battery_voltage_v)).size).toBeGreaterThan(100);
  });

  it('replays the same fleet from the same seed', async () => {
    const run = async (seed: number | undefined) => {
      const out = new Collector();
      const fleet = createSimulatedFleet(options({ drones: 5, hz: 2, seed, clock: steppingClock(10e6).clock, maxBacklogMs: Number.POSITIVE_INFINITY }));
      fleet.start(out);
      await until(() => fleet.generated >= 300, 3000);
      await fleet.stop();
      return out.points.slice(0, 300);
    };
    const a = await run(7);
    expect(a.length).toBe(300);
    expect(await run(7)).toEqual(a);
    expect(await run(8)).not.toEqual(a);
    // Without a seed, the gateway id picks one.
    expect(await run(undefined)).toEqual(await run(undefined));
  });

  it('rejects options that would produce invalid points', () => {
    expect(() => createSimulatedFleet(options({ drones: 0 }))).toThrow(RangeError);
    expect(() => createSimulatedFleet(options({ drones: 10_000 }))).toThrow(RangeError);
    expect(() => createSimulatedFleet(options({ hz: 0 }))).toThrow(RangeError);
    expect(() => createSimulatedFleet(options({ hz: Number.NaN }))).toThrow(RangeError);
    expect(() => createSimulatedFleet(options({ gatewayId: 'gw/bad' }))).toThrow(RangeError);
    expect(() => createSimulatedFleet(options({ home: { lat: 89, lon: 0, altM: 0 } }))).toThrow(RangeError);
    const fleet = createSimulatedFleet(options({ firstSeq: () => -1 }));
    expect(() => fleet.start(new Collector())).toThrow(RangeError);
  });
});

describe('a saturated process', () => {
  it('catches up on at most maxBacklogMs of points per drone when a tick runs late', async () => {
    const points: TelemetryPoint[] = [];
    // Every tick sees 10 s pass: far later than the default backlog of 200 ms allows.
    const fleet = createSimulatedFleet(options({ drones: 4, hz: 100, clock: steppingClock(10e6).clock }));
    fleet.start({ accepting: true, emit: (p) => points.push({ ...p }), flush: async () => undefined });
    await until(() => points.length >= 400, 5000);
    await fleet.stop();
    expect(points.length).toBeGreaterThanOrEqual(400);
    for (const [id, ps] of byDrone(points)) {
      // A tick's points are sampled 10 ms apart and received up to 4 ms (0.4 of a sample
      // period at 100 Hz) after that; between ticks the skipped slots show as a jump.
      let run = 1;
      for (let i = 1; i < ps.length; i++) {
        const gap = ps[i]!.ts - ps[i - 1]!.ts;
        expect(ps[i]!.seq - ps[i - 1]!.seq, id).toBe(1);
        if (gap <= 14_001) run++;
        else {
          expect(gap).toBeGreaterThan(9_000_000);
          run = 1;
        }
        // 200 ms at 100 Hz, plus the slot the tick is in.
        expect(run).toBeLessThanOrEqual(21);
      }
    }
  });
});
