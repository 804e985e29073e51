import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import * as z from 'zod';

// Both ends of the bench's IPC check what they receive: it comes from another process.
const RoleReportSchema = z.object({
  /** CPU seconds (user + system) the process used so far. */
  cpuSeconds: z.number(),
  /** Peak resident memory so far, bytes. */
  maxRssBytes: z.number(),
  /** Role-specific counters. */
  stats: z.record(z.string(), z.unknown()),
});
/** What a role process reports when asked, and once more when it stops. */
export type RoleReport = z.infer<typeof RoleReportSchema>;

/**
 * Peak resident bytes (VmHWM) of process `pid`, this one by default. Not
 * resourceUsage().maxRSS: getrusage keeps it across execve, so every role started from the
 * bench's process reported that process's peak (the broker's and the agents' figures came
 * out equal, to the byte). VmHWM belongs to the address space, which exec replaces.
 */
export function peakRssBytes(pid: number | 'self' = 'self'): number {
  let status = '';
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    // Not Linux, or the process is gone: handled below.
  }
  const hwm = /^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1];
  if (hwm !== undefined) return Number(hwm) * 1024;
  // Only this process has another figure: rusage's, with its caveat.
  if (pid !== 'self') throw new Error(`no VmHWM for process ${pid}: the bench reads it from /proc`);
  return process.resourceUsage().maxRSS * 1024;
}

/** A role's options, as the worker's second argument carries them in JSON. */
export const RoleArgsSchema = z.record(z.string(), z.union([z.string(), z.number(), z.boolean()]));
export type RoleArgs = z.infer<typeof RoleArgsSchema>;

/** What the bench asks of a role process. */
export const RoleRequestSchema = z.object({ type: z.enum(['report', 'stop']), id: z.number().int() });

const RoleMessageSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('ready'), info: z.record(z.string(), z.unknown()) }),
  z.object({ type: z.literal('report'), id: z.number().int(), report: RoleReportSchema }),
  z.object({ type: z.literal('error'), message: z.string() }),
]);

/** A role as its process runs it (worker.ts): what it reports, and how it stops. */
export interface RunningRole {
  info: Record<string, unknown>;
  stats(): Record<string, unknown>;
  stop(): Promise<void>;
}

/** How roles.ts and naive.ts start a role inside the process worker.ts runs. */
export type RoleStarter = (args: RoleArgs, log: Logger) => Promise<RunningRole>;

export interface RoleHandle {
  readonly name: string;
  /** Resolves with what the role's start-up reported (ports, urls). */
  readonly ready: Promise<Record<string, unknown>>;
  report(): Promise<RoleReport>;
  /** Stops the role gracefully and returns its final report (the same one if called again). */
  stop(): Promise<RoleReport>;
  kill(): void;
}

const WORKER = path.join(path.dirname(new URL(import.meta.url).pathname), 'bench-worker.js');

/** Starts `role` in a process of its own, so each component gets a core as it would in production. */
export function startRole(role: string, args: RoleArgs): RoleHandle {
  const child: ChildProcess = fork(WORKER, [role, JSON.stringify(args)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  let nextId = 0;
  const waiting = new Map<number, (r: RoleReport) => void>();
  const ready = new Promise<Record<string, unknown>>((resolve, reject) => {
    child.on('message', (raw: unknown) => {
      const parsed = RoleMessageSchema.safeParse(raw);
      if (!parsed.success) return reject(new Error(`${role}: a message that is not the bench's: ${parsed.error.message}`));
      const m = parsed.data;
      if (m.type === 'ready') resolve(m.info);
      else if (m.type === 'report') waiting.get(m.id)?.(m.report);
      else reject(new Error(`${role}: ${m.message}`));
    });
    child.on('exit', (code) => reject(new Error(`${role} exited with code ${code} before it was ready`)));
  });
  const ask = (type: 'report' | 'stop') =>
    new Promise<RoleReport>((resolve, reject) => {
      const id = nextId++;
      const onExit = (code: number | null) => reject(new Error(`${role} exited with code ${code}`));
      child.once('exit', onExit);
      waiting.set(id, (report) => {
        child.off('exit', onExit);
        waiting.delete(id);
        resolve(report);
      });
      child.send({ type, id });
    });
  // Once: a section may stop one role early (the load, say) and the pipeline's stop() then stops it again.
  let stopped: Promise<RoleReport> | undefined;
  return {
    name: role,
    ready,
    report: () => ask('report'),
    stop: () =>
      (stopped ??= (async () => {
        const report = await ask('stop');
        await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.once('exit', r)));
        return report;
      })()),
    kill: () => {
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}
