import protobuf from 'protobufjs/light';
import { DESCRIPTOR } from './descriptor';

// 64-bit fields decode to plain numbers instead of Long objects. Every 64-bit value in
// the contract (microsecond times, sequence numbers) stays below 2^53, and numbers keep
// the decode path free of per-field allocation.
protobuf.util.Long = undefined as unknown as typeof protobuf.util.Long;
protobuf.configure();

// The .proto file is the one source of truth; the sink reads its comments at run time. This
// path resolves from both proto/*.ts (tests, tsx) and dist/*.js (the built CLI), which sit
// one level below the package root.
export const PROTO_PATH = new URL('../proto/telemetry.proto', import.meta.url);
export const PROTO_PACKAGE = 'dronelake.telemetry.v1';

// From the descriptor built from the .proto, not the .proto itself (proto/descriptor.ts).
export const root = protobuf.Root.fromJSON(DESCRIPTOR);

/**
 * protobufjs gives an absent proto3 `optional` enum the enum's zero value instead of null
 * (numbers and strings get null). Absent must read as unknown, so every optional field's
 * default becomes null.
 */
function nullDefaults(type: protobuf.Type): protobuf.Type {
  const proto = type.ctor.prototype as Record<string, unknown>;
  for (const field of type.fieldsArray) {
    if (field.options?.['proto3_optional']) proto[field.name] = null;
  }
  return type;
}

export const PointType = nullDefaults(root.lookupType(`${PROTO_PACKAGE}.Point`));
export const BatchType = root.lookupType(`${PROTO_PACKAGE}.Batch`);
export const CommitAckType = root.lookupType(`${PROTO_PACKAGE}.CommitAck`);
export const GpsFixEnum = root.lookupEnum(`${PROTO_PACKAGE}.GpsFix`);
export const FlightStateEnum = root.lookupEnum(`${PROTO_PACKAGE}.FlightState`);

/** Short names of an enum's values, indexed by number: GPS_FIX_2D -> "2d". */
function shortNames(e: protobuf.Enum, prefix: string): string[] {
  const names: string[] = [];
  for (const [name, id] of Object.entries(e.values)) names[id] = name.slice(prefix.length).toLowerCase();
  return names;
}

export const GPS_FIX_NAMES: readonly string[] = shortNames(GpsFixEnum, 'GPS_FIX_');
export const FLIGHT_STATE_NAMES: readonly string[] = shortNames(FlightStateEnum, 'FLIGHT_STATE_');
