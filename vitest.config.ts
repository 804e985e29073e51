import { defineConfig } from 'vitest/config';
import { skippedTestsReporter } from './test/skipped-reporter';

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
