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
  },
});
