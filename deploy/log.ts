import pino, { type Logger } from 'pino';

/** Structured logs go to stderr, so stdout stays free for a command's own output. */
export function createLogger(level: string, component: string): Logger {
  return pino({ level, base: { component } }, pino.destination({ fd: 2, sync: false }));
}
