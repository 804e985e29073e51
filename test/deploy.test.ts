// Static checks of the deploy files (deploy/gateway, deploy/docker, deploy/k8s): every command,
// flag, config key and environment variable they name is checked against the commands' real
// option specs, with the same parser the commands use; every port, probe and image against the
// code and each other. A renamed flag or option breaks these tests (the last describe block
// renames each one in turn to prove it). Nothing here builds an image or starts a container.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { agentOptions, checkAgentOptions } from '../agent/options';
import { brokerOptions, checkBrokerOptions, type BrokerOptions } from '../broker/options';
import { healthRoute, metricsRoute } from '../deploy/runtime/http';
import { parseOptions, UsageError, type OptionSpecs } from '../deploy/runtime/options';
import { catalogOptions } from '../sink/catalog-options';
import { compactOptions } from '../sink/compact-options';
import { checkSinkOptions, sinkOptions } from '../sink/options';
import { queryOptions } from '../sink/query-options';
import pkg from '../package.json';

const ROOT = path.resolve(import.meta.dirname, '..');
const read = (rel: string): string => readFileSync(path.join(ROOT, rel), 'utf8');
const TMP = mkdtempSync(path.join(os.tmpdir(), 'dronelake-deploy-test-'));
afterAll(() => rmSync(TMP, { recursive: true, force: true }));

const has = (program: string): boolean => spawnSync('sh', ['-c', `command -v ${program}`]).status === 0;
const HAS_SYSTEMD_ANALYZE = has('systemd-analyze');
const HAS_SHELLCHECK = has('shellcheck');

type Specs = Record<string, OptionSpecs>;
/** The commands a deploy file may run, with their option specs (deploy/cli/commands.ts). */
const SPECS: Specs = { agent: agentOptions, broker: brokerOptions, sink: sinkOptions, query: queryOptions, catalog: catalogOptions, compact: compactOptions };

/** The paths the components' HTTP servers serve (deploy/runtime/http.ts), checked below to be used by each. */
const ROUTES = {
  health: healthRoute(() => ({ healthy: true, body: {} })).path,
  metrics: metricsRoute({} as Parameters<typeof metricsRoute>[0]).path,
};

const camel = (s: string): string => s.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
const envKey = (suffix: string): string => suffix.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
const DRONELAKE_IMAGE = `dronelake:${pkg.version}`;

/** One way a deploy file runs dronelake: argv after `dronelake`, its environment, where it is. */
interface Invocation {
  where: string;
  argv: string[];
  env: Record<string, string>;
  /** Config files named by --config: the path in the deployment -> the file's text. */
  configs: Record<string, string>;
}

/** Lines `#key: value` (no space after #) are options left at their defaults: checked too. */
const uncommentOptions = (text: string): string => text.replace(/^(\s*)#([A-Za-z][A-Za-z0-9-]*: )/gm, '$1$2');

let tmpFiles = 0;
/**
 * Validates an invocation with the real parser: the command exists, every flag is an option,
 * every value and every key of its config file (commented-out ones included) passes its
 * schema, and every DRONELAKE_* variable names an option of the command. Returns the options.
 */
async function validate(inv: Invocation, specs: Specs = SPECS): Promise<Record<string, unknown>> {
  const [command, ...rest] = inv.argv;
  const spec = command === undefined ? undefined : specs[command];
  if (!spec) throw new UsageError(`${inv.where}: "${command}" is not a dronelake command`);
  const args = [...rest];
  envNameErrors(inv.env, specs).forEach((e) => {
    throw new UsageError(`${inv.where}: ${e}`);
  });
  // The options as shipped are returned; the variant with commented-out options is checked too.
  let options: Record<string, unknown> | undefined;
  for (const variant of [(t: string) => t, uncommentOptions]) {
    const argv = args.map((a, i) => {
      if (args[i - 1] !== '--config') return a;
      const text = inv.configs[a];
      if (text === undefined) throw new UsageError(`${inv.where}: --config ${a} is no file this deployment provides`);
      const file = path.join(TMP, `${tmpFiles++}-${path.basename(a)}`);
      writeFileSync(file, variant(text));
      return file;
    });
    try {
      const parsed = (await parseOptions(spec, argv, 0, { env: inv.env, envPrefix: `DRONELAKE_${command!.toUpperCase()}_` })).options;
      if (command === 'broker') checkBrokerOptions(parsed as BrokerOptions);
      if (command === 'agent') checkAgentOptions(parsed as Parameters<typeof checkAgentOptions>[0]);
      if (command === 'sink') checkSinkOptions(parsed as Parameters<typeof checkSinkOptions>[0]);
      options ??= parsed;
    } catch (err) {
      if (err instanceof UsageError) throw new UsageError(`${inv.where}: ${err.message}`);
      throw err;
    }
  }
  return options!;
}

/** Every DRONELAKE_{COMMAND}_{NAME} must be an option NAME of COMMAND. */
function envNameErrors(env: Record<string, string>, specs: Specs = SPECS): string[] {
  const errors: string[] = [];
  for (const name of Object.keys(env).filter((n) => n.startsWith('DRONELAKE_'))) {
    const command = Object.keys(specs)
      .filter((c) => name.startsWith(`DRONELAKE_${c.toUpperCase()}_`))
      .sort((a, b) => b.length - a.length)[0];
    if (!command) {
      errors.push(`${name} names no dronelake command`);
      continue;
    }
    const key = envKey(name.slice(`DRONELAKE_${command.toUpperCase()}_`.length));
    if (!(key in specs[command]!)) errors.push(`${name} is not an option of ${command} (no --${key})`);
  }
  return errors;
}

/** The ports a component listens on, given its options. */
function listeningPorts(command: string, o: Record<string, unknown>): number[] {
  const http = typeof o.http === 'string' ? [Number(o.http.slice(o.http.lastIndexOf(':') + 1))] : [];
  if (command === 'broker') return [Number(o.port), ...(o.tlsPort === undefined ? [] : [Number(o.tlsPort)]), ...http];
  return http;
}
const httpPort = (o: Record<string, unknown>): number | undefined => (typeof o.http === 'string' ? Number(o.http.slice(o.http.lastIndexOf(':') + 1)) : undefined);
/** The --http host must be reachable from outside the container for probes, ports and scrapes. */
const httpHost = (o: Record<string, unknown>): string | undefined => (typeof o.http === 'string' ? o.http.slice(0, o.http.lastIndexOf(':')) : undefined);

/** Words of a POSIX shell command line, after `${NAME##*-}` and `${NAME}` are substituted. */
function shellWords(line: string, vars: Record<string, string>): string[] {
  const text = line
    .replace(/\$\{([A-Z_]+)##\*-\}/g, (_, n: string) => {
      if (vars[n] === undefined) throw new Error(`the shell line uses \${${n}##*-}, which the container does not set`);
      return vars[n]!.replace(/^.*-/, '');
    })
    .replace(/\$\{([A-Z_]+)\}/g, (_, n: string) => {
      if (vars[n] === undefined) throw new Error(`the shell line uses \${${n}}, which the container does not set`);
      return vars[n]!;
    });
  const words: string[] = [];
  let word: string | null = null;
  let quote: string | null = null;
  for (const c of text) {
    if (quote) {
      if (c === quote) quote = null;
      else word += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      word ??= '';
    } else if (/\s/.test(c)) {
      if (word !== null) words.push(word);
      word = null;
    } else word = (word ?? '') + c;
  }
  if (quote) throw new Error(`unbalanced quote in: ${line}`);
  if (word !== null) words.push(word);
  return words;
}

// --- the files ------------------------------------------------------------------------------

const DOCKERFILE = read('deploy/docker/Dockerfile');
/** The image's ENTRYPOINT, e.g. ["node", "/app/dist/cli.js"]. */
const ENTRYPOINT = JSON.parse(/^ENTRYPOINT\s+(\[.*\])\s*$/m.exec(DOCKERFILE)?.[1] ?? 'null') as string[] | null;
const IMAGE_UID = Number(/useradd[^\n]*--uid (\d+)/.exec(DOCKERFILE)?.[1]);

const INSTALL_SH = read('deploy/gateway/install.sh');
const shVar = (name: string): string | undefined => new RegExp(`^${name}=(\\S+)$`, 'm').exec(INSTALL_SH)?.[1];

interface Unit {
  [section: string]: Record<string, string[]>;
}
function parseUnit(text: string): Unit {
  const unit: Unit = {};
  let section: Record<string, string[]> | undefined;
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const head = /^\[([A-Za-z]+)\]$/.exec(line);
    if (head) {
      section = unit[head[1]!] ??= {};
      continue;
    }
    const kv = /^([A-Za-z][A-Za-z0-9]*)=(.*)$/.exec(line);
    if (!kv || !section) throw new Error(`dronelake-agent.service:${i + 1}: not a key=value line in a section: ${raw}`);
    (section[kv[1]!] ??= []).push(kv[2]!);
  }
  return unit;
}
const UNIT = parseUnit(read('deploy/gateway/dronelake-agent.service'));
const SERVICE = UNIT.Service ?? {};
const one = (key: string): string | undefined => SERVICE[key]?.at(-1);

const COMPOSE = parseYaml(read('deploy/docker/compose.yaml'), { merge: true }) as {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
};
interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile: string };
  command?: string[] | string;
  entrypoint?: string[] | string;
  environment?: Record<string, string | number | boolean> | string[];
  ports?: string[];
  healthcheck?: { test: string[] };
  profiles?: string[];
  depends_on?: Record<string, { condition: string }>;
  volumes?: string[];
}
/** Compose's ${VAR:-default} with the default, and $$ as $. */
const interpolate = (s: string): string => s.replace(/\$\{[A-Z_]+:-([^}]*)\}/g, '$1').replace(/\$\$/g, '$');
const composeEnv = (s: ComposeService): Record<string, string> => {
  const env = s.environment ?? {};
  if (Array.isArray(env)) return Object.fromEntries(env.map((e) => [e.split('=')[0]!, e.slice(e.indexOf('=') + 1)]));
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, interpolate(String(v))]));
};
const isDronelake = (image: string | undefined): boolean => image?.split(':')[0]?.split('/').at(-1) === 'dronelake';

const K8S_DIR = 'deploy/k8s';
const K8S_FILES = readdirSync(path.join(ROOT, K8S_DIR)).filter((f) => /\.ya?ml$/.test(f));
type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; annotations?: Record<string, string> }; spec?: any; data?: Record<string, string>; file: string };
const K8S: K8sObject[] = K8S_FILES.filter((f) => f !== 'kustomization.yaml').flatMap((file) =>
  parseAllDocuments(read(`${K8S_DIR}/${file}`)).flatMap((doc) => {
    if (doc.errors.length) throw new Error(`${file}: ${doc.errors[0]!.message}`);
    const obj = doc.toJS() as K8sObject | null;
    return obj ? [{ ...obj, file }] : [];
  }),
);
const KUSTOMIZATION = parseYaml(read(`${K8S_DIR}/kustomization.yaml`)) as { namespace: string; resources: string[]; images?: { name: string; newName?: string; newTag?: string }[] };
const WORKLOADS = K8S.filter((o) => ['Deployment', 'StatefulSet', 'DaemonSet'].includes(o.kind));

interface K8sContainer {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: {
    name: string;
    value?: string;
    valueFrom?: { secretKeyRef?: { name: string; key: string }; configMapKeyRef?: { name: string; key: string }; fieldRef?: { fieldPath: string } };
  }[];
  ports?: { name?: string; containerPort: number }[];
  readinessProbe?: K8sProbe;
  livenessProbe?: K8sProbe;
  startupProbe?: K8sProbe;
  volumeMounts?: { name: string; mountPath: string }[];
}
interface K8sProbe {
  httpGet?: { path: string; port: number | string };
}
const containersOf = (w: K8sObject): K8sContainer[] => w.spec.template.spec.containers as K8sContainer[];

/** Secrets the manifests need, as `name/key`. */
const secretsUsed = new Set<string>();

/** The dronelake invocation of a k8s container: its args after the ENTRYPOINT, or a `sh -c` line. */
function k8sInvocation(w: K8sObject, c: K8sContainer): Invocation {
  return k8sInvocationOf(w, c, 0);
}
/** The same, in the pod of StatefulSet ordinal `ordinal`. */
function k8sInvocationOf(w: K8sObject, c: K8sContainer, ordinal: number): Invocation {
  const where = `${w.file}: ${w.kind} ${w.metadata.name}, container ${c.name}`;
  const podName = `${w.metadata.name}-${ordinal}`;
  const env: Record<string, string> = {};
  for (const e of c.env ?? []) {
    if (e.value !== undefined) env[e.name] = e.value;
    else if (e.valueFrom?.fieldRef) {
      if (e.valueFrom.fieldRef.fieldPath !== 'metadata.name') throw new Error(`${where}: ${e.name} from ${e.valueFrom.fieldRef.fieldPath}`);
      env[e.name] = podName;
    } else if (e.valueFrom?.secretKeyRef) {
      secretsUsed.add(`${e.valueFrom.secretKeyRef.name}/${e.valueFrom.secretKeyRef.key}`);
      env[e.name] = 'sample-secret-value';
    } else if (e.valueFrom?.configMapKeyRef) {
      const cm = K8S.find((o) => o.kind === 'ConfigMap' && o.metadata.name === e.valueFrom!.configMapKeyRef!.name);
      env[e.name] = cm?.data?.[e.valueFrom.configMapKeyRef.key] ?? '';
    }
  }
  let argv: string[];
  if (c.command) {
    if (c.command.length !== 3 || c.command[0] !== 'sh' || c.command[1] !== '-c') throw new Error(`${where}: command is not sh -c "exec node ..."`);
    const words = shellWords(c.command[2]!, env);
    if (words.slice(0, 3).join(' ') !== ['exec', ...(ENTRYPOINT ?? [])].join(' ')) throw new Error(`${where}: the shell line does not exec the image's entrypoint`);
    argv = words.slice(3);
  } else argv = c.args ?? [];
  // --config FILE: the file of a ConfigMap volume mounted at FILE's directory.
  const configs: Record<string, string> = {};
  for (const [i, a] of argv.entries()) {
    if (argv[i - 1] !== '--config') continue;
    const mount = c.volumeMounts?.find((m) => m.mountPath === path.posix.dirname(a));
    const volume = (w.spec.template.spec.volumes as { name: string; configMap?: { name: string } }[]).find((v) => v.name === mount?.name);
    const cm = K8S.find((o) => o.kind === 'ConfigMap' && o.metadata.name === volume?.configMap?.name);
    const text = cm?.data?.[path.posix.basename(a)];
    if (text !== undefined) configs[a] = text;
  }
  return { where, argv, env, configs };
}

/** The Secret and key the broker's --registry file comes from, as `name/key`. */
async function registrySecret(): Promise<string> {
  const broker = WORKLOADS.find((w) => w.metadata.name === 'broker')!;
  const container = containersOf(broker)[0]!;
  const registry = String((await validate(k8sInvocation(broker, container))).registry);
  const mount = container.volumeMounts?.find((m) => m.mountPath === path.posix.dirname(registry));
  if (!mount || 'subPath' in mount) throw new Error(`--registry ${registry} is not in a volume mounted whole`);
  const volume = (broker.spec.template.spec.volumes as { name: string; secret?: { secretName: string } }[]).find((v) => v.name === mount.name);
  if (!volume?.secret) throw new Error(`--registry ${registry} is not in a Secret`);
  return `${volume.secret.secretName}/${path.posix.basename(registry)}`;
}

function composeInvocation(name: string, s: ComposeService): Invocation {
  const command = typeof s.command === 'string' ? s.command.split(/\s+/) : (s.command ?? []);
  return { where: `compose.yaml: service ${name}`, argv: command.map(interpolate), env: composeEnv(s), configs: {} };
}

/** Where each deploy file runs dronelake. */
function invocations(): Invocation[] {
  const exec = (one('ExecStart') ?? '').split(/\s+/);
  const unit: Invocation = {
    where: 'dronelake-agent.service: ExecStart',
    argv: exec.slice(1),
    // /etc/dronelake/agent.env, as install.sh writes it, with the values filled in.
    env: Object.fromEntries([...INSTALL_SH.matchAll(/'#?(DRONELAKE_[A-Z0-9_]+)=/g)].map((m) => [m[1]!, 'sample-secret-value'])),
    // install.sh installs agent.example.yaml as /etc/dronelake/agent.yaml.
    configs: { [`${shVar('CONFIG_DIR')}/agent.yaml`]: read('deploy/gateway/agent.example.yaml') },
  };
  const compose = Object.entries(COMPOSE.services)
    .filter(([, s]) => isDronelake(s.image))
    .map(([name, s]) => composeInvocation(name, s));
  const k8s = WORKLOADS.flatMap((w) => containersOf(w).filter((c) => isDronelake(c.image)).map((c) => k8sInvocation(w, c)));
  return [unit, ...compose, ...k8s];
}

// --- the tests ------------------------------------------------------------------------------

describe('deploy files: commands, flags, config keys and environment variables exist', () => {
  it('the routes the probes use are served by every component', () => {
    expect(ROUTES).toEqual({ health: '/health', metrics: '/metrics' });
    for (const file of ['broker/server.ts', 'sink/routes.ts', 'agent/agent.ts']) {
      expect(read(file), file).toContain('healthRoute(');
      expect(read(file), file).toContain('metricsRoute(');
    }
  });

  it('the validator rejects what the commands reject', async () => {
    const base = { where: 'test', env: {}, configs: {} };
    await expect(validate({ ...base, argv: ['broker', '--port', '1883', '--data-dir', '/var/lib/dronelake/broker'] })).resolves.toMatchObject({ port: 1883 });
    await expect(validate({ ...base, argv: ['broker', '--port', '1883'] })).rejects.toThrow(/--data-dir is required with --persistence level/);
    await expect(validate({ ...base, argv: ['broker', '--mqtt-port', '1883'] })).rejects.toThrow(/Unknown option '--mqtt-port'/);
    await expect(validate({ ...base, argv: ['brokr'] })).rejects.toThrow(/not a dronelake command/);
    await expect(validate({ ...base, argv: ['broker', '--host', '0.0.0.0'] })).rejects.toThrow(/not a loopback address/);
    await expect(validate({ ...base, argv: ['sink', '--http', '0.0.0.0:9100'] })).rejects.toThrow(/give --http-public/);
    await expect(validate({ ...base, argv: ['agent', '--gateway', 'g', '--spool', 's', '--http', '0.0.0.0:8080'] })).rejects.toThrow(/without --http-tokens/);
    await expect(validate({ ...base, argv: ['sink', '--lake', 's3://b/p', '--s3-endpoint', 'ftp://x'] })).rejects.toThrow(/--s3-endpoint/);
    await expect(validate({ ...base, argv: ['sink'], env: { DRONELAKE_SINK_LAKES: 's3://b/p' } })).rejects.toThrow(/DRONELAKE_SINK_LAKES is not an option of sink/);
    await expect(validate({ ...base, argv: ['sink'], env: { DRONELAKE_SINK_FLUSH_INTERVAL: '-1' } })).rejects.toThrow(/--flush-interval \(from DRONELAKE_SINK_FLUSH_INTERVAL\)/);
    await expect(validate({ ...base, argv: ['agent', '--config', '/c.yaml'], configs: { '/c.yaml': 'gateway: g\nspool: s\n#spoolMaxBytez: 1\n' } })).rejects.toThrow(
      /"spoolMaxBytez" is not an option/,
    );
    await expect(validate({ ...base, argv: ['agent', '--config', '/elsewhere.yaml'] })).rejects.toThrow(/no file this deployment provides/);
  });

  it.each(invocations().map((inv) => [inv.where, inv] as const))('%s', async (_, inv) => {
    const options = await validate(inv);
    expect(Object.keys(options).length).toBeGreaterThan(0);
  });

  it('every dronelake component in compose and k8s serves /health on a reachable --http', async () => {
    for (const inv of invocations().filter((i) => !i.where.startsWith('dronelake-agent.service'))) {
      const o = await validate(inv);
      expect(httpPort(o), `${inv.where}: --http`).toBeGreaterThan(0);
      expect(httpHost(o), `${inv.where}: --http must listen beyond loopback in a container`).toBe('0.0.0.0');
    }
  });
});

describe('gateway: systemd unit and install.sh', () => {
  it('the unit has the keys and hardening it must have', () => {
    expect(SERVICE.User).toEqual([shVar('SERVICE_USER')]);
    expect(shVar('SERVICE_USER')).toBe('dronelake');
    expect(SERVICE.StateDirectory).toEqual(['dronelake']);
    expect(shVar('STATE_DIR')).toBe('/var/lib/dronelake');
    expect(SERVICE.ReadWritePaths).toEqual([shVar('STATE_DIR')]);
    const exec = one('ExecStart')!.split(/\s+/);
    expect(exec[0], 'ExecStart runs the binary install.sh installs').toBe(`${shVar('PREFIX')}/bin/dronelake`);
    expect(exec.slice(1, 4)).toEqual(['agent', '--config', '/etc/dronelake/agent.yaml']);
    expect(shVar('CONFIG_DIR')).toBe('/etc/dronelake');
    expect(INSTALL_SH).toMatch(/install [^\n]*agent\.example\.yaml" "\$\{CONFIG_DIR\}\/agent\.yaml"/);
    expect(SERVICE.EnvironmentFile).toEqual(['-/etc/dronelake/agent.env']);
    // The node flags the gateway guide's sizing table measures (bench/agent-footprint.ts reads them here).
    expect(SERVICE.Environment).toEqual(['NODE_ENV=production', 'NODE_OPTIONS=--max-semi-space-size=1']);
    expect(one('Restart')).toMatch(/^(on-failure|always)$/);
    expect(Number(one('RestartSec'))).toBeGreaterThan(0);
    expect(UNIT.Unit?.StartLimitIntervalSec).toEqual(['0']);
    // The agent drains for up to 10 s on SIGTERM (deploy/cli/agent-command.ts), then closes.
    expect(read('deploy/cli/agent-command.ts')).toContain('agent.drain(10_000, true)');
    expect(Number(one('TimeoutStopSec'))).toBeGreaterThanOrEqual(20);
    const yes = ['NoNewPrivileges', 'ProtectHome', 'PrivateTmp', 'PrivateDevices', 'ProtectKernelTunables', 'ProtectKernelModules', 'ProtectKernelLogs', 'LockPersonality'];
    for (const key of yes) expect(SERVICE[key], key).toEqual(['yes']);
    expect(SERVICE.ProtectSystem).toEqual(['strict']);
    expect(SERVICE.MemoryDenyWriteExecute, "V8's JIT needs W+X memory").toEqual(['no']);
    expect(SERVICE.SystemCallArchitectures).toEqual(['native']);
    expect(SERVICE.CapabilityBoundingSet).toEqual(['']);
    expect(one('RestrictAddressFamilies')?.split(/\s+/).sort()).toEqual(['AF_INET', 'AF_INET6', 'AF_UNIX']);
    expect(UNIT.Install?.WantedBy).toEqual(['multi-user.target']);
  });

  it('the example config keeps the spool in the one directory the unit may write', () => {
    const example = parseYaml(read('deploy/gateway/agent.example.yaml')) as Record<string, unknown>;
    expect(String(example.spool).startsWith(`${shVar('STATE_DIR')}/`)).toBe(true);
    expect(example.username, 'the MQTT identity is the gateway id').toBe(example.gateway);
    // The secret never goes in the world-readable-by-group config.
    expect(Object.keys(example)).not.toContain('password');
  });

  it.skipIf(!HAS_SYSTEMD_ANALYZE)(
    `systemd-analyze verify passes${HAS_SYSTEMD_ANALYZE ? '' : ' (skipped: systemd-analyze is not installed)'}`,
    () => {
      // verify wants ExecStart's binary to exist, which it does only once install.sh ran: point
      // a copy at a stub. Everything else is the unit as shipped.
      const dir = mkdtempSync(path.join(TMP, 'unit-'));
      const stub = path.join(dir, 'dronelake');
      writeFileSync(stub, '#!/bin/sh\n');
      chmodSync(stub, 0o755);
      const unit = path.join(dir, 'dronelake-agent.service');
      writeFileSync(unit, read('deploy/gateway/dronelake-agent.service').replace(`${shVar('PREFIX')}/bin/dronelake`, stub));
      const r = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
      // verify exits 0 on unknown keys and bad values too, and only warns: any output fails.
      expect({ status: r.status, output: `${r.stdout}${r.stderr}`.trim() }).toEqual({ status: 0, output: '' });
    },
  );

  it('install.sh passes bash -n, prints its help, and refuses unknown options before doing anything', () => {
    const file = path.join(ROOT, 'deploy/gateway/install.sh');
    expect(spawnSync('bash', ['-n', file], { encoding: 'utf8' }).stderr).toBe('');
    const help = spawnSync('bash', [file, '--help'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^Usage: install\.sh /);
    const bad = spawnSync('bash', [file, '--bogus'], { encoding: 'utf8' });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain('unknown option --bogus');
    expect(INSTALL_SH).toMatch(/^set -euo pipefail$/m);
    expect(shVar('PACKAGE_VERSION'), 'install.sh installs this version of dronelake').toBe(pkg.version);
    expect(shVar('NODE_MAJOR_MIN')).toBe(/>=\s*(\d+)/.exec(pkg.engines.node)?.[1]);
    expect(INSTALL_SH).toContain('systemctl daemon-reload');
    expect(INSTALL_SH).toContain('systemctl enable --now');
    for (const f of ['dronelake-agent.service', 'agent.example.yaml']) expect(existsSync(path.join(ROOT, 'deploy/gateway', f)), f).toBe(true);
    expect(shVar('UNIT_NAME')).toBe('dronelake-agent.service');
  });

  it.skipIf(!HAS_SHELLCHECK)(`install.sh passes shellcheck${HAS_SHELLCHECK ? '' : ' (skipped: shellcheck is not installed)'}`, () => {
    const r = spawnSync('shellcheck', [path.join(ROOT, 'deploy/gateway/install.sh')], { encoding: 'utf8' });
    expect({ status: r.status, output: r.stdout }).toEqual({ status: 0, output: '' });
  });
});

describe('docker: Dockerfile and compose.yaml', () => {
  it('the Dockerfile builds from sources that exist and runs the built cli', () => {
    expect(ENTRYPOINT).toEqual(['node', '/app/dist/cli.js']);
    expect(pkg.bin.dronelake).toBe('deploy/dronelake.mjs');
    expect(read('tsup.config.ts')).toMatch(/cli: 'deploy\/cli\/cli\.ts'/);
    const froms = [...DOCKERFILE.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]);
    expect(froms).toEqual(['node:22-bookworm-slim', 'node:22-bookworm-slim']);
    expect(DOCKERFILE).toMatch(/^USER dronelake$/m);
    expect(DOCKERFILE).toMatch(new RegExp(`^HEALTHCHECK [^\\n]*\\\\\\n[^\\n]*'${ROUTES.health}'`, 'm'));
    const ignored = read('.dockerignore').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    for (const m of DOCKERFILE.matchAll(/^COPY (?!--from)(.+)$/gm)) {
      const parts = m[1]!.split(/\s+/);
      for (const src of parts.slice(0, -1)) {
        expect(existsSync(path.join(ROOT, src)), `COPY ${src}`).toBe(true);
        expect(ignored, `COPY ${src} is not in .dockerignore`).not.toContain(src);
      }
    }
    // The runtime reads proto/telemetry.proto next to dist/ (proto/schema.ts).
    expect(read('proto/schema.ts')).toContain("'../proto/telemetry.proto'");
    expect(DOCKERFILE).toContain('COPY --from=build /app/proto/telemetry.proto ./proto/telemetry.proto');
  });

  it('compose builds the dronelake image from the Dockerfile and pins every other image', () => {
    const composeDir = path.join(ROOT, 'deploy/docker');
    for (const [name, s] of Object.entries(COMPOSE.services)) {
      expect(s.image, `${name}: image`).toBeDefined();
      if (isDronelake(s.image)) {
        expect(s.image, name).toBe(DRONELAKE_IMAGE);
        const build = s.build!;
        expect(path.resolve(composeDir, build.context), `${name}: build context is the repository root`).toBe(ROOT);
        expect(existsSync(path.join(ROOT, build.dockerfile)), `${name}: ${build.dockerfile}`).toBe(true);
      } else {
        expect(s.image, `${name}: pinned`).toMatch(/^[^:]+:(?!latest$)[\w.-]+$/);
      }
    }
  });

  it('compose: ports, health checks and dependencies match what each component listens on', async () => {
    const services = COMPOSE.services;
    for (const [name, s] of Object.entries(services)) {
      for (const dep of Object.keys(s.depends_on ?? {})) {
        expect(services[dep], `${name} depends on ${dep}`).toBeDefined();
        // A service outside a profile cannot depend on one inside it.
        if (!s.profiles) expect(services[dep]!.profiles, `${name} depends on ${dep}, which is in a profile`).toBeUndefined();
      }
      for (const v of s.volumes ?? []) {
        const source = v.split(':')[0]!;
        if (!source.startsWith('.') && !source.startsWith('/')) expect(COMPOSE.volumes, `${name}: volume ${source}`).toHaveProperty(source);
      }
      if (!isDronelake(s.image)) continue;
      const inv = composeInvocation(name, s);
      const o = await validate(inv);
      const command = inv.argv[0]!;
      const listening = listeningPorts(command, o);
      for (const p of s.ports ?? []) expect(listening, `${name}: published ${p}`).toContain(Number(p.split(':').at(-1)));
      const test = s.healthcheck?.test.join(' ') ?? '';
      const url = /http:\/\/127\.0\.0\.1:(\d+)(\/[a-z]+)/.exec(test);
      expect(url, `${name}: health check`).not.toBeNull();
      expect(Number(url![1]), `${name}: health check port is --http's`).toBe(httpPort(o));
      expect(url![2]).toBe(ROUTES.health);
      const env = composeEnv(s);
      if (env.HEALTH_PORT !== undefined) expect(Number(env.HEALTH_PORT), `${name}: HEALTH_PORT`).toBe(httpPort(o));
      else expect(httpPort(o), `${name}: the image's HEALTHCHECK asks 9100`).toBe(9100);
      // Other variables: the AWS chain's, and the image's health check port.
      for (const key of Object.keys(env).filter((k) => !k.startsWith('DRONELAKE_'))) {
        expect(['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_REGION', 'HEALTH_PORT'], `${name}: ${key}`).toContain(key);
      }
      if (command === 'broker' && !o.registry) expect(o.allowAnonymous, `${name}: a broker on 0.0.0.0 without registry`).toBe(true);
      // The agent's token file is bind-mounted from beside compose.yaml.
      if (command === 'agent') {
        const mount = (s.volumes ?? []).find((v) => v.split(':')[1] === o.httpTokens);
        expect(mount, `${name}: --http-tokens ${String(o.httpTokens)} is mounted`).toBeDefined();
        expect(existsSync(path.join(ROOT, 'deploy/docker', mount!.split(':')[0]!)), `${name}: ${mount}`).toBe(true);
      }
    }
  });

  it('compose: the sink writes to the MinIO bucket the init container creates, and the cluster profile clusters', async () => {
    const s = COMPOSE.services;
    const sink = await validate(composeInvocation('sink', s.sink!));
    expect(sink).toMatchObject({ lake: 's3://dronelake/lake', s3Endpoint: 'http://minio:9000', s3PathStyle: true, broker: 'mqtt://broker:1883' });
    const init = [s['minio-init']!.command].flat().join(' ');
    expect(init).toContain(`mc mb --ignore-existing local/${String(sink.lake).split('/')[2]}`);
    expect(composeEnv(s.sink!).AWS_ACCESS_KEY_ID).toBe(composeEnv(s.minio!).MINIO_ROOT_USER);
    expect(composeEnv(s.sink!).AWS_SECRET_ACCESS_KEY).toBe(composeEnv(s.minio!).MINIO_ROOT_PASSWORD);
    // `compose run --rm sink query` reads the same lake.
    const query = await validate({ where: 'compose run sink query', argv: ['query'], env: composeEnv(s.sink!), configs: {} });
    expect(query).toMatchObject({ lake: sink.lake, s3Endpoint: sink.s3Endpoint, s3PathStyle: true });
    expect(await validate(composeInvocation('agent', s.agent!))).toMatchObject({ simulate: 50, broker: 'mqtt://broker:1883' });
    const cluster = Object.entries(s).filter(([, v]) => v.profiles?.includes('cluster'));
    expect(cluster.map(([n]) => n).sort()).toEqual(['agent-cluster', 'broker-a', 'broker-b', 'redis', 'sink-cluster']);
    for (const b of ['broker-a', 'broker-b']) expect((await validate(composeInvocation(b, s[b]!))).cluster).toBe('redis://redis:6379');
    expect((await validate(composeInvocation('agent-cluster', s['agent-cluster']!))).broker).toBe('mqtt://broker-a:1883');
    expect((await validate(composeInvocation('sink-cluster', s['sink-cluster']!))).broker).toBe('mqtt://broker-b:1883');
  });
});

describe('kubernetes manifests', () => {
  it('kustomization lists every manifest, and every object is in the namespace', () => {
    expect([...KUSTOMIZATION.resources].sort()).toEqual(K8S_FILES.filter((f) => f !== 'kustomization.yaml').sort());
    const ns = K8S.find((o) => o.kind === 'Namespace')!;
    expect(KUSTOMIZATION.namespace).toBe(ns.metadata.name);
    for (const o of K8S.filter((x) => x.kind !== 'Namespace')) expect(o.metadata.namespace, `${o.file}: ${o.kind} ${o.metadata.name}`).toBe(ns.metadata.name);
    expect(KUSTOMIZATION.images).toEqual([{ name: 'dronelake', newTag: pkg.version }]);
  });

  it('images: dronelake is the compose image, others are pinned; pods run as the image user', () => {
    for (const w of WORKLOADS) {
      const pod = w.spec.template.spec;
      for (const c of containersOf(w)) {
        if (isDronelake(c.image)) {
          expect(c.image).toBe(DRONELAKE_IMAGE);
          expect(pod.securityContext?.runAsUser, `${w.metadata.name}: the Dockerfile's user`).toBe(IMAGE_UID);
        } else expect(c.image, `${w.metadata.name}/${c.name}`).toMatch(/^[^:]+:(?!latest$)[\w.-]+$/);
      }
    }
    expect(IMAGE_UID).toBe(10001);
  });

  it('ports, probes, services and scrape annotations match what each component listens on', async () => {
    for (const w of WORKLOADS) {
      const labels = w.spec.template.metadata.labels as Record<string, string>;
      for (const [k, v] of Object.entries(w.spec.selector.matchLabels as Record<string, string>)) expect(labels[k], `${w.metadata.name}: selector`).toBe(v);
      for (const c of containersOf(w)) {
        const named = new Map((c.ports ?? []).map((p) => [p.name, p.containerPort]));
        const resolve = (port: number | string | undefined): number | undefined => (typeof port === 'string' ? named.get(port) : port);
        if (!isDronelake(c.image)) {
          for (const probe of [c.readinessProbe, c.livenessProbe]) expect(probe, `${w.metadata.name}/${c.name}: probes`).toBeDefined();
          continue;
        }
        const inv = k8sInvocation(w, c);
        const o = await validate(inv);
        const listening = listeningPorts(inv.argv[0]!, o);
        for (const p of c.ports ?? []) expect(listening, `${inv.where}: containerPort ${p.containerPort}`).toContain(p.containerPort);
        for (const [kind, probe] of [['readiness', c.readinessProbe], ['liveness', c.livenessProbe]] as const) {
          expect(probe?.httpGet, `${inv.where}: ${kind} probe`).toBeDefined();
          expect(probe!.httpGet!.path, `${inv.where}: ${kind} probe path`).toBe(ROUTES.health);
          expect(resolve(probe!.httpGet!.port), `${inv.where}: ${kind} probe port`).toBe(httpPort(o));
        }
        const annotations = w.spec.template.metadata.annotations as Record<string, string>;
        expect(annotations, inv.where).toMatchObject({
          'prometheus.io/scrape': 'true',
          'prometheus.io/port': String(httpPort(o)),
          'prometheus.io/path': ROUTES.metrics,
        });
      }
    }
    for (const svc of K8S.filter((o) => o.kind === 'Service')) {
      const selector = svc.spec.selector as Record<string, string>;
      const pods = WORKLOADS.filter((w) => Object.entries(selector).every(([k, v]) => w.spec.template.metadata.labels[k] === v));
      expect(pods.length, `Service ${svc.metadata.name} selects a workload`).toBe(1);
      const ports = containersOf(pods[0]!).flatMap((c) => c.ports ?? []);
      for (const p of svc.spec.ports as { name: string; port: number; targetPort: number | string }[]) {
        const target = ports.find((cp) => (typeof p.targetPort === 'string' ? cp.name === p.targetPort : cp.containerPort === p.targetPort));
        expect(target, `Service ${svc.metadata.name} port ${p.name} -> ${p.targetPort}`).toBeDefined();
        expect(p.port, `Service ${svc.metadata.name} port ${p.name}`).toBe(target!.containerPort);
      }
    }
  });

  it('the brokers are clustered over the Redis the manifests run, with the registry from a Secret', async () => {
    const broker = WORKLOADS.find((w) => w.metadata.name === 'broker')!;
    expect(broker.kind).toBe('Deployment');
    expect(broker.spec.replicas).toBeGreaterThanOrEqual(2);
    const inv = k8sInvocation(broker, containersOf(broker)[0]!);
    const o = await validate(inv);
    const redis = K8S.find((x) => x.kind === 'Service' && x.metadata.name === 'redis')!;
    expect(o.cluster).toBe(`redis://redis:${redis.spec.ports[0].port}`);
    expect(o.host).toBe('0.0.0.0');
    // The registry file is a key of a Secret mounted at its directory (no subPath: it must update).
    expect(await registrySecret()).toBe('broker-registry/registry.json');
  });

  it('the sinks: one StatefulSet replica per shard, each its own client id, staging on its volume, S3 credentials from a Secret', async () => {
    const sts = WORKLOADS.find((w) => w.metadata.name === 'sink')!;
    expect(sts.kind).toBe('StatefulSet');
    const container = containersOf(sts)[0]!;
    const shards = container.env!.find((e) => e.name === 'SINK_SHARDS')!.value;
    expect(Number(shards), 'SINK_SHARDS = replicas').toBe(sts.spec.replicas);
    const headless = K8S.find((o) => o.kind === 'Service' && o.metadata.name === sts.spec.serviceName)!;
    expect(headless.spec.clusterIP).toBe('None');
    for (let ordinal = 0; ordinal < sts.spec.replicas; ordinal++) {
      const inv = k8sInvocationOf(sts, container, ordinal);
      const o = await validate(inv);
      expect(o.shard).toEqual({ index: ordinal, count: Number(shards) });
      // Each shard connects as `{--client-id}-IofN` (sinkOptions.shard), which the broker lets the
      // sink identity hold: its id, a dash, any suffix.
      expect(sinkOptions.shard.describe).toContain("the client id gets '-IofN' appended");
      expect(o.clientId).toBe(o.username);
      const claim = (sts.spec.volumeClaimTemplates as { metadata: { name: string } }[])[0]!.metadata.name;
      const state = container.volumeMounts!.find((m) => m.name === claim)!.mountPath;
      expect(String(o.stagingDir).startsWith(`${state}/`), '--staging-dir is on the claim').toBe(true);
      expect(String(o.cacheDir).startsWith(`${state}/`), '--cache-dir is on the claim').toBe(true);
      expect(String(o.lake)).toMatch(/^s3:\/\//);
      expect(o.password, 'DRONELAKE_SINK_PASSWORD from the Secret').toBe('sample-secret-value');
    }
    const fromSecret = (name: string) => container.env!.find((e) => e.name === name)?.valueFrom?.secretKeyRef;
    expect(fromSecret('AWS_ACCESS_KEY_ID')).toBeDefined();
    expect(fromSecret('AWS_SECRET_ACCESS_KEY')).toBeDefined();
  });

  it("deploy/README.md tells how to create every Secret the manifests use", async () => {
    for (const w of WORKLOADS) for (const c of containersOf(w)) k8sInvocation(w, c);
    secretsUsed.add(await registrySecret());
    const guide = read('deploy/README.md');
    const deploy = guide.slice(guide.indexOf('## Kubernetes'));
    expect(guide.indexOf('## Kubernetes')).toBeGreaterThan(0);
    expect(secretsUsed.size).toBeGreaterThanOrEqual(4);
    for (const ref of secretsUsed) {
      const [name, key] = ref.split('/') as [string, string];
      const at = deploy.indexOf(`kubectl -n dronelake create secret generic ${name} `);
      expect(at, `deploy/README.md creates the secret ${name}`).toBeGreaterThan(0);
      // The command, up to the end of its last continued line.
      const command = deploy.slice(at).split(/(?<!\\)\n/)[0]!;
      expect(command, `deploy/README.md's secret ${name} has the key ${key}`).toMatch(new RegExp(`--from-(literal=${key}=|file=${key.replace('.', '\\.')}(=|\\s|$))`));
    }
  });
});

describe('a renamed option breaks these checks', () => {
  /** SPECS with one option of one command renamed, as a refactoring might. */
  const renamed = (command: string, key: string): Specs => {
    const spec = { ...SPECS[command]! };
    spec[`${key}Renamed`] = spec[key]!;
    delete spec[key];
    return { ...SPECS, [command]: spec };
  };

  it('every flag, config key and variable the deploy files use', async () => {
    let mutations = 0;
    for (const inv of invocations()) {
      const command = inv.argv[0]!;
      await validate({ ...inv });
      const used = new Set<string>();
      for (const a of inv.argv) if (a.startsWith('--')) used.add(camel(a.slice(2)));
      for (const text of Object.values(inv.configs)) for (const k of Object.keys(parseYaml(uncommentOptions(text)) as object)) used.add(camel(k));
      for (const e of Object.keys(inv.env)) if (e.startsWith(`DRONELAKE_${command.toUpperCase()}_`)) used.add(envKey(e.slice(`DRONELAKE_${command.toUpperCase()}_`.length)));
      for (const key of used) {
        expect(key in SPECS[command]!, `${inv.where}: ${key}`).toBe(true);
        await expect(validate({ ...inv }, renamed(command, key)), `${inv.where}: renaming ${command} --${key}`).rejects.toThrow(UsageError);
        mutations++;
      }
    }
    expect(mutations).toBeGreaterThan(100);
  });
});
