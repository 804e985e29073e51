import { defineConfig } from 'vitest/config';

// Long fault loops that CI does not run: `npm run test:soak`.
export default defineConfig({
  test: {
    include: ['test/**/*.soak.ts'],
    testTimeout: 600_000,
    hookTimeout: 60_000,
    pool: 'forks',
    maxWorkers: 2,
  },
});
