import { defineConfig } from 'tsup';

export default defineConfig({
  entry: {
    cli: 'deploy/cli.ts',
    bench: 'bench/main.ts',
    'bench-worker': 'bench/worker.ts',
    'bench-parquet-writers': 'bench/parquet-writers.ts',
  },
  format: ['esm'],
  platform: 'node',
  target: 'node20',
  outDir: 'dist',
  clean: true,
  sourcemap: true,
  splitting: true,
});
