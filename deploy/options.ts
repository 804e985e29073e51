import { parseArgs } from 'node:util';
import { z } from 'zod';
import { ID_PATTERN } from '../proto/topics';

/** One command-line option: its flag is the key in kebab-case; the schema validates and types it. */
export interface OptionSpec {
  type: 'string' | 'boolean';
  describe: string;
  schema: z.ZodType;
  short?: string;
}
export type OptionSpecs = Record<string, OptionSpec>;
export type ParsedOptions<S extends OptionSpecs> = { [K in keyof S]: z.output<S[K]['schema']> };

/** A mistake in how a command was called: reported as one line, exit code 2. */
export class UsageError extends Error {}

const kebab = (key: string): string => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

export interface Parsed<S extends OptionSpecs> {
  options: ParsedOptions<S>;
  positionals: string[];
  help: boolean;
}

export function parseOptions<S extends OptionSpecs>(specs: S, argv: string[], maxPositionals = 0): Parsed<S> {
  const config: Record<string, { type: 'string' | 'boolean'; short?: string }> = { help: { type: 'boolean', short: 'h' } };
  for (const [key, spec] of Object.entries(specs)) {
    config[kebab(key)] = spec.short ? { type: spec.type, short: spec.short } : { type: spec.type };
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options: config, allowPositionals: true, strict: true });
  } catch (err) {
    // Node's message goes on to explain '--' for positionals; the first sentence is the point.
    throw new UsageError((err as Error).message.split(/\. To specify|\n/)[0] ?? String(err));
  }
  if (parsed.positionals.length > maxPositionals) {
    throw new UsageError(`unexpected argument "${parsed.positionals[maxPositionals]}"`);
  }
  const options: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(specs)) {
    const flag = kebab(key);
    const raw = parsed.values[flag];
    const result = spec.schema.safeParse(raw);
    if (!result.success) {
      if (raw === undefined) throw new UsageError(`--${flag} is required`);
      throw new UsageError(`--${flag}: ${result.error.issues[0]?.message ?? 'invalid value'} (got "${String(raw)}")`);
    }
    options[key] = result.data;
  }
  return { options: options as ParsedOptions<S>, positionals: parsed.positionals, help: parsed.values.help === true };
}

export function helpText(usage: string, summary: string, specs: OptionSpecs): string {
  const rows = Object.entries(specs).map(([key, spec]) => {
    const flag = `${spec.short ? `-${spec.short}, ` : '    '}--${kebab(key)}${spec.type === 'string' ? ' <value>' : ''}`;
    const fallback = spec.schema.safeParse(undefined);
    const shown = fallback.success && fallback.data !== undefined && spec.type === 'string' ? ` (default: ${String(fallback.data)})` : '';
    return [flag, spec.describe + shown] as const;
  });
  rows.push(['-h, --help', 'print this help and exit']);
  const width = Math.max(...rows.map(([f]) => f.length)) + 2;
  const lines = rows.map(([f, d]) => `  ${f.padEnd(width)}${d}`);
  return `Usage: ${usage}\n\n${summary}\n\nOptions:\n${lines.join('\n')}\n`;
}

// Schemas shared by the commands' option tables.
export const optionSchemas = {
  count: (min: number, max: number) => z.coerce.number().int().min(min).max(max),
  positive: () => z.coerce.number().positive().max(1e9),
  brokerUrl: () =>
    z
      .string()
      .regex(/^(mqtts?|tcp|tls):\/\/[^\s/]+(:\d+)?\/?$/, 'expected a URL such as mqtt://127.0.0.1:1883'),
  id: () => z.string().regex(ID_PATTERN, 'expected 1-64 characters of A-Z a-z 0-9 . _ -'),
  flag: () => z.boolean().default(false),
};

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'silent'] as const;
export const logLevelOption = {
  type: 'string',
  describe: `log level: ${LOG_LEVELS.join(', ')}`,
  schema: z.enum(LOG_LEVELS).default('info'),
} satisfies OptionSpec;
