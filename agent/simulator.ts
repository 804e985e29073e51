import { nowMicros } from '../proto/time';
import { ID_PATTERN } from '../proto/topics';
import { FlightState, GpsFix, type TelemetryPoint } from '../proto/types';
import type { Source, SourceOutput } from './source';

export interface SimulatorOptions {
  /** Drone ids are `${gatewayId}-d0001` and up. */
  gatewayId: string;
  drones: number;
  /** Points per second per drone; fractional rates are fine. */
  hz: number;
  /** Seed of the fleet's PRNG; defaults to a hash of gatewayId, so a gateway replays the same fleet. */
  seed?: number;
  /** The seq of the first point a drone emits; later points count up by one. */
  firstSeq: (droneId: string) => number;
  /** The depot every drone flies from and back to. */
  home?: { lat: number; lon: number; altM: number };
  /** Wall clock in microseconds since the epoch. */
  clock?: () => number;
  /**
   * Points a late tick may catch up on, in milliseconds of each drone's time; older slots
   * are skipped. Infinity suits a fast fake clock that is meant to generate a backlog.
   */
  maxBacklogMs?: number;
}

// Ticks this often so a drone at 100 Hz owes only a handful of points per tick.
const TICK_MS = 50;
const DEFAULT_MAX_BACKLOG_MS = 4 * TICK_MS;
const MAX_DRONES = 9999; // ids carry a 4-digit number
const MAX_HZ = 1000; // well above any telemetry link, far below the 1 µs ts resolution
// Flights reach 8 km plus the pad grid from home; these bounds keep every fix inside WGS84 ranges.
const MAX_HOME_ABS_LAT = 80;
const MAX_HOME_ABS_LON = 179;
const DEFAULT_HOME = { lat: 47.3769, lon: 8.5417, altM: 408 };

const M_PER_DEG_LAT = 111_320;
const PAD_SPACING_M = 6;
const CLIMB_MPS = 3;
const DESCEND_MPS = 2;
const MIN_DROP_M = 1000;
const MAX_DROP_M = 8000;
// A drone starts somewhere in its cycle; the longest cycle (8 km each way at 12 m/s) is ~28 min.
const WARMUP_MAX_S = 1800;

// Battery drain in percent per second. Hovering and climbing draw the most current; a
// mission of 1-8 km uses about 10-50 %, 25 % on average.
const DRAIN_CLIMB = 0.09;
const DRAIN_HOVER = 0.075;
const DRAIN_DESCEND = 0.06;
const DRAIN_LAND = 0.05;
const DRAIN_CRUISE_BASE = 0.016;
const DRAIN_CRUISE_PER_MPS = 0.0008;
// The longest mission uses ~50 %, so charging below 60 % lands every flight with 10 % left.
const RECHARGE_BELOW_PCT = 60;
// Time-compressed so a charge takes about a minute instead of an hour.
const CHARGE_PCT_PER_S = 1;
// Pack voltage drops under load by this many volts per cell per %/s of drain.
const SAG_V_PER_DRAIN = 1;
const CELLS = 6;

// Spread of the velocity noise per axis, m/s.
const GS_NOISE_MPS = 0.4;
// A packet reaches the gateway a little after the autopilot sent it (radio, serial link,
// router): at least the minimum, plus an exponential tail, capped below the sample period so
// reception keeps the send order. A point's ts is when the agent received it. Past 16 Hz the
// cap (0.4 sample periods) falls under 25 ms, and the whole distribution shrinks with it: cut
// at the cap alone, every delay at 500 Hz was the cap, and the times had no jitter at all.
const RECEPTION_DELAY_MIN_US = 2000;
const RECEPTION_DELAY_MEAN_US = 3000;
/** The most a point's ts lies after its sample time. */
export const RECEPTION_DELAY_MAX_US = 25_000;

const FIX_CHANGE_MEAN_S = 60;
const SAT_CHANGE_MEAN_S = 8;
// GPS error wanders rather than jumping from point to point; this is its correlation time.
const GPS_ERR_TAU_S = 20;
const SQRT3 = Math.sqrt(3);

interface FixProfile {
  readonly fix: GpsFix;
  /** Cumulative probability: a uniform draw below it picks this profile. */
  readonly upTo: number;
  readonly satMin: number;
  readonly satMax: number;
  /** Standard deviation of the horizontal error, metres. */
  readonly errM: number;
}

const RTK_FIXED: FixProfile = { fix: GpsFix.rtkFixed, upTo: 1, satMin: 14, satMax: 20, errM: 0.02 };
const FIX_PROFILES: readonly FixProfile[] = [
  { fix: GpsFix.fix2d, upTo: 0.02, satMin: 6, satMax: 7, errM: 4 },
  { fix: GpsFix.fix3d, upTo: 0.72, satMin: 8, satMax: 15, errM: 1.5 },
  { fix: GpsFix.dgps, upTo: 0.84, satMin: 10, satMax: 17, errM: 0.6 },
  { fix: GpsFix.rtkFloat, upTo: 0.92, satMin: 12, satMax: 19, errM: 0.25 },
  RTK_FIXED,
];

function pickFix(r: number): FixProfile {
  for (const p of FIX_PROFILES) if (r < p.upTo) return p;
  return RTK_FIXED;
}

/** Finer steps of a mission than FlightState names; each maps to one FlightState. */
const Stage = {
  charging: 0,
  idle: 1,
  takeoff: 2,
  cruise: 3,
  dropDescend: 4,
  dropHover: 5,
  dropClimb: 6,
  returning: 7,
  landing: 8,
  landed: 9,
} as const;
type Stage = (typeof Stage)[keyof typeof Stage];

interface Home {
  readonly lat: number;
  readonly lon: number;
  /** The home altitude in whole mm, so that alt_m is home plus rel_alt_m exactly, as an autopilot reports them. */
  readonly altMm: number;
  readonly mPerDegLon: number;
}

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/**
 * A heading in whole centidegrees, 0..35999. The heading stays within a few degrees of
 * 0..360, so the centidegrees fit 32 bits, where `%` is an integer remainder rather than
 * the floating-point one (a call, and a visible part of the simulator's CPU). It takes
 * them rounded but not yet wrapped, an int32, which a call passes without a heap number
 * (Drone.dtS).
 */
function headingCdeg(rounded: number): number {
  const cdeg = rounded % 36000;
  return cdeg < 0 ? cdeg + 36000 : cdeg;
}

/**
 * A drone's point while it has a GPS fix, and (NoFixPoint) while it has none. Classes of
 * their own, so that V8 gives each its own shape: the fields of one stay numbers, those of
 * the other null (Drone.next says why).
 */
class FixPoint implements TelemetryPoint {
  seq = 0;
  ts = 0;
  lat: number | null = 0;
  lon: number | null = 0;
  alt_m = 0;
  rel_alt_m = 0;
  ground_speed_mps: number | null = 0;
  vertical_speed_mps = 0;
  heading_deg = 0;
  battery_pct = 0;
  battery_voltage_v = 0;
  gps_fix: GpsFix = GpsFix.none;
  satellites = 0;
  flight_state: FlightState = FlightState.idle;
  armed = false;
  mission_id: string | null = null;
  constructor(readonly drone_id: string) {}
}

class NoFixPoint extends FixPoint {
  override lat = null;
  override lon = null;
  override ground_speed_mps = null;
}

/** bits() / 2^30: uniform in [0, 1). */
const UNIT = 2 ** -30;
/** A tenth of bits(), times this: uniform in [0, 1) on 1,024 steps, finer than the grid any noise below lands on. */
const TEN_BITS = 2 ** -10;
/** ln(1 + i / 256): the reception delay's logarithm, between two entries on a straight line (error under 2e-6). */
const LN_TABLE = Float64Array.from({ length: 257 }, (_, i) => Math.log(1 + i / 256));

/** When a fleet's sample slots fall due: slot n of a drone at (n - its offset) periods after the start. */
interface Schedule {
  /** When the fleet (re)started, clock microseconds. */
  startUs: number;
  /** Sample periods per microsecond. */
  readonly hzPerUs: number;
}

/** One drone: a mission state machine moved by elapsed time, and the sensors that report it. */
class Drone {
  // Every number field starts as a number. A field declared without one is defined as
  // undefined first (ES2022 class fields), and V8 then keeps it as a tagged field, where
  // each store of a double (or of an int32 past 2^30, as rng's) allocates a heap number:
  // advance() alone allocated 63 of the simulator's 184 bytes a point, for x, y, pct and left.
  /** Where in a sample period this drone reports, so drones do not all share one microsecond. */
  readonly offset: number = 0;
  /** Sample slots that fell due since start, whether emitted or skipped while the agent was full. */
  slots = 0;
  seq = 0;
  /** Sample time of the last point; the physics has advanced up to here. */
  lastUs = 0;
  /** Reception time (ts) of the last point. */
  private lastTs = 0;
  /**
   * Seconds since the last point, which advance() and sense() move by: read from a field,
   * since a double passed to a call V8 does not inline is a heap number made per point
   * (with headingCdeg's, 16 of the agent's 180 bytes a point).
   */
  private dtS = 0;

  private rng = 0;
  private stage: Stage = Stage.idle;
  private state: FlightState = FlightState.idle;
  /** Seconds until the current stage ends. */
  private left = 0;
  // Metres east and north of home, metres above home, and their rates of change.
  private x = 0;
  private y = 0;
  private rel = 0;
  private vx = 0;
  private vy = 0;
  private vs = 0;
  private heading = 0;
  private pct = 0;
  /** Percent per second; negative while charging. */
  private drain = 0;
  private chargeTo = 0;

  private missions = 0;
  private missionId: string | null = null;
  private cruiseAlt = 0;
  private speed = 0;
  private dropX = 0;
  private dropY = 0;
  private dropAlt = 0;
  private hoverS = 0;

  private gps: FixProfile;
  private sats = 0;
  private errX = 0;
  private errY = 0;
  // The GPS error's last step (sense()): its length and fix, and the decay and kick they give.
  private stepDt = 0;
  private stepGps: FixProfile | null = null;
  private stepDecay = 0;
  private stepKick = 0;
  /**
   * The point next() fills and returns, the same object every time: a source's point is
   * the consumer's only during emit (agent/source.ts). A fresh object per point made the
   * simulator 0.35 CPU-us a point where this takes 0.27-0.31 (3,000 drones at 500 Hz).
   * Two of them: one with a fix, whose lat, lon and ground speed are always numbers, and
   * one without, where they are always null. V8 keeps a field that only ever held
   * numbers as a double in place; one field that took both null and numbers stored each
   * number as a new heap number, three a point.
   */
  private readonly outdoor: TelemetryPoint;
  private readonly indoor: TelemetryPoint;

  constructor(
    readonly id: string,
    seed: number,
    private readonly padX: number,
    private readonly padY: number,
    private readonly home: Home,
    /** The reception delay's scale: 1, or less at high rates, where its cap is under RECEPTION_DELAY_MAX_US. */
    private readonly delayScale: number,
    /** The fleet's slots, which every drone shares. */
    private readonly schedule: Schedule,
  ) {
    this.rng = seed;
    this.outdoor = new FixPoint(id);
    this.indoor = new NoFixPoint(id);
    this.offset = this.rand();
    this.x = padX;
    this.y = padY;
    this.heading = this.rand() * 360;
    this.pct = 60 + this.rand() * 40;
    this.left = this.rand() * 15;
    this.gps = pickFix(this.rand());
    this.sats = this.randomSats();
    this.dtS = this.rand() * WARMUP_MAX_S;
    this.advance();
  }

  /**
   * mulberry32 (small, fast and good enough for noise), as an integer below 2^30; times
   * UNIT it is a uniform number in [0, 1). A point's path draws through this, not rand():
   * inside the agent V8 does not inline these calls, and a call returns a double as a new
   * heap number, where an integer below 2^30 comes back as it is. That was nine
   * allocations and 110 bytes a point.
   */
  private bits(): number {
    let t = (this.rng = (this.rng + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 2;
  }

  /** A uniform number in [0, 1), for the paths that run once a mission or stage. */
  private rand(): number {
    return this.bits() * UNIT;
  }

  private randomSats(): number {
    return this.gps.satMin + Math.floor(this.rand() * (this.gps.satMax - this.gps.satMin + 1));
  }

  /**
   * The drone's point for its latest slot, after flying the time since its last one: its
   * one point object, filled anew.
   */
  next(): TelemetryPoint {
    // Each point carries the time its slot fell due, so points stay evenly spaced however
    // late the tick runs. Computed here, not passed in: a double argument to a call is a
    // heap number allocated per point.
    let sampleUs = this.schedule.startUs + Math.floor((this.slots - this.offset) / this.schedule.hzPerUs);
    if (sampleUs <= this.lastUs) sampleUs = this.lastUs + 1;
    const dt = (sampleUs - this.lastUs) / 1e6;
    this.lastUs = sampleUs;
    this.dtS = dt;
    this.advance();
    this.sense();
    // The delay's exponential tail, -ln(u) for u = draw / 2^30 in (0, 1]: the draw is 2^e
    // times a mantissa in [1, 2), whose log comes from LN_TABLE. Math.log was 13 of the
    // simulator's 190 ns a point.
    const draw = 0x40000000 - this.bits();
    const zeros = Math.clz32(draw);
    const frac = (draw << (zeros - 1)) & 0x3fffffff;
    const at = frac >>> 22;
    const lnMantissa = LN_TABLE[at]! + (LN_TABLE[at + 1]! - LN_TABLE[at]!) * (frac & 0x3fffff) * 2 ** -22;
    const delay = RECEPTION_DELAY_MIN_US + ((zeros - 1) * Math.LN2 - lnMantissa) * RECEPTION_DELAY_MEAN_US;
    const ts = Math.max(this.lastTs + 1, sampleUs + Math.floor(Math.min(delay, RECEPTION_DELAY_MAX_US) * this.delayScale));
    this.lastTs = ts;

    // Six noises from two draws, ten bits each: a draw per noise was 14 ns a point more.
    const a = this.bits();
    const b = this.bits();
    // A charging drone sits in the hangar, where GPS sees too few satellites to fix.
    const indoors = this.stage === Stage.charging;
    const x = this.pct / 100;
    const u = 1 - x;
    const cell =
      3.3 +
      0.9 * (0.6 * (1 - u * u * u) + 0.4 * x * x * x) -
      (this.drain > 0 ? this.drain * SAG_V_PER_DRAIN : 0) +
      ((a & 1023) * TEN_BITS - 0.5) * 0.01;
    const heading = this.heading + (((a >>> 10) & 1023) * TEN_BITS - 0.5) * 4;
    // Every value as an autopilot sends it (GLOBAL_POSITION_INT, SYS_STATUS) and the MAVLink
    // source converts it: integers of degE7, mm, cm/s, cdeg, percent and mV, divided exactly.
    // `|| 0`: relative_alt is an int32, which has no -0 (a rounded -0.4 mm would be one).
    const relMm = Math.round((this.rel + ((a >>> 20) * TEN_BITS - 0.5) * 0.3) * 1000) || 0;
    // Ground speed is |(vx, vy)| of the velocity's whole cm/s, rounded to whole cm/s as the
    // MAVLink source computes it (agent/mavlink/telemetry.ts).
    const noise = indoors ? 0 : GS_NOISE_MPS;
    const vNorth = Math.round((this.vy + ((b & 1023) * TEN_BITS - 0.5) * noise) * 100);
    const vEast = Math.round((this.vx + (((b >>> 10) & 1023) * TEN_BITS - 0.5) * noise) * 100);
    const latE7 = Math.round((this.home.lat + (this.y + this.errY) / M_PER_DEG_LAT) * 1e7);
    const lonE7 = Math.round((this.home.lon + (this.x + this.errX) / this.home.mPerDegLon) * 1e7);
    const point = indoors ? this.indoor : this.outdoor;
    point.seq = this.seq++;
    point.ts = ts;
    if (!indoors) {
      point.lat = latE7 / 1e7;
      point.lon = lonE7 / 1e7;
      point.ground_speed_mps = Math.round(Math.sqrt(vNorth * vNorth + vEast * vEast)) / 100;
    }
    point.alt_m = (this.home.altMm + relMm) / 1000;
    point.rel_alt_m = relMm / 1000;
    // `|| 0`: a climb rate that rounds to -0 cm/s is stored as 0, as the MAVLink source does.
    point.vertical_speed_mps = Math.round((this.vs + ((b >>> 20) * TEN_BITS - 0.5) * 0.2) * 100) / 100 || 0;
    point.heading_deg = headingCdeg(Math.round(heading * 100) | 0) / 100;
    point.battery_pct = Math.round(this.pct);
    point.battery_voltage_v = Math.round(CELLS * cell * 1000) / 1000;
    point.gps_fix = indoors ? GpsFix.none : this.gps.fix;
    point.satellites = indoors ? Math.floor(this.bits() * UNIT * 4) : this.sats;
    point.flight_state = this.state;
    point.armed = this.missionId !== null;
    point.mission_id = this.missionId;
    return point;
  }

  /** Moves the GPS along: fix changes now and then, and an error that drifts with a correlation time. */
  private sense(): void {
    const dt = this.dtS;
    if (this.bits() * UNIT < dt / FIX_CHANGE_MEAN_S) {
      this.gps = pickFix(this.bits() * UNIT);
      this.sats = this.randomSats();
    } else if (this.bits() * UNIT < dt / SAT_CHANGE_MEAN_S) {
      const s = this.sats + (this.bits() * UNIT < 0.5 ? -1 : 1);
      if (s >= this.gps.satMin && s <= this.gps.satMax) this.sats = s;
    }
    // Ornstein-Uhlenbeck step: the error's spread stays errM whatever the sample rate. At a
    // steady rate every step has the same length, so its exp and sqrt are computed once per
    // length and fix (the simulator's CPU counts as the agent's in the bench).
    if (dt !== this.stepDt || this.gps !== this.stepGps) {
      const decay = Math.exp(-dt / GPS_ERR_TAU_S);
      this.stepDt = dt;
      this.stepGps = this.gps;
      this.stepDecay = decay;
      this.stepKick = this.gps.errM * Math.sqrt(1 - decay * decay) * SQRT3;
    }
    const decay = this.stepDecay;
    const kick = this.stepKick;
    this.errX = this.errX * decay + kick * (2 * this.bits() * UNIT - 1);
    this.errY = this.errY * decay + kick * (2 * this.bits() * UNIT - 1);
  }

  /** Flies dtS seconds, crossing as many stage boundaries as fall inside them. */
  private advance(): void {
    let dt = this.dtS;
    while (dt > 0) {
      const step = dt < this.left ? dt : this.left;
      this.x += this.vx * step;
      this.y += this.vy * step;
      this.rel += this.vs * step;
      this.pct -= this.drain * step;
      this.left -= step;
      dt -= step;
      if (this.left <= 0) this.nextStage();
    }
  }

  // Each transition snaps position, altitude and charge to the stage's exact end, so
  // rounding in `advance` never accumulates across missions.
  private nextStage(): void {
    switch (this.stage) {
      case Stage.charging:
        this.pct = this.chargeTo;
        this.idle();
        break;
      case Stage.idle:
        this.takeOff();
        break;
      case Stage.takeoff:
        this.rel = this.cruiseAlt;
        this.vs = 0;
        this.stage = Stage.cruise;
        this.state = FlightState.cruise;
        this.flyTo(this.dropX, this.dropY);
        break;
      case Stage.cruise:
        this.arrive(this.dropX, this.dropY);
        this.stage = Stage.dropDescend;
        this.state = FlightState.delivering;
        this.vs = -DESCEND_MPS;
        this.drain = DRAIN_DESCEND;
        this.left = (this.cruiseAlt - this.dropAlt) / DESCEND_MPS;
        break;
      case Stage.dropDescend:
        this.rel = this.dropAlt;
        this.stage = Stage.dropHover;
        this.vs = 0;
        this.drain = DRAIN_HOVER;
        this.left = this.hoverS;
        break;
      case Stage.dropHover:
        this.stage = Stage.dropClimb;
        this.vs = CLIMB_MPS;
        this.drain = DRAIN_CLIMB;
        this.left = (this.cruiseAlt - this.dropAlt) / CLIMB_MPS;
        break;
      case Stage.dropClimb:
        this.rel = this.cruiseAlt;
        this.vs = 0;
        this.stage = Stage.returning;
        this.state = FlightState.returning;
        this.flyTo(this.padX, this.padY);
        break;
      case Stage.returning:
        this.arrive(this.padX, this.padY);
        this.stage = Stage.landing;
        this.state = FlightState.landing;
        this.vs = -DESCEND_MPS;
        this.drain = DRAIN_LAND;
        this.left = this.cruiseAlt / DESCEND_MPS;
        break;
      case Stage.landing:
        this.rel = 0;
        this.vs = 0;
        this.drain = 0;
        this.missionId = null;
        this.stage = Stage.landed;
        this.state = FlightState.landed;
        this.left = 3 + this.rand() * 5;
        break;
      case Stage.landed:
        if (this.pct < RECHARGE_BELOW_PCT) {
          this.chargeTo = 95 + this.rand() * 5;
          this.stage = Stage.charging;
          this.state = FlightState.idle;
          this.drain = -CHARGE_PCT_PER_S;
          this.left = (this.chargeTo - this.pct) / CHARGE_PCT_PER_S;
        } else {
          this.idle();
        }
        break;
    }
  }

  private idle(): void {
    this.stage = Stage.idle;
    this.state = FlightState.idle;
    this.drain = 0;
    // Loading the parcel and preflight checks.
    this.left = 10 + this.rand() * 30;
  }

  private takeOff(): void {
    this.missions++;
    this.missionId = `M-${this.id}-${this.missions}`;
    this.cruiseAlt = 60 + this.rand() * 60;
    this.speed = 12 + this.rand() * 6;
    const dist = MIN_DROP_M + this.rand() * (MAX_DROP_M - MIN_DROP_M);
    const bearing = this.rand() * 2 * Math.PI;
    this.dropX = this.padX + dist * Math.sin(bearing);
    this.dropY = this.padY + dist * Math.cos(bearing);
    this.dropAlt = 10 + this.rand() * 10;
    this.hoverS = 10 + this.rand() * 20;
    this.stage = Stage.takeoff;
    this.state = FlightState.takeoff;
    this.vs = CLIMB_MPS;
    this.drain = DRAIN_CLIMB;
    this.left = this.cruiseAlt / CLIMB_MPS;
  }

  /** Starts a straight leg at cruise speed; every leg is at least a kilometre long. */
  private flyTo(tx: number, ty: number): void {
    const dx = tx - this.x;
    const dy = ty - this.y;
    const dist = Math.sqrt(dx * dx + dy * dy);
    this.vx = (dx / dist) * this.speed;
    this.vy = (dy / dist) * this.speed;
    this.heading = ((Math.atan2(dx, dy) * 180) / Math.PI + 360) % 360;
    this.drain = DRAIN_CRUISE_BASE + DRAIN_CRUISE_PER_MPS * this.speed;
    this.left = dist / this.speed;
  }

  private arrive(x: number, y: number): void {
    this.x = x;
    this.y = y;
    this.vx = 0;
    this.vy = 0;
  }
}

class SimulatedFleet implements Source {
  readonly name = 'simulator';
  private readonly drones: Drone[] = [];
  private readonly schedule: Schedule;
  private readonly maxBacklogUs: number;
  private readonly clock: () => number;
  private readonly firstSeq: (droneId: string) => number;
  private out: SourceOutput | null = null;
  private timer: NodeJS.Timeout | undefined;
  private count = 0;

  constructor(opts: SimulatorOptions) {
    const { gatewayId, drones, hz } = opts;
    if (!Number.isInteger(drones) || drones < 1 || drones > MAX_DRONES) {
      throw new RangeError(`drones must be an integer in 1..${MAX_DRONES}, got ${drones}`);
    }
    if (!(hz > 0 && hz <= MAX_HZ)) throw new RangeError(`hz must be in (0, ${MAX_HZ}], got ${hz}`);
    const h = opts.home ?? DEFAULT_HOME;
    if (!(Math.abs(h.lat) <= MAX_HOME_ABS_LAT && Math.abs(h.lon) <= MAX_HOME_ABS_LON && Number.isFinite(h.altM))) {
      throw new RangeError(`home must lie within ±${MAX_HOME_ABS_LAT}° lat and ±${MAX_HOME_ABS_LON}° lon`);
    }
    const home: Home = { lat: h.lat, lon: h.lon, altMm: Math.round(h.altM * 1000), mPerDegLon: M_PER_DEG_LAT * Math.cos((h.lat * Math.PI) / 180) };
    this.schedule = { startUs: 0, hzPerUs: hz / 1e6 };
    this.maxBacklogUs = (opts.maxBacklogMs ?? DEFAULT_MAX_BACKLOG_MS) * 1000;
    this.clock = opts.clock ?? nowMicros;
    this.firstSeq = opts.firstSeq;

    // At high rates the delay stays under half a sample period.
    const delayScale = Math.min(1, 0.4e6 / hz / RECEPTION_DELAY_MAX_US);
    const seed = opts.seed ?? fnv1a(gatewayId);
    const cols = Math.ceil(Math.sqrt(drones));
    for (let i = 0; i < drones; i++) {
      const id = `${gatewayId}-d${String(i + 1).padStart(4, '0')}`;
      if (!ID_PATTERN.test(id)) throw new RangeError(`gatewayId ${JSON.stringify(gatewayId)} makes invalid drone id ${id}`);
      const droneSeed = fnv1a(`${seed}:${i}`);
      const padX = (i % cols) * PAD_SPACING_M;
      const padY = Math.floor(i / cols) * PAD_SPACING_M;
      this.drones.push(new Drone(id, droneSeed, padX, padY, home, delayScale, this.schedule));
    }
  }

  get generated(): number {
    return this.count;
  }

  start(out: SourceOutput): void {
    if (this.out !== null) throw new Error('simulator already started');
    // Read at start, not construction, so an agent can restore its spool's seqs in between.
    for (const d of this.drones) {
      const seq = this.firstSeq(d.id);
      if (!Number.isSafeInteger(seq) || seq < 0) throw new RangeError(`firstSeq(${d.id}) gave ${seq}`);
      d.seq = seq;
    }
    const startUs = (this.schedule.startUs = this.clock());
    for (const d of this.drones) {
      d.slots = 0;
      // A restart resumes the flight where it stopped rather than flying through the pause.
      d.lastUs = Math.max(d.lastUs, startUs);
    }
    this.out = out;
    this.timer = setInterval(() => this.tick(), TICK_MS);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    this.out = null;
  }

  private tick(): void {
    const out = this.out;
    if (out === null) return;
    const now = this.clock();
    const periods = (now - this.schedule.startUs) * this.schedule.hzPerUs;
    // A drone owes at most maxBacklogMs of points. A tick that runs late because
    // the process is saturated then costs bounded work instead of a burst that grows
    // with the delay; like a paused source, the skipped slots are dropped, not deferred.
    const maxOwed = Math.ceil(this.maxBacklogUs * this.schedule.hzPerUs);
    for (const d of this.drones) {
      const due = Math.floor(periods + d.offset);
      if (!out.accepting) {
        // The owed points are dropped, not deferred: the next points carry later times.
        d.slots = Math.max(d.slots, due);
        continue;
      }
      d.slots = Math.max(d.slots, due - maxOwed);
      // Re-checks `out` because emit may call stop().
      while (d.slots < due && this.out === out) {
        d.slots++;
        out.emit(d.next());
        this.count++;
      }
    }
  }
}

/** A simulated fleet of delivery drones flying missions from one depot. */
export function createSimulatedFleet(opts: SimulatorOptions): Source & { readonly generated: number } {
  return new SimulatedFleet(opts);
}
