import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import * as z from 'zod';
import { ID_PATTERN } from '../../proto/topics';
import { parseYaml } from './yaml';

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

/** An option's name as its flag spells it: `logLevel` -> `log-level`. */
export const kebab = (key: string): string => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

export interface Parsed<S extends OptionSpecs> {
  options: ParsedOptions<S>;
  positionals: string[];
  help: boolean;
}

/** Where option values may come from besides the command line, weakest first: a config file, then the environment. */
export interface OptionSources {
  /** Environment variables, e.g. process.env; a variable is `${envPrefix}${KEY_IN_SNAKE_CASE}`. */
  env?: NodeJS.ProcessEnv;
  envPrefix?: string;
}

const snakeUpper = (key: string): string => key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();
const camel = (key: string): string => key.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

function fromEnvString(spec: OptionSpec, value: string, where: string): unknown {
  if (spec.type === 'string') return value;
  if (/^(true|1|yes)$/i.test(value)) return true;
  if (/^(false|0|no)$/i.test(value)) return false;
  throw new UsageError(`${where}: expected true or false (got "${value}")`);
}

/** Reads a YAML or JSON file of options keyed by their names (camelCase or kebab-case). */
async function loadConfigFile(specs: OptionSpecs, file: string): Promise<Record<string, { value: unknown; where: string }>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new UsageError(`--config: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = await parseYaml(text);
  } catch (err) {
    throw new UsageError(`--config: ${file} is not valid YAML or JSON: ${(err as Error).message}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new UsageError(`--config: ${file} must hold a mapping of option names to values`);
  const out: Record<string, { value: unknown; where: string }> = {};
  for (const [name, value] of Object.entries(doc)) {
    const key = camel(name);
    const spec = specs[key];
    if (!spec || key === 'config') throw new UsageError(`--config: ${file}: "${name}" is not an option of this command`);
    const where = `${file}: ${name}`;
    if (spec.type === 'boolean' && typeof value !== 'boolean') throw new UsageError(`${where}: expected true or false (got ${JSON.stringify(value)})`);
    if (spec.type === 'string' && typeof value !== 'string' && typeof value !== 'number') {
      throw new UsageError(`${where}: expected a string or a number (got ${JSON.stringify(value)})`);
    }
    out[key] = { value: typeof value === 'number' ? String(value) : value, where };
  }
  return out;
}

/**
 * Joins `--name VALUE` into `--name=VALUE` when a string option's value begins with a dash
 * (a negative number, a secret): node's parseArgs would otherwise call it ambiguous. A
 * value that is itself one of the command's flags stays a flag.
 */
function attachDashValues(argv: string[], config: Record<string, { type: 'string' | 'boolean'; short?: string }>): string[] {
  const flags = new Set(Object.entries(config).flatMap(([name, o]) => [`--${name}`, ...(o.short ? [`-${o.short}`] : [])]));
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const next = argv[i + 1];
    if (arg === '--') {
      out.push(...argv.slice(i));
      break;
    }
    if (arg.startsWith('--') && config[arg.slice(2)]?.type === 'string' && next?.startsWith('-') && !flags.has(next.split('=')[0]!)) {
      out.push(`${arg}=${next}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}

/**
 * Parses `argv` against `specs` and validates every value. Values come from the command
 * line, else the environment, else the file named by a `config` option, else the default.
 * A bad value is reported as one line naming its option and where it came from.
 */
export async function parseOptions<S extends OptionSpecs>(specs: S, argv: string[], maxPositionals = 0, sources: OptionSources = {}): Promise<Parsed<S>> {
  const config: Record<string, { type: 'string' | 'boolean'; short?: string }> = { help: { type: 'boolean', short: 'h' } };
  for (const [key, spec] of Object.entries(specs)) {
    config[kebab(key)] = spec.short ? { type: spec.type, short: spec.short } : { type: spec.type };
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: attachDashValues(argv, config), options: config, allowPositionals: true, strict: true });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    // `--drones --duration 2`: node calls the value ambiguous; the point is that it is missing.
    const ambiguous = /^Option '(-[^' ]+)[^']*' argument is ambiguous/.exec(message);
    if (ambiguous) throw new UsageError(`${ambiguous[1]} needs a value; the next argument is an option (to pass a value that begins with '-', write ${ambiguous[1]}=VALUE)`);
    // Node's message goes on to explain '--' for positionals; the first sentence is the point.
    throw new UsageError(message.split(/\. To specify|\n/)[0] ?? message);
  }
  if (parsed.positionals.length > maxPositionals) {
    throw new UsageError(`unexpected argument "${parsed.positionals[maxPositionals]}"`);
  }
  const envName = (key: string) => `${sources.envPrefix ?? ''}${snakeUpper(key)}`;
  const raw = (key: string): { value: unknown; where: string } | undefined => {
    const flag = kebab(key);
    if (parsed.values[flag] !== undefined) return { value: parsed.values[flag], where: `--${flag}` };
    const env = sources.env?.[envName(key)];
    if (sources.env && env !== undefined && env !== '') return { value: fromEnvString(specs[key]!, env, `${envName(key)}`), where: envName(key) };
    return undefined;
  };
  const configFile = 'config' in specs ? raw('config') : undefined;
  const fileValues = configFile ? await loadConfigFile(specs, String(configFile.value)) : {};

  const options: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(specs)) options[key] = checkOption(key, spec, raw(key) ?? fileValues[key]);
  return { options: options as ParsedOptions<S>, positionals: parsed.positionals, help: parsed.values.help === true };
}

/** One option's value through its schema: the default when none is given, else one line naming the option and where the value came from. */
function checkOption(key: string, spec: OptionSpec, given: { value: unknown; where: string } | undefined): unknown {
  const result = spec.schema.safeParse(given?.value);
  if (result.success) return result.data;
  if (given === undefined) throw new UsageError(`--${kebab(key)} is required`);
  const where = given.where.startsWith('--') ? given.where : `--${kebab(key)} (from ${given.where})`;
  throw new UsageError(`${where}: ${result.error.issues[0]?.message ?? 'invalid value'} (got "${String(given.value)}")`);
}

/**
 * What code gives for one option: the schema's input where it is typed (a shard's "I/N"),
 * else its output (a number, which the schema coerces from a flag's string).
 */
type ValueIn<T extends z.ZodType> = unknown extends z.input<T> ? z.output<T> : z.input<T>;
/** The options that may be left out: those with a default, and the optional ones. */
type Defaulted<S extends OptionSpecs> = { [K in keyof S]: undefined extends z.input<S[K]['schema']> ? K : never }[keyof S];
/** The option naming a config file: the command line's, with no meaning in code. */
const FILE_OPTION = 'config';
type FileOption = typeof FILE_OPTION;

/** A component's config as code builds it: a command's options by name (camelCase), those with a default left out at will. */
export type ConfigInput<S extends OptionSpecs> = { [K in Exclude<keyof S, Defaulted<S> | FileOption>]: ValueIn<S[K]['schema']> } & {
  [K in Exclude<Defaulted<S>, FileOption>]?: ValueIn<S[K]['schema']>;
};
/** A component's config: every option of its command, validated, defaults filled in. */
export type Config<S extends OptionSpecs> = Omit<ParsedOptions<S>, FileOption>;

/**
 * A component's config from values given in code (tests, the bench, `dronelake up`): each
 * through its option's schema and default, as parseOptions takes the same value as a flag,
 * so a bad one is the very line the flag would give, e.g. `--flush-interval: Too small:
 * expected number to be >0 (got "0")`; a name that is not an option is refused too.
 */
export function configOf<S extends OptionSpecs>(specs: S, given: Readonly<Record<string, unknown>>): Config<S> {
  for (const name of Object.keys(given)) {
    if (!(name in specs) || name === FILE_OPTION) throw new UsageError(`"${name}" is not an option of this component`);
  }
  const config: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(specs)) {
    if (key === FILE_OPTION) continue;
    const value = given[key];
    config[key] = checkOption(key, spec, value === undefined ? undefined : { value, where: `--${kebab(key)}` });
  }
  return config as Config<S>;
}

export function helpText(usage: string, summary: string, specs: OptionSpecs, envPrefix: string): string {
  const rows = Object.entries(specs).map(([key, spec]) => {
    const flag = `${spec.short ? `-${spec.short}, ` : '    '}--${kebab(key)}${spec.type === 'string' ? ' <value>' : ''}`;
    const fallback = spec.schema.safeParse(undefined);
    const shown = fallback.success && fallback.data !== undefined && spec.type === 'string' ? ` (default: ${String(fallback.data)})` : '';
    return [flag, spec.describe + shown] as const;
  });
  rows.push(['-h, --help', 'print this help and exit']);
  const width = Math.max(...rows.map(([f]) => f.length)) + 2;
  const lines = rows.map(([f, d]) => `  ${f.padEnd(width)}${d}`);
  const env = `Each option can also be set in the environment as ${envPrefix}<NAME>, e.g. ${envPrefix}${snakeUpper(Object.keys(specs).find((k) => k !== 'config') ?? 'logLevel')}.`;
  return `Usage: ${usage}\n\n${summary}\n\nOptions:\n${lines.join('\n')}\n\n${env}\n`;
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
  hostPort: () =>
    z
      .string()
      .regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'expected HOST:PORT, e.g. 127.0.0.1:8080')
      .optional(),
};

/** Whether HOST (a name or an address, IPv6 with or without brackets) is this machine's loopback. */
export const isLoopback = (host: string): boolean => {
  const h = host.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
};

/** The host of HOST:PORT, without IPv6 brackets. */
export const hostOf = (hostPort: string): string => hostPort.slice(0, hostPort.lastIndexOf(':')).replace(/^\[|\]$/g, '');

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'silent'] as const;
export const logLevelOption = {
  type: 'string',
  describe: `log level: ${LOG_LEVELS.join(', ')}`,
  schema: z.enum(LOG_LEVELS).default('info'),
} satisfies OptionSpec;

export const LOG_FORMATS = ['auto', 'pretty', 'json'] as const;
export const logFormatOption = {
  type: 'string',
  describe: 'logs as readable lines (pretty) or one JSON object a line (json); auto: pretty when stderr is a terminal',
  schema: z.enum(LOG_FORMATS).default('auto'),
} satisfies OptionSpec;

export const configOption = {
  type: 'string',
  describe: 'a YAML or JSON file of options (keys as the flags); flags and environment variables override it',
  schema: z.string().min(1).optional(),
} satisfies OptionSpec;
