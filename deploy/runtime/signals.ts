/**
 * Runs `stop` once on the first SIGINT or SIGTERM; a second signal exits at once, for
 * an operator who will not wait for a drain.
 */
export function onShutdown(stop: (signal: NodeJS.Signals) => Promise<void> | void): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) {
      process.stderr.write(`\n${signal} again: exiting without draining\n`);
      process.exit(130);
    }
    stopping = true;
    void Promise.resolve(stop(signal)).catch((err: unknown) => {
      process.stderr.write(`shutdown failed: ${(err as Error).message}\n`);
      process.exit(1);
    });
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}

/** Resolves on the first SIGINT or SIGTERM. */
export function untilShutdown(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => onShutdown(resolve));
}
