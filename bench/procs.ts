import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { Logger } from 'pino';

/** What a role process reports when asked, and once more when it stops. */
export interface RoleReport {
  /** CPU seconds (user + system) the process used so far. */
  cpuSeconds: number;
  /** Peak resident memory so far, bytes. */
  maxRssBytes: number;
  /** Role-specific counters. */
  stats: Record<string, unknown>;
}

export type RoleArgs = Record<string, string | number | boolean>;

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

type Message = { type: 'ready'; info: Record<string, unknown> } | { type: 'report'; id: number; report: RoleReport } | { type: 'error'; message: string };

const WORKER = path.join(path.dirname(new URL(import.meta.url).pathname), 'bench-worker.js');

/** Starts `role` in a process of its own, so each component gets a core as it would in production. */
export function startRole(role: string, args: RoleArgs): RoleHandle {
  const child: ChildProcess = fork(WORKER, [role, JSON.stringify(args)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  let nextId = 0;
  const waiting = new Map<number, (r: RoleReport) => void>();
  const ready = new Promise<Record<string, unknown>>((resolve, reject) => {
    child.on('message', (m: Message) => {
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
