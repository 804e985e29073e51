import { sinkCrashSuite } from './sink-crash';

// Three kills in each phase on each backend, in at most 100 s; the soak variant
// (test/sink-crash.soak.ts, `npm run test:soak`) runs 96.
sinkCrashSuite(12, 100_000);
