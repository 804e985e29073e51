import { readFileSync } from 'node:fs';
import { BlockList, isIP } from 'node:net';
import * as z from 'zod';
import { ID_PATTERN } from '../../proto/topics';

export interface UdpEndpoint {
  host: string;
  port: number;
}

const ENDPOINT = /^udp:(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

/** `udp:HOST:PORT[,udp:HOST:PORT...]`, e.g. `udp:0.0.0.0:14550`. */
export function parseEndpoints(list: string): UdpEndpoint[] {
  return list.split(',').map((raw) => {
    const s = raw.trim();
    const m = ENDPOINT.exec(s);
    const port = Number(m?.[2]);
    if (!m || port > 65535) throw new Error(`"${s}" is not udp:HOST:PORT, e.g. udp:0.0.0.0:14550`);
    return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
  });
}

/**
 * The system id -> drone id table: `1=drone-a,2=drone-b`, or `@FILE` naming a file of the
 * same pairs, one per line or comma-separated (# starts a comment).
 */
export function parseDroneTable(spec: string): Map<number, string> {
  const text = spec.startsWith('@') ? readFileSync(spec.slice(1), 'utf8') : spec;
  const table = new Map<number, string>();
  for (const raw of text.split(/[,\n]/)) {
    const entry = raw.replace(/#.*/, '').trim();
    if (entry === '') continue;
    const m = /^(\d{1,3})\s*=\s*(\S+)$/.exec(entry);
    const sysid = Number(m?.[1]);
    if (!m || sysid < 1 || sysid > 255) throw new Error(`"${entry}" is not SYSID=DRONE_ID with a system id in 1..255`);
    if (!ID_PATTERN.test(m[2]!)) throw new Error(`drone id "${m[2]}" is not 1-64 characters of A-Z a-z 0-9 . _ -`);
    if (table.has(sysid)) throw new Error(`system id ${sysid} is mapped twice`);
    table.set(sysid, m[2]!);
  }
  return table;
}

/**
 * The senders MAVLink is taken from: `10.0.0.0/8,192.168.1.7,fd00::/8`. A BlockList used
 * as an allow list: check() is true for an address it holds.
 */
export function parseAllowList(list: string): BlockList {
  const allowed = new BlockList();
  for (const raw of list.split(',')) {
    const entry = raw.trim();
    const [address = '', prefix, extra] = entry.split('/');
    const family = isIP(address);
    const bits = prefix === undefined ? undefined : Number(prefix);
    const max = family === 6 ? 128 : 32;
    if (family === 0 || extra !== undefined || (bits !== undefined && !(/^\d{1,3}$/.test(prefix!) && bits <= max))) {
      throw new Error(`"${entry}" is not an IPv4 or IPv6 address or CIDR, e.g. 192.168.1.0/24`);
    }
    const type = family === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) allowed.addAddress(address, type);
    else allowed.addSubnet(address, bits, type);
  }
  return allowed;
}

/** Drone ids by system id: the table's, else `{gateway}-sys{N}`. */
export function droneIdOf(gatewayId: string, table: ReadonlyMap<number, string>): (sysid: number) => string {
  return (sysid) => table.get(sysid) ?? `${gatewayId}-sys${sysid}`;
}

const refine = <T>(parse: (s: string) => T) => (s: string, ctx: z.RefinementCtx) => {
  try {
    parse(s);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
  }
};

// Validated at option parsing, so a bad value is one usage line; parsed again where used.
export const mavlinkOptionSchemas = {
  endpoints: () => z.string().superRefine(refine(parseEndpoints)).optional(),
  drones: () => z.string().superRefine(refine(parseDroneTable)).optional(),
  allow: () => z.string().superRefine(refine(parseAllowList)).optional(),
  hz: (fallback: number) => z.coerce.number().min(0).max(1000).default(fallback),
};
