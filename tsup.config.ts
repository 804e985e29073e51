import { readFile } from 'node:fs/promises';
import { defineConfig, type Options } from 'tsup';
import { DESCRIPTOR } from './proto/descriptor';

type Plugin = NonNullable<Options['esbuildPlugins']>[number];

/** proto/descriptor.ts, the module the build replaces. */
export const DESCRIPTOR_MODULE = /[\\/]proto[\\/]descriptor\.ts$/;

/** What the build bundles in its place: the descriptor it yields when the build loads it. */
export const descriptorModule = (): string => `export const DESCRIPTOR = ${JSON.stringify(DESCRIPTOR)};`;

/**
 * proto/descriptor.ts parses telemetry.proto when it loads; the build bundles its result in
 * its place, so no command runs protobufjs's parser at start (invariant 6: its tokenizer is
 * hot enough to wake V8's optimizing compiler in a gateway's agent).
 */
const telemetryDescriptor: Plugin = {
  name: 'telemetry-descriptor',
  setup(build) {
    build.onLoad({ filter: DESCRIPTOR_MODULE }, () => ({ contents: descriptorModule(), loader: 'js' }));
  },
};

/**
 * MQTT.js's transports that its TCP and TLS links load when they load, for what only other
 * URLs and settings use: its WebSocket transport (ws, and node's http and https), loaded
 * when a ws:// or wss:// link starts instead, and its SOCKS client (socks, ip-address),
 * loaded when MQTTJS_SOCKS_PROXY is set. Our --broker URLs are mqtt, mqtts, tcp and tls.
 */
const MQTT_LAZY_LOADS: Array<{ file: RegExp; eager: string; lazy: string }> = [
  {
    file: /[\\/]mqtt[\\/]build[\\/]lib[\\/]connect[\\/]index\.js$/,
    eager: "protocols.ws = require('./ws').streamBuilder;\n            protocols.wss = require('./ws').streamBuilder;",
    lazy: "protocols.ws = (client, opts) => require('./ws').streamBuilder(client, opts);\n            protocols.wss = protocols.ws;",
  },
  ...['tcp', 'tls'].map((name) => ({
    file: new RegExp(`[\\\\/]mqtt[\\\\/]build[\\\\/]lib[\\\\/]connect[\\\\/]${name}\\.js$`),
    eager: 'const socks_1 = __importDefault(require("./socks"));',
    lazy: 'const socks_1 = { get default() { return __importDefault(require("./socks")).default; } };',
  })),
];

/**
 * Loads MQTT_LAZY_LOADS on first use: about 1 MB less of a gateway agent's peak RSS idle
 * (invariant 6). A new MQTT.js that loads them otherwise fails the build here rather than
 * silently bundling them back.
 */
const mqttLazyTransports: Plugin = {
  name: 'mqtt-lazy-transports',
  setup(build) {
    for (const { file, eager, lazy } of MQTT_LAZY_LOADS) {
      build.onLoad({ filter: file }, async ({ path }) => {
        const source = await readFile(path, 'utf8');
        if (!source.includes(eager)) throw new Error(`${path} no longer loads its transports as tsup.config.ts expects: check MQTT_LAZY_LOADS`);
        return { contents: source.replace(eager, lazy), loader: 'js' };
      });
    }
  },
};

/** Bundled CommonJS calls require() for Node's own modules, which ES modules lack. */
const REQUIRE_BANNER = "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);";

/**
 * Keeps REQUIRE_BANNER only in the chunks that call require: each createRequire resolves
 * the chunk's node_modules paths, and one per chunk an agent loads made V8 optimise node's
 * path code at start (agent-main.ts says what that costs; invariant 6). The line stays,
 * empty, so the maps still match.
 */
const requireWhereUsed: NonNullable<Options['plugins']>[number] = {
  name: 'require-where-used',
  renderChunk(code, { path }) {
    if (!path.endsWith('.js')) return;
    // After the entries' shebang line, if any.
    const at = code.startsWith('#!') ? code.indexOf('\n') + 1 : 0;
    if (!code.startsWith(REQUIRE_BANNER, at)) throw new Error(`${path} does not start with the require banner`);
    const rest = code.slice(at + REQUIRE_BANNER.length);
    return /\brequire\b/.test(rest) ? undefined : { code: code.slice(0, at) + rest };
  },
};

/** The product page's script: a browser bundle the catalog serves, built beside the CLI. */
const PAGE_BUNDLE = 'catalog-page';

/** The agent's build: its own directory of dist, which the other build neither writes nor cleans. */
const AGENT_DIR = 'agent';

/**
 * cli.ts hands `dronelake agent` to agent-main.ts, which the agent's own build (below)
 * bundles: the main build leaves that import to it, as a file beside in dist.
 */
const agentBuildApart: Plugin = {
  name: 'agent-build-apart',
  setup(build) {
    build.onResolve({ filter: /^\.\/agent-main$/ }, ({ importer }) => (/[\\/]deploy[\\/]cli[\\/]cli\.ts$/.test(importer) ? { path: `./${AGENT_DIR}/agent-main.js`, external: true } : undefined));
  },
};

/** What both node builds share. */
const nodeBuild: Options = {
  format: ['esm'],
  platform: 'node',
  target: 'node20',
  sourcemap: true,
  splitting: true,
  // The agent's own dependencies are bundled, tree-shaken and minified: a gateway's agent
  // then parses and keeps only the code it runs, 84 -> 61 MB idle (invariant 6). The
  // others load only in the commands that use them, from node_modules. mqtt-packet is
  // bundled as MQTT.js's own: from node_modules it loaded readable-stream beside the bundle's
  // (the broker's Aedes still loads its own copy of it from node_modules). yaml is loaded
  // with a --config file, in a chunk of its own.
  noExternal: ['zod', 'mqtt', 'mqtt-packet', 'pino', 'protobufjs', 'crc-32', 'prom-client', 'yaml'],
  // readable-stream is a copy of node's own streams for other runtimes (MQTT.js and
  // mqtt-packet use it): node's, already loaded, serve instead, 2 MB less of an agent's
  // peak RSS idle (invariant 6).
  esbuildOptions(options) {
    options.alias = { 'readable-stream': 'node:stream' };
  },
  // Optional native speed-ups that ws tries to load (absent, it uses its JavaScript code),
  // and playwright-core, a development dependency the bench drives Chromium with, loaded only there.
  external: ['bufferutil', 'utf-8-validate', 'playwright-core'],
  // Identifiers are kept, so stack traces stay readable without the source maps.
  minifyWhitespace: true,
  minifySyntax: true,
  banner: { js: REQUIRE_BANNER },
  plugins: [requireWhereUsed],
};

export default defineConfig([
  {
    ...nodeBuild,
    entry: {
      cli: 'deploy/cli/cli.ts',
      bench: 'bench/main.ts',
      'bench-worker': 'bench/worker.ts',
      'bench-parquet-writers': 'bench/parquet-writers.ts',
    },
    outDir: 'dist',
    esbuildPlugins: [telemetryDescriptor, mqttLazyTransports, agentBuildApart],
    // The builds run at once: this one must not clean away the page's bundle or the agent's.
    clean: ['**/*', `!${PAGE_BUNDLE}.*`, `!${AGENT_DIR}/**`],
  },
  {
    // The gateway's agent alone: its code in a few chunks, not split among every command's
    // (agent-main.ts says why), and its lazy parts (MAVLink, the ingest API, YAML) apart.
    ...nodeBuild,
    entry: { 'agent-main': 'deploy/cli/agent-main.ts' },
    outDir: `dist/${AGENT_DIR}`,
    esbuildPlugins: [telemetryDescriptor, mqttLazyTransports],
    clean: true,
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
