// TypeScript view of telemetry.proto. test/contract.test.ts checks that it and the
// .proto file name the same fields.

/** Values of the GpsFix enum; they equal MAVLink's GPS_FIX_TYPE. */
export const GpsFix = {
  unspecified: 0,
  none: 1,
  fix2d: 2,
  fix3d: 3,
  dgps: 4,
  rtkFloat: 5,
  rtkFixed: 6,
} as const;
export type GpsFix = (typeof GpsFix)[keyof typeof GpsFix];

export const FlightState = {
  unspecified: 0,
  idle: 1,
  takeoff: 2,
  cruise: 3,
  delivering: 4,
  returning: 5,
  landing: 6,
  landed: 7,
  emergency: 8,
} as const;
export type FlightState = (typeof FlightState)[keyof typeof FlightState];

/** One observation. Optional measurements are null or absent when the drone does not know them. */
export interface TelemetryPoint {
  drone_id: string;
  seq: number;
  /** Event time, microseconds since the Unix epoch, UTC. */
  ts: number;
  lat?: number | null;
  lon?: number | null;
  alt_m?: number | null;
  rel_alt_m?: number | null;
  ground_speed_mps?: number | null;
  vertical_speed_mps?: number | null;
  heading_deg?: number | null;
  battery_pct?: number | null;
  battery_voltage_v?: number | null;
  gps_fix?: number | null;
  satellites?: number | null;
  flight_state?: number | null;
  armed?: boolean | null;
  mission_id?: string | null;
  /** The stream `seq` counts in, when not the batch's; see Batch.stream in telemetry.proto. */
  stream?: number | null;
}

export interface TelemetryBatch {
  gateway_id: string;
  batch_seq: number;
  /** Agent's send time, microseconds since the Unix epoch. */
  sent_at: number;
  points: TelemetryPoint[];
  /** Points the gateway's spool has dropped since it was created; cumulative. */
  dropped_points?: number;
  /** The stream the points' seqs count in (unless a point names its own); 0 is the legacy stream. */
  stream?: number;
}

export interface CommitAck {
  gateway_id: string;
  batch_seqs: number[];
  committed_at: number;
}
