import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { telemetryTopic } from '../proto/topics';
import { closed, connect, HAS_MOSQUITTO, mosquitto, tryConnect } from './broker-helpers';
import { cli, logLines, runCli, tempDir, waitFor, type RunningProcess } from './helpers';

/** The broker's `broker listening` log line, once it is there. */
const listening = (p: RunningProcess) => waitFor('the broker to listen', () => logLines(p.stderr()).find((l) => l['msg'] === 'broker listening'));

describe('dronelake broker identity', () => {
  it('adds, lists and removes identities; the secret is the last line, kept only as a hash; the broker takes it', async () => {
    const { dir, remove } = await tempDir('identity-cli');
    const registry = path.join(dir, 'registry.json');
    let broker: RunningProcess | undefined;
    try {
      const added = await cli(['broker', 'identity', 'add', 'gw-017', '--role', 'gateway', '--registry', registry]);
      expect(added.code, added.stderr).toBe(0);
      const lines = added.stdout.trimEnd().split('\n');
      expect(lines.slice(0, -1)).toEqual([`added gateway gw-017 to ${registry}`, 'its secret (the MQTT password; shown this once, only its hash is kept):']);
      const secret = lines.at(-1)!;
      expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
      const sinkSecret = (await cli(['broker', 'identity', 'add', 'dronelake-sink', '--role', 'sink', '--registry', registry])).stdout.trimEnd().split('\n').at(-1)!;
      expect(sinkSecret).not.toBe(secret);

      expect((await stat(registry)).mode & 0o777).toBe(0o600);
      const text = await readFile(registry, 'utf8');
      expect(text).not.toContain(secret);
      expect(text).not.toContain(sinkSecret);
      expect(text).toContain('"scrypt"');
      expect((await cli(['broker', 'identity', 'list', '--registry', registry])).stdout).toBe('dronelake-sink  sink\ngw-017          gateway\n');

      broker = runCli(['broker', '--registry', registry, '--port', '0', '--persistence', 'memory']);
      const url = String((await listening(broker))['url']);
      expect(await tryConnect(url, { clientId: 'gw-017-1', username: 'gw-017', password: 'wrong' })).toBe(4);
      const gw = await connect(url, { clientId: 'gw-017-1', username: 'gw-017', password: secret });
      if (HAS_MOSQUITTO) {
        const port = new URL(url).port;
        const pub = await mosquitto('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '-i', 'gw-017-m', '-u', 'gw-017', '-P', secret, '-t', telemetryTopic('gw-017'), '-m', 'x', '-q', '1']);
        expect(pub.code, pub.stderr).toBe(0);
      }

      // Removing it cuts it off: the broker follows the file.
      const gone = closed(gw);
      const removed = await cli(['broker', 'identity', 'remove', 'gw-017', '--registry', registry]);
      expect(removed).toMatchObject({ code: 0, stdout: `removed gw-017 from ${registry}\n` });
      await gone;
      expect(await tryConnect(url, { clientId: 'gw-017-1', username: 'gw-017', password: secret })).toBe(4);
      expect((await cli(['broker', 'identity', 'list', '--registry', registry])).stdout).toBe('dronelake-sink  sink\n');

      broker.child.kill('SIGTERM');
      expect(await broker.exited).toBe(0);
      expect(logLines(broker.stderr()).map((l) => l['msg'])).toEqual(expect.arrayContaining(['connection refused', 'registry reloaded', 'broker stopped']));
    } finally {
      broker?.child.kill('SIGKILL');
      await remove();
    }
  });

  it('reports each mistake as one clear line and exits 2', async () => {
    const { dir, remove } = await tempDir('identity-errors');
    const registry = path.join(dir, 'registry.json');
    const bad = path.join(dir, 'bad.json');
    try {
      expect((await cli(['broker', 'identity', 'add', 'gw-1', '--role', 'gateway', '--registry', registry])).code).toBe(0);
      await writeFile(bad, '{"version": 1, "identities": {"gw-1": {"role": "gateway"}}}');
      await mkdir(path.join(dir, 'a-directory'));
      const cases: Array<[string[], string]> = [
        [['add', 'gw-2', '--role', 'admin', '--registry', registry], `--role: expected 'gateway', 'sink' or 'consumer' (got "admin")`],
        [['add', 'gw/2', '--role', 'gateway', '--registry', registry], 'identity id "gw/2": expected 1-64 characters of A-Z a-z 0-9 . _ -'],
        [['add', 'gw-1', '--role', 'gateway', '--registry', registry], 'identity "gw-1" is already in the registry; remove it first to issue a new secret'],
        [['add', '--role', 'gateway', '--registry', registry], 'the identity id is missing, e.g. dronelake broker identity add gw-017 --role gateway --registry FILE'],
        [['add', 'gw-2', '--registry', registry], '--role is required'],
        [['add', 'gw-2', '--role', 'gateway'], '--registry is required'],
        [['remove', 'gw-9', '--registry', registry], `identity "gw-9" is not in ${registry}`],
        [['list', '--registry', path.join(dir, 'missing.json')], `--registry: cannot read ${path.join(dir, 'missing.json')}: ENOENT`],
        [['list', '--registry', path.join(dir, 'a-directory')], `--registry: cannot read ${path.join(dir, 'a-directory')}: EISDIR`],
        [['list', '--registry', bad], `--registry: ${bad}: identities.gw-1.scrypt: Invalid input: expected object, received undefined`],
        [['add', 'gw-2', '--role', 'sink', '--registry', bad], `--registry: ${bad}: identities.gw-1.scrypt: Invalid input: expected object, received undefined`],
        [[], "broker identity needs a command: add, remove or list; run 'dronelake broker identity --help'"],
        [['rename'], `broker identity has no command "rename": add, remove or list; run 'dronelake broker identity --help'`],
      ];
      for (const [args, message] of cases) {
        const r = await cli(['broker', 'identity', ...args]);
        expect({ args, code: r.code, stderr: r.stderr, stdout: r.stdout }).toEqual({ args, code: 2, stderr: `dronelake: ${message}\n`, stdout: '' });
      }
      const started = await cli(['broker', '--registry', bad, '--port', '0', '--persistence', 'memory']);
      expect(started).toMatchObject({ code: 2, stderr: `dronelake: --registry: ${bad}: identities.gw-1.scrypt: Invalid input: expected object, received undefined\n` });
      await writeFile(bad, '{"version": 1, "identities": {');
      const broken = await cli(['broker', '--registry', bad, '--port', '0', '--persistence', 'memory']);
      expect(broken.code).toBe(2);
      expect(broken.stderr).toMatch(new RegExp(`^dronelake: --registry: ${bad}: not valid YAML or JSON: [^\\n]+\\n$`));
    } finally {
      await remove();
    }
  });
});

describe('dronelake broker, secure by default', () => {
  it.each([
    [
      ['--host', '0.0.0.0'],
      "--host 0.0.0.0 is not a loopback address, and without --registry anyone who reaches it could connect anonymously; give --registry FILE (see 'dronelake broker identity add --help'), or --allow-anonymous to accept that",
    ],
    [['--registry', 'r.json', '--allow-anonymous'], '--allow-anonymous and --registry exclude each other: with a registry every client authenticates'],
    [['--tls-port', '0'], '--tls-port needs --tls-cert and --tls-key'],
    [['--tls-port', '0', '--tls-cert', '/nonexistent/c.pem', '--tls-key', '/nonexistent/k.pem'], '--tls-cert: cannot read /nonexistent/c.pem: ENOENT'],
    [['--persistence', 'disk'], `--persistence: expected 'level' or 'memory' (got "disk")`],
  ])('refuses %j with one clear line, exit 2', async (args, message) => {
    const r = await cli(['broker', '--port', '0', '--persistence', 'memory', ...args]);
    expect(r).toMatchObject({ code: 2, stderr: `dronelake: ${message}\n`, stdout: '' });
  });

  it('listens beyond loopback without a registry only with --allow-anonymous, and says so', async () => {
    const open = runCli(['broker', '--host', '0.0.0.0', '--port', '0', '--allow-anonymous', '--persistence', 'memory', '--http', '127.0.0.1:0']);
    try {
      const line = await listening(open);
      expect(line['url']).toMatch(/^mqtt:\/\/0\.0\.0\.0:\d+$/);
      expect(logLines(open.stderr())).toContainEqual(expect.objectContaining({ level: 40, msg: 'accepting anonymous clients beyond loopback (--allow-anonymous)', host: '0.0.0.0' }));
      const port = new URL(String(line['url'])).port;
      const anyone = await connect(`mqtt://127.0.0.1:${port}`, { clientId: 'anyone' });
      await anyone.endAsync();
      const health = await fetch(`${String(line['http'])}/health`);
      expect(health.status).toBe(200);
    } finally {
      open.child.kill('SIGTERM');
      expect(await open.exited).toBe(0);
    }

    const local = runCli(['broker', '--port', '0', '--persistence', 'memory']);
    try {
      await listening(local);
      expect(logLines(local.stderr())).toContainEqual(expect.objectContaining({ level: 30, msg: 'no --registry: accepting anonymous clients, on loopback only', host: '127.0.0.1' }));
    } finally {
      local.child.kill('SIGTERM');
      expect(await local.exited).toBe(0);
    }
  });
});
