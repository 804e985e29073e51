import { FlightState } from '../../proto/types';

// HEARTBEAT fields this module reads (MAVLink common.xml).
export const MAV_AUTOPILOT_ARDUPILOTMEGA = 3;
export const MAV_AUTOPILOT_PX4 = 12;
export const MAV_AUTOPILOT_INVALID = 8;
export const MAV_TYPE_GCS = 6;
export const MAV_MODE_FLAG_CUSTOM_MODE_ENABLED = 0x01;
export const MAV_MODE_FLAG_SAFETY_ARMED = 0x80;
const MAV_STATE_EMERGENCY = 6;

const { takeoff, cruise, returning, landing, emergency, idle } = FlightState;

// MAV_TYPE values flown by ArduCopter (multirotors, helicopters) and ArduPlane (fixed wing, VTOLs).
const COPTER_TYPES = new Set([2, 3, 4, 13, 14, 15, 29, 35]);
const PLANE_TYPES = new Set([1, 19, 20, 21, 22, 23, 24, 25]);

/** ArduCopter custom_mode -> state while armed; modes not listed are unknown. */
export const ARDUCOPTER_MODES: Readonly<Record<number, FlightState>> = {
  0: cruise, // STABILIZE
  1: cruise, // ACRO
  2: cruise, // ALT_HOLD
  3: cruise, // AUTO
  4: cruise, // GUIDED
  5: cruise, // LOITER
  6: returning, // RTL
  7: cruise, // CIRCLE
  9: landing, // LAND
  11: cruise, // DRIFT
  13: cruise, // SPORT
  16: cruise, // POSHOLD
  17: cruise, // BRAKE
  18: takeoff, // THROW
  20: cruise, // GUIDED_NOGPS
  21: returning, // SMART_RTL
  22: cruise, // FLOWHOLD
  23: cruise, // FOLLOW
  24: cruise, // ZIGZAG
  26: emergency, // AUTOROTATE
  27: returning, // AUTO_RTL
};

/** ArduPlane (and QuadPlane) custom_mode -> state while armed. */
export const ARDUPLANE_MODES: Readonly<Record<number, FlightState>> = {
  0: cruise, // MANUAL
  1: cruise, // CIRCLE
  2: cruise, // STABILIZE
  3: cruise, // TRAINING
  4: cruise, // ACRO
  5: cruise, // FBWA
  6: cruise, // FBWB
  7: cruise, // CRUISE
  10: cruise, // AUTO
  11: returning, // RTL
  12: cruise, // LOITER
  13: takeoff, // TAKEOFF
  14: cruise, // AVOID_ADSB
  15: cruise, // GUIDED
  17: cruise, // QSTABILIZE
  18: cruise, // QHOVER
  19: cruise, // QLOITER
  20: landing, // QLAND
  21: returning, // QRTL
  23: cruise, // QACRO
  24: cruise, // THERMAL
  25: landing, // LOITER_ALT_QLAND
  26: landing, // AUTOLAND
};

/** PX4 main modes (custom_mode bits 16-23) -> state while armed; AUTO (4) goes by its sub mode. */
export const PX4_MAIN_MODES: Readonly<Record<number, FlightState>> = {
  1: cruise, // MANUAL
  2: cruise, // ALTCTL
  3: cruise, // POSCTL
  5: cruise, // ACRO
  6: cruise, // OFFBOARD
  7: cruise, // STABILIZED
  8: cruise, // RATTITUDE
};
const PX4_MAIN_AUTO = 4;

/** PX4 AUTO sub modes (custom_mode bits 24-31) -> state while armed. */
export const PX4_AUTO_MODES: Readonly<Record<number, FlightState>> = {
  2: takeoff, // TAKEOFF
  3: cruise, // LOITER
  4: cruise, // MISSION
  5: returning, // RTL
  6: landing, // LAND
  7: returning, // RTGS
  8: cruise, // FOLLOW_TARGET
  9: landing, // PRECLAND
  10: takeoff, // VTOL_TAKEOFF
};

/**
 * The flight state a vehicle's HEARTBEAT implies, or null when the mode is unknown. A
 * disarmed vehicle is idle, whatever its mode; an emergency system status wins over the mode.
 */
export function flightState(type: number, autopilot: number, baseMode: number, customMode: number, systemStatus: number): FlightState | null {
  if ((baseMode & MAV_MODE_FLAG_SAFETY_ARMED) === 0) return idle;
  if (systemStatus === MAV_STATE_EMERGENCY) return emergency;
  if ((baseMode & MAV_MODE_FLAG_CUSTOM_MODE_ENABLED) === 0) return null;
  let state: FlightState | undefined;
  if (autopilot === MAV_AUTOPILOT_ARDUPILOTMEGA) {
    if (COPTER_TYPES.has(type)) state = ARDUCOPTER_MODES[customMode];
    else if (PLANE_TYPES.has(type)) state = ARDUPLANE_MODES[customMode];
  } else if (autopilot === MAV_AUTOPILOT_PX4) {
    const main = (customMode >>> 16) & 0xff;
    state = main === PX4_MAIN_AUTO ? PX4_AUTO_MODES[(customMode >>> 24) & 0xff] : PX4_MAIN_MODES[main];
  }
  return state ?? null;
}
