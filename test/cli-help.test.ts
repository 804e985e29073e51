import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Command } from '../deploy/cli/command';
import { commands } from '../deploy/cli/commands';
import { kebab, type OptionSpecs } from '../deploy/runtime/options';
import { cli, ROOT } from './helpers';

// The --help text is the reference for every option: the guides name the options a task
// needs and leave the rest to it. So each command's help must list every option its table
// accepts, and every option a guide names must be in the help of the command it names it for.

interface Entry {
  /** The words after `dronelake`, e.g. ['broker', 'identity', 'add']. */
  path: string[];
  command: Command<OptionSpecs>;
}

/** Every command and subcommand the CLI registers, parents first. */
function walk(table: Record<string, Command<OptionSpecs>>, parent: string[] = []): Entry[] {
  return Object.entries(table).flatMap(([name, command]) => [{ path: [...parent, name], command }, ...walk(command.subcommands ?? {}, [...parent, name])]);
}

const ENTRIES = walk(commands);
/** The options a text names; `--slo-*` stands for every option that begins so. */
const flagsIn = (text: string): string[] => [...text.matchAll(/(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9](-\*)?/g)].map((m) => m[0]);
const known = (flag: string, options: Set<string>): boolean => (flag.endsWith('*') ? [...options].some((o) => o.startsWith(flag.slice(0, -1))) : options.has(flag));

/** The guides; true where an option named alone in prose (`--window`) is one of dronelake's, not of `npm run bench`. */
const GUIDES: Record<string, boolean> = {
  'README.md': true,
  'deploy/gateway/README.md': true,
  'deploy/README.md': true,
  'sink/README.md': true,
  'proto/README.md': true,
  'bench/README.md': false,
};

/** A guide's code: the lines of its fenced blocks (continued lines joined) and its inline code spans. */
function codeOf(markdown: string): { commandLines: string[]; spans: string[] } {
  const commandLines: string[] = [];
  const prose: string[] = [];
  let fenced = false;
  let block: string[] = [];
  for (const line of markdown.split('\n')) {
    if (/^\s*```/.test(line)) {
      if (fenced) commandLines.push(...block.join('\n').replace(/\\\n\s*/g, ' ').split('\n'));
      fenced = !fenced;
      block = [];
    } else if (fenced) block.push(line);
    else prose.push(line);
  }
  const spans = [...prose.join('\n').matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
  return { commandLines: [...commandLines, ...spans], spans };
}

/** The command a piece of code runs as `dronelake ...`, and the options it gives it; null if it runs none. */
function invocation(code: string): { command: string; flags: string[] } | null {
  // A shell comment, and what a pipe or a list runs next, are not the command's.
  const segment = code.replace(/\s#.*$/, '').split(/ \| |&&|;/).find((s) => /(^|\s)dronelake\s/.test(s));
  if (segment === undefined) return null;
  const words = segment.slice(segment.search(/(^|\s)dronelake\s/)).trim().split(/\s+/).slice(1);
  let table: Record<string, Command<OptionSpecs>> | undefined = commands;
  const command: string[] = [];
  while (table && words[0] !== undefined && Object.hasOwn(table, words[0])) {
    const next: Command<OptionSpecs> = table[words[0]]!;
    command.push(words.shift()!);
    table = next.subcommands;
  }
  return command.length === 0 ? null : { command: command.join(' '), flags: flagsIn(words.join(' ')) };
}

describe("each command's --help", () => {
  const helps = new Map<string, { code: number | null; stdout: string; stderr: string }>();
  beforeAll(async () => {
    const runs = await Promise.all(ENTRIES.map(async (e) => [e.path.join(' '), await cli([...e.path, '--help'])] as const));
    for (const [name, run] of runs) helps.set(name, run);
  });

  it('walks every command the top-level help lists', async () => {
    const top = await cli(['--help']);
    expect(top.code).toBe(0);
    const listed = [...top.stdout.matchAll(/^ {2}([a-z]+) /gm)].map((m) => m[1]);
    expect(listed).toEqual(Object.keys(commands));
    expect(ENTRIES.length).toBeGreaterThan(listed.length);
  });

  it.each(ENTRIES.map((e) => [e.path.join(' '), e] as const))('dronelake %s --help: exit 0, a Usage line, every option of its table', async (name, { command }) => {
    const help = helps.get(name)!;
    expect(help.code).toBe(0);
    expect(help.stderr).toBe('');
    expect(help.stdout.startsWith(`Usage: dronelake ${name}`)).toBe(true);
    const listed = new Set(flagsIn(help.stdout.slice(help.stdout.indexOf('\nOptions:\n'))));
    const table = Object.keys(await command.options());
    expect(table.length).toBeGreaterThan(0);
    const missing = table.map((key) => `--${kebab(key)}`).filter((flag) => !listed.has(flag));
    expect(missing).toEqual([]);
    expect(help.stdout).toContain('-h, --help');
    // A parent's usage names its subcommands, whose own --help has the details.
    for (const sub of Object.keys(command.subcommands ?? {})) expect(help.stdout).toContain(`dronelake ${name} ${sub}`);
  });
});

describe('the guides name only options that --help lists', () => {
  const optionsOf = new Map<string, Set<string>>();
  beforeAll(async () => {
    const runs = await Promise.all(ENTRIES.map(async (e) => [e.path.join(' '), await cli([...e.path, '--help'])] as const));
    for (const [name, run] of runs) optionsOf.set(name, new Set(flagsIn(run.stdout.slice(run.stdout.indexOf('\nOptions:\n')))));
  });

  it.each(Object.entries(GUIDES))('%s', async (guide, proseIsOurs) => {
    const { commandLines, spans } = codeOf(await readFile(path.join(ROOT, guide), 'utf8'));
    const wrong: string[] = [];
    let invocations = 0;
    for (const code of commandLines) {
      const run = invocation(code);
      if (run === null) continue;
      invocations++;
      for (const flag of run.flags) if (!known(flag, optionsOf.get(run.command)!)) wrong.push(`dronelake ${run.command} has no ${flag} (in "${code.trim()}")`);
    }
    // An option named alone must be one of some command's: the README's architecture names the
    // agent's and the sink's side by side, and the guides name the options of the other side.
    const anyCommand = new Set([...optionsOf.values()].flatMap((options) => [...options]));
    for (const span of proseIsOurs ? spans : []) {
      if (!span.startsWith('--')) continue;
      for (const flag of flagsIn(span)) if (!known(flag, anyCommand)) wrong.push(`no command has ${flag} (in "${span}")`);
    }
    expect(wrong).toEqual([]);
    if (guide !== 'bench/README.md' && guide !== 'proto/README.md') expect(invocations, 'a guide with no command in it checks nothing').toBeGreaterThan(0);
  });
});
