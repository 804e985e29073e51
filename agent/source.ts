import type { TelemetryPoint } from '../proto/types';

/** Where a source hands its points. Sources know nothing of batches, spools or MQTT. */
export interface SourceOutput {
  /**
   * Takes a point. It is the output's only during the call: a source may fill the same
   * object again for its next point (the simulator and the MAVLink sources do, so that no
   * object is made per point), and an output that keeps a point keeps a copy.
   */
  emit(point: TelemetryPoint): void;
  /** False while the agent cannot take more points; a source pauses until it turns true. */
  readonly accepting: boolean;
  /**
   * Closes the open batch now; resolves once every point emitted before the call is
   * durably in the spool. Rejects if the spool could not take them.
   */
  flush(): Promise<void>;
}

/** A producer of telemetry points: the simulated fleet, the local ingest API, drone links. */
export interface Source {
  readonly name: string;
  start(out: SourceOutput): void;
  /** Stops producing; resolves once the source will emit nothing more. */
  stop(): Promise<void>;
}
