#!/usr/bin/env node
// The `dronelake` command as npm links it (package.json "bin"): the built CLI, or, in a
// checkout that was never built, one line saying how to build it. Linking dist/cli.js
// itself gave npx a dangling link before the first build.
import { existsSync } from 'node:fs';

const cli = new URL('../dist/cli.js', import.meta.url);
if (!existsSync(cli)) {
  process.stderr.write("dronelake: not built yet: run 'npm run build' (npm start builds too), then try again\n");
  process.exit(2);
}
await import(cli.href);
