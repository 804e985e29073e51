// Entry of every role process the bench starts (see procs.ts). Argument 1 names the role,
// argument 2 carries its options as JSON. The parent asks for reports over IPC.
import { readFileSync } from 'node:fs';
import pino from 'pino';
import { RoleArgsSchema, RoleRequestSchema, type RoleReport, type RunningRole } from './procs';
import { roles } from './roles';

/**
 * This process's peak resident bytes. Not resourceUsage().maxRSS: getrusage keeps it across
 * execve, so every role started from the bench's process reported that process's peak (the
 * broker's and the agents' figures came out equal, to the byte). VmHWM belongs to the address
 * space, which exec replaces.
 */
function peakRssBytes(): number {
  try {
    const hwm = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
    if (hwm !== undefined) return Number(hwm) * 1024;
  } catch {
    // Not Linux: the rusage figure, with its caveat.
  }
  return process.resourceUsage().maxRSS * 1024;
}

function report(running: RunningRole): RoleReport {
  const cpu = process.cpuUsage();
  return { cpuSeconds: (cpu.user + cpu.system) / 1e6, maxRssBytes: peakRssBytes(), stats: running.stats() };
}

async function main(): Promise<void> {
  const [name, json] = process.argv.slice(2);
  const start = roles[name ?? ''];
  if (!start || !process.send) throw new Error(`unknown role "${name}" (or not started by the bench)`);
  const running = await start(RoleArgsSchema.parse(JSON.parse(json ?? '{}')), pino({ level: 'warn' }, pino.destination(2)));
  process.send({ type: 'ready', info: running.info });
  process.on('message', (raw: unknown) => {
    const m = RoleRequestSchema.parse(raw);
    void (async () => {
      if (m.type === 'stop') await running.stop();
      process.send!({ type: 'report', id: m.id, report: report(running) });
      if (m.type === 'stop') process.disconnect();
    })();
  });
}

main().catch((err: unknown) => {
  process.send?.({ type: 'error', message: (err as Error).message });
  process.exitCode = 1;
});
