import { sinkCrashSuite } from './sink-crash';

// Twenty-four kills in each phase on each backend, in at most 8 minutes.
sinkCrashSuite(96, 480_000);
