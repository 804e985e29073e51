// Entry of every role process the bench starts (see procs.ts). Argument 1 names the role,
// argument 2 carries its options as JSON. The parent asks for reports over IPC.
import pino from 'pino';
import { peakRssBytes, RoleArgsSchema, RoleRequestSchema, type RoleReport, type RunningRole } from './procs';
import { roles } from './roles';

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
