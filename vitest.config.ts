import path from 'node:path';
import { defineConfig } from 'vitest/config';
import type { Reporter, TestModule, Vitest } from 'vitest/node';

/**
 * Lists the tests that skipped, by file, after vitest's own summary: a test skips when a
 * system program or a fixture it needs is missing, and its name says which (for example
 * "(skipped: redis-server is not installed)"). A skipped test should never go unseen.
 * Quiet under `-t`, where every test left out by the filter counts as skipped.
 */
let filtered = false;
let root = process.cwd();

const skippedTestsReporter: Reporter = {
  onInit(vitest: Vitest) {
    filtered = vitest.config.testNamePattern !== undefined;
    root = vitest.config.root;
  },
  onTestRunEnd(modules: ReadonlyArray<TestModule>) {
    if (filtered) return;
    const lines = modules.flatMap((m) => [...m.children.allTests('skipped')].map((t) => `  ${path.relative(root, m.moduleId)}: ${t.fullName}`));
    if (lines.length === 0) return;
    process.stdout.write(`\n${lines.length} test${lines.length === 1 ? '' : 's'} skipped, and why:\n${lines.join('\n')}\n`);
  },
};

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    maxWorkers: 2,
    reporters: ['default', skippedTestsReporter],
    // The AWS SDK warns on Node 20 that its releases after January 2027 will need Node 22; the
    // tests pin the SDK by the lock file, so the warning is noise in their output.
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
  },
});
