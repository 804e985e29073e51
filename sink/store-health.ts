/**
 * Whether the sink's writes to the lake are going through. A commit or compaction that fails
 * (the object store throttling, resetting or timing out after the SDK's retries) marks the
 * store degraded until a commit or compaction pass succeeds; nothing is acked meanwhile (invariant 2), so
 * agents keep their batches and re-send them. /health and the metrics report it.
 */
export interface StoreHealth {
  status: 'ok' | 'degraded';
  /** Commits and compaction passes failed since the last one that succeeded. */
  failuresInARow: number;
  /** When the current run of failures began (ISO 8601); null while ok. */
  since: string | null;
  lastError: string | null;
}

export function createStoreHealth(): { failed(err: Error): void; succeeded(): void; state(): StoreHealth } {
  let failures = 0;
  let since: string | null = null;
  let lastError: string | null = null;
  return {
    failed(err) {
      failures++;
      since ??= new Date().toISOString();
      lastError = err.message;
    },
    succeeded() {
      failures = 0;
      since = null;
      lastError = null;
    },
    state: () => ({ status: failures > 0 ? 'degraded' : 'ok', failuresInARow: failures, since, lastError }),
  };
}
