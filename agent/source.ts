import type { TelemetryPoint } from '../proto/types';

/** Where a source hands its points. Sources know nothing of batches, spools or MQTT. */
export interface SourceOutput {
  emit(point: TelemetryPoint): void;
  /** False while the agent cannot take more points; a source pauses until it turns true. */
  readonly accepting: boolean;
}

/** A producer of telemetry points: the simulated fleet now, drone links later. */
export interface Source {
  readonly name: string;
  start(out: SourceOutput): void;
  /** Stops producing; resolves once the source will emit nothing more. */
  stop(): Promise<void>;
}
