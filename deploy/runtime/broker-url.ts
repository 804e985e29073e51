import type { IClientOptions } from 'mqtt';

// What each scheme `optionSchemas.brokerUrl` accepts connects with in MQTT.js.
const PROTOCOLS = { 'mqtt:': 'mqtt', 'tcp:': 'tcp', 'mqtts:': 'mqtts', 'tls:': 'ssl' } as const satisfies Record<string, IClientOptions['protocol']>;
const DEFAULT_PORTS = { mqtt: 1883, tcp: 1883, mqtts: 8883, ssl: 8883 } as const;

const isScheme = (s: string): s is keyof typeof PROTOCOLS => Object.hasOwn(PROTOCOLS, s);

/**
 * A broker URL as MQTT.js connection options, for `mqtt.connect(options)`. Given the URL
 * itself, MQTT.js parses it with node's `url.parse`, which Node 24 deprecates with a
 * warning on stderr at every start (DEP0169), in the middle of a command's one-line
 * error. The URL has passed `optionSchemas.brokerUrl`, so a scheme outside the table
 * is a bug, not bad input.
 */
export function brokerConnectOptions(url: string): IClientOptions {
  const u = new URL(url);
  if (!isScheme(u.protocol)) throw new Error(`unsupported broker URL scheme ${u.protocol}`);
  const protocol = PROTOCOLS[u.protocol];
  return {
    protocol,
    // WHATWG keeps an IPv6 address's brackets; a socket wants the bare address.
    host: u.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: u.port === '' ? DEFAULT_PORTS[protocol] : Number(u.port),
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
  };
}
