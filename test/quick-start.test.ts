import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, tempDir } from './helpers';

// The README's quick start, run verbatim from a fresh clone of this checkout's HEAD (commit
// first: uncommitted changes are not in the clone), its install line included. The one line
// not run inside this suite is `npm test`, which is this suite: the test checks instead that
// it is what CI runs on a fresh clone, after the same install.

const HAS_GIT = (() => {
  try {
    execFileSync('git', ['-C', ROOT, 'rev-parse', 'HEAD'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
const HAS_SCRIPT = existsSync('/usr/bin/script');

/** The shell commands of the README's code blocks before its first `## ` heading, comments dropped. */
async function quickStartCommands(): Promise<string[]> {
  const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
  const intro = readme.slice(0, readme.indexOf('\n## '));
  const blocks = [...intro.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
  return blocks
    .flatMap((b) => b.split('\n'))
    .map((line) => line.replace(/\s+#.*$/, '').trim())
    .filter(Boolean);
}

const isInstall = (command: string): boolean => /^npm (install|ci)\b/.test(command);
const isTestRun = (command: string): boolean => /^npm test\b/.test(command);

function run(command: string, cwd: string, limitMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('bash', ['-c', command], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const killer = setTimeout(() => child.kill('SIGKILL'), limitMs);
    child.on('close', (code) => {
      clearTimeout(killer);
      resolve({ code, stdout, stderr });
    });
  });
}

const commands = await quickStartCommands();

describe.skipIf(!HAS_GIT)(`README quick start, from a fresh clone${HAS_GIT ? '' : ' (skipped: git is not installed, or this is not a git checkout)'}`, () => {
  let clone: Awaited<ReturnType<typeof tempDir>>;
  let repo: string;
  const outputs = new Map<string, string>();
  beforeAll(async () => {
    clone = await tempDir('quick-start');
    repo = path.join(clone.dir, 'dronelake');
    execFileSync('git', ['clone', '--quiet', ROOT, repo]);
  });
  afterAll(() => clone?.remove());

  it('has an install line, a start line and the commands that look at the lake', () => {
    expect(commands.filter(isInstall)).toHaveLength(1);
    expect(commands.some((c) => c.startsWith('npm start'))).toBe(true);
    expect(commands.filter((c) => c.startsWith('npx dronelake ')).length).toBeGreaterThanOrEqual(2);
    expect(commands.filter((c) => /^dronelake /.test(c))).toEqual([]);
  });

  for (const command of commands) {
    if (isTestRun(command)) {
      it(`${command}: is what CI runs on a fresh clone after installing, the run this test is part of`, async () => {
        const ci = (await readFile(path.join(repo, '.ci', 'run'), 'utf8')).split('\n').map((l) => l.trim()).filter(Boolean);
        expect(ci.slice(-2)).toEqual(['npm ci', command]);
      });
      continue;
    }
    it(`${command}: exits 0`, async () => {
      const r = await run(command, repo, 120_000);
      expect(r.code, r.stderr).toBe(0);
      outputs.set(command, r.stdout);
    }, 180_000);
  }

  it("up's summary ends with the quick start's own next commands", () => {
    const start = commands.find((c) => c.startsWith('npm start'))!;
    const summary = outputs.get(start);
    expect(summary, 'npm start ran').toBeDefined();
    const next = commands.filter((c) => c.startsWith('npx dronelake '));
    expect(summary!.trimEnd().split('\n').slice(-next.length).map((l) => l.trim())).toEqual(next);
  });

  it.skipIf(!HAS_SCRIPT)(
    `npm start on a terminal: readable log lines, no JSON, no build output${HAS_SCRIPT ? '' : ' (skipped: script(1) from util-linux is not installed)'}`,
    async () => {
      // script(1) gives npm start a pseudo-terminal; stdout goes to /dev/null, so what script
      // prints is what a person sees on stderr.
      const r = await run(`script -qec "npm start -- --duration 2 --log-level info --lake ./tty-lake > /dev/null" /dev/null`, repo, 120_000);
      expect(r.code, r.stdout).toBe(0);
      const lines = r.stdout.replaceAll('\r', '').split('\n').filter(Boolean);
      expect(lines.filter((l) => l.trimStart().startsWith('{'))).toEqual([]);
      expect(lines.filter((l) => /tsup|Build success|ESM|DTS|\bCLI\b/.test(l))).toEqual([]);
      expect(lines).toContainEqual(expect.stringMatching(/^\d\d:\d\d:\d\d\.\d{3} INFO {2}broker: broker listening url=mqtt:\/\/127\.0\.0\.1:\d+/));
      expect(lines).toContainEqual(expect.stringMatching(/^\[ +\d+s\] generated \d+ {2}committed \d+ {2}files \d+ {2}lag \d+ points {2}\d+ points\/s$/));
      expect(lines.filter((l) => /WARN|ERROR/.test(l))).toEqual([]);
    },
    180_000,
  );
});
