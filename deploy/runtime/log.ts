import pino, { type DestinationStream, type Logger } from 'pino';

export type LogFormat = 'auto' | 'pretty' | 'json';

const LEVEL_NAMES: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
/** Pino's own fields, shown in the line's head rather than as key=value. */
const HEAD_FIELDS = new Set(['level', 'time', 'pid', 'hostname', 'component', 'msg']);

const valueText = (v: unknown): string => {
  if (typeof v === 'string') return /[\s"=]/.test(v) ? JSON.stringify(v) : v;
  // pino serialises errors as {type, message, stack}; the message is the point on a terminal.
  if (v !== null && typeof v === 'object' && 'message' in v && typeof v.message === 'string') return JSON.stringify(v.message);
  return JSON.stringify(v);
};

/** One pino JSON line as a line for people: `12:03:04.123 WARN  broker: message key=value`. */
export function prettyLine(json: string): string {
  let record: unknown;
  try {
    record = JSON.parse(json);
  } catch {
    return json;
  }
  if (record === null || typeof record !== 'object') return json;
  const fields = Object.entries(record);
  const get = (key: string) => fields.find(([k]) => k === key)?.[1];
  const time = get('time');
  const level = get('level');
  const head = [
    typeof time === 'number' ? new Date(time).toISOString().slice(11, 23) : '',
    (typeof level === 'number' ? (LEVEL_NAMES[level] ?? String(level)) : '').padEnd(5),
    `${String(get('component') ?? '')}:`,
    String(get('msg') ?? ''),
  ];
  const rest = fields.filter(([k]) => !HEAD_FIELDS.has(k)).map(([k, v]) => `${k}=${valueText(v)}`);
  return `${[...head, ...rest].join(' ')}\n`;
}

/**
 * Structured logs go to stderr, so stdout stays free for a command's own output: JSON
 * lines for services and pipes, readable lines for a person at a terminal. Logs are
 * batch-level events, never per point, so formatting each line costs nothing that matters.
 */
export function createLogger(level: string, component: string, format: LogFormat = 'auto'): Logger {
  const out = pino.destination({ fd: 2, sync: false });
  const pretty = format === 'pretty' || (format === 'auto' && process.stderr.isTTY === true);
  const destination: DestinationStream = pretty ? { write: (line: string) => out.write(prettyLine(line)) } : out;
  return pino({ level, base: { component } }, destination);
}
