import { defineConfig } from 'tsup';

/** The product page's script: a browser bundle the catalog serves, built beside the CLI. */
const PAGE_BUNDLE = 'catalog-page';

export default defineConfig([
  {
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
    // Both builds run at once: this one must not clean away the page's bundle.
    clean: ['**/*', `!${PAGE_BUNDLE}.*`],
    sourcemap: true,
    splitting: true,
    // The bench drives Chromium with it; it is a development dependency, loaded only there.
    external: ['playwright-core'],
  },
  {
    // uPlot and its stylesheet go inside: the page loads nothing from anywhere else.
    entry: { [PAGE_BUNDLE]: 'sink/catalog/page/client.ts' },
    format: ['iife'],
    platform: 'browser',
    target: 'es2022',
    outDir: 'dist',
    outExtension: () => ({ js: '.js' }),
    injectStyle: true,
    minify: true,
    clean: false,
    sourcemap: false,
    tsconfig: 'sink/catalog/page/tsconfig.json',
  },
]);
