import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';

/** Free space a probe must find before the sink takes messages again. */
const PROBE_BYTES = 1024 * 1024;
const PROBE_EVERY_MS = 1000;

/** A commit failed for want of room where it stages files (ENOSPC, EDQUOT, or DuckDB saying so). */
export function isDiskFull(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' || /No space left on device|Disk quota exceeded/i.test((err as Error | undefined)?.message ?? '');
}

export interface StagingState {
  status: 'ok' | 'full';
  dir: string;
  /** When the staging directory filled (ISO 8601); null while ok. */
  since: string | null;
}

/**
 * The sink's gate on a full staging directory. A commit that fails for want of room acks
 * nothing (invariant 2: the agents keep their batches), and the sink stops taking messages:
 * the one in hand waits, unacknowledged, so the broker keeps the rest queued for the sink's
 * session. A probe file shows when there is room again; then, or when a commit goes
 * through, the message in hand is taken and the flow resumes. One log line each way.
 */
export function stagingGate(dir: string, log: Logger) {
  let since: string | null = null;
  let held: (() => void) | null = null;
  let timer: NodeJS.Timeout | undefined;
  const probe = path.join(dir, '.space-probe');

  function resume(): void {
    if (since === null) return;
    clearInterval(timer);
    since = null;
    log.info({ dir }, 'staging directory has room again; taking messages');
    const next = held;
    held = null;
    next?.();
  }

  async function tryProbe(): Promise<void> {
    try {
      await writeFile(probe, Buffer.alloc(PROBE_BYTES));
      await rm(probe, { force: true });
      resume();
    } catch {
      await rm(probe, { force: true }).catch(() => undefined);
    }
  }

  return {
    get full(): boolean {
      return since !== null;
    },
    /** A commit failed with a full disk: stop taking messages until there is room. */
    filled(err: Error): void {
      if (since !== null) return;
      since = new Date().toISOString();
      log.error({ dir, err: err.message }, 'staging directory is full; not taking messages until it has room');
      timer = setInterval(() => void tryProbe(), PROBE_EVERY_MS);
    },
    /** A commit went through: there is room. */
    committed: resume,
    /** Runs `take` now, or once there is room. */
    whenRoom(take: () => void): void {
      if (since === null) take();
      else held = take;
    },
    state: (): StagingState => ({ status: since === null ? 'ok' : 'full', dir, since }),
    close(): void {
      clearInterval(timer);
    },
  };
}
