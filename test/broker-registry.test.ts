import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ownerOf } from '../broker/auth';
import { checkBrokerOptions } from '../broker/options';
import { PacketSizer } from '../broker/packet-size';
import { addIdentity, readRegistry, writeRegistry, type Registry } from '../broker/registry';
import { generateSecret, verifySecret } from '../broker/secrets';
import { TEST_COST } from './broker-helpers';
import { tempDir } from './helpers';

const header = (type: number, remaining: number): number[] => {
  const out = [type];
  do {
    out.push((remaining % 128) | (remaining >= 128 ? 0x80 : 0));
    remaining = Math.floor(remaining / 128);
  } while (remaining > 0);
  return out;
};
const packet = (type: number, bodyBytes: number) => Buffer.from([...header(type, bodyBytes), ...new Array<number>(bodyBytes).fill(7)]);

describe('packet sizes', () => {
  it('draws secrets of 43 base64url characters that never begin with a dash, which a command line would take for an option', () => {
    // One in 64 would, without the redraw: 2,000 draws would show about 31.
    const secrets = Array.from({ length: 2000 }, generateSecret);
    expect(secrets.filter((s) => s.startsWith('-'))).toEqual([]);
    expect(secrets.every((s) => /^[A-Za-z0-9_-]{43}$/.test(s))).toBe(true);
    expect(new Set(secrets).size).toBe(2000);
  });

  const stream = Buffer.concat([packet(0x10, 40), packet(0xc0, 0), packet(0x30, 200), packet(0x30, 16_383), packet(0x30, 16_384), packet(0xe0, 0)]);

  it('follows the framing however the bytes are cut, and finds the first packet over the limit at its header', () => {
    for (const cut of [1, 2, 3, 7, 64, 1000, stream.length]) {
      const sizer = new PacketSizer();
      const found: number[] = [];
      for (let i = 0; i < stream.length; i += cut) {
        const size = sizer.oversized(stream.subarray(i, i + cut), 16_387);
        if (size) found.push(size);
        if (size) break;
      }
      // 16,383 body bytes take a 2-byte length (16,386 in all); 16,384 take 3 (16,388).
      expect(found, `cut ${cut}`).toEqual([16_388]);
    }
    const all = new PacketSizer();
    expect(all.oversized(stream, 1 << 20)).toBe(0);
  });

  it('judges a packet by its header alone, before any of its body', () => {
    expect(new PacketSizer().oversized(Buffer.from(header(0x30, 200 * 1024 * 1024)), 1 << 20)).toBe(200 * 1024 * 1024 + 5);
    expect(new PacketSizer().oversized(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]), 1 << 20)).toBe(Infinity);
  });
});

describe('client ids', () => {
  const registry: Registry = new Map(['gw', 'gw-017', 'dronelake-sink', 'a.b_c'].map((id) => [id, { role: 'gateway' as const, secret: { ...TEST_COST, salt: '', hash: '' } }]));

  it.each([
    ['gw-017', 'gw-017'],
    ['gw-017-1', 'gw-017'],
    ['gw-017-telemetry-x', 'gw-017'],
    ['gw-018', 'gw'],
    ['gw', 'gw'],
    ['dronelake-sink-acks', 'dronelake-sink'],
    ['a.b_c-9', 'a.b_c'],
    ['gw017', undefined],
    ['gw_017', undefined],
    ['-gw', undefined],
    ['x-gw-017', undefined],
  ])('%s belongs to %s', (clientId, owner) => {
    expect(ownerOf(registry, clientId)).toBe(owner);
  });
});

describe('the registry file', () => {
  it('keeps salted scrypt hashes with their cost, never a secret, in a 0600 file replaced whole', async () => {
    const { dir, remove } = await tempDir('registry');
    try {
      const file = path.join(dir, 'registry.json');
      const registry: Registry = new Map();
      const gw = await addIdentity(registry, 'gw-017', 'gateway', TEST_COST);
      const sink = await addIdentity(registry, 'dronelake-sink', 'sink');
      expect(gw).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(gw).not.toBe(sink);
      await writeRegistry(file, registry);

      expect((await stat(file)).mode & 0o777).toBe(0o600);
      expect(await readdir(dir)).toEqual(['registry.json']);
      const text = await readFile(file, 'utf8');
      expect(text).not.toContain(gw);
      expect(text).not.toContain(sink);
      const doc = JSON.parse(text) as { version: number; identities: Record<string, { role: string; scrypt: Record<string, unknown> }> };
      expect(doc.version).toBe(1);
      expect(doc.identities['gw-017']!.scrypt).toMatchObject({ N: 1024, r: 8, p: 1 });
      expect(doc.identities['dronelake-sink']!.scrypt).toMatchObject({ N: 16384, r: 8, p: 1 });

      const back = await readRegistry(file);
      expect([...back.keys()].sort()).toEqual(['dronelake-sink', 'gw-017']);
      expect(await verifySecret(Buffer.from(gw), back.get('gw-017')!.secret)).toBe(true);
      expect(await verifySecret(Buffer.from(sink), back.get('dronelake-sink')!.secret)).toBe(true);
      expect(await verifySecret(Buffer.from(sink), back.get('gw-017')!.secret)).toBe(false);

      // Same identities, same hashes, as YAML when the name says so.
      const yaml = path.join(dir, 'registry.yaml');
      await writeRegistry(yaml, back);
      expect(await readFile(yaml, 'utf8')).toMatch(/^version: 1\nidentities:\n {2}dronelake-sink:\n {4}role: sink\n/);
      expect(await readRegistry(yaml)).toEqual(back);

      await expect(addIdentity(back, 'gw-017', 'gateway')).rejects.toThrow('identity "gw-017" is already in the registry; remove it first to issue a new secret');
      await expect(addIdentity(back, 'gw/1', 'gateway')).rejects.toThrow('identity id "gw/1": expected 1-64 characters of A-Z a-z 0-9 . _ -');
    } finally {
      await remove();
    }
  });

  it.each([
    ['{"version": 1, "identities": {', /^--registry: F: not valid YAML or JSON: .+[^:]$/],
    ['', '--registry: F: is empty; a registry is {"version": 1, "identities": {...}}'],
    ['{"identities": {}}', '--registry: F: version: Invalid input: expected 1'],
    ['{"version": 1, "identities": {"gw/1": {"role": "sink", "scrypt": {"N": 1024, "r": 8, "p": 1, "salt": "AA==", "hash": "AA=="}}}}', '--registry: F: identities.gw/1: expected 1-64 characters of A-Z a-z 0-9 . _ -'],
    ['{"version": 1, "identities": {"gw-1": {"role": "admin", "scrypt": {}}}}', "--registry: F: identities.gw-1.role: expected 'gateway', 'sink' or 'consumer'"],
    ['{"version": 1, "identities": {"gw-1": {"role": "sink", "password": "x", "scrypt": {"N": 1000, "r": 8, "p": 1, "salt": "AA==", "hash": "AA=="}}}}', /^--registry: F: identities\.gw-1/],
    ['version: 1\nidentities:\n  gw-1:\n    role: sink\n    scrypt: {N: 1000, r: 8, p: 1, salt: AA==, hash: AA==}\n', '--registry: F: identities.gw-1.scrypt.N: expected a power of 2'],
    ['- just\n- a list\n', /^--registry: F: the document: /],
  ])('refuses a malformed registry with one clear line: %j', async (text, message) => {
    const { dir, remove } = await tempDir('registry-bad');
    try {
      const file = path.join(dir, 'r.json');
      await writeFile(file, text);
      const err = await readRegistry(file).then(
        () => null,
        (e: Error) => e,
      );
      expect(err).not.toBeNull();
      const line = err!.message.replaceAll(file, 'F');
      expect(line).not.toContain('\n');
      if (typeof message === 'string') expect(line).toBe(message);
      else expect(line).toMatch(message);
      await expect(readRegistry(path.join(dir, 'missing.json'))).rejects.toThrow(`--registry: cannot read ${path.join(dir, 'missing.json')}: ENOENT`);
    } finally {
      await remove();
    }
  });
});

describe('broker options', () => {
  const base = { host: '127.0.0.1', registry: undefined, allowAnonymous: false, tlsPort: undefined, tlsCert: undefined, tlsKey: undefined, tlsCa: undefined, tlsOnly: false, http: undefined, httpPublic: false };

  it('keeps an anonymous broker on loopback unless told otherwise', () => {
    for (const host of ['127.0.0.1', '127.5.6.7', '::1', 'localhost']) expect(() => checkBrokerOptions({ ...base, host })).not.toThrow();
    for (const host of ['0.0.0.0', '::', '192.168.1.10', 'broker.example']) {
      expect(() => checkBrokerOptions({ ...base, host })).toThrow(`--host ${host} is not a loopback address`);
      expect(() => checkBrokerOptions({ ...base, host, allowAnonymous: true })).not.toThrow();
      expect(() => checkBrokerOptions({ ...base, host, registry: 'r.json' })).not.toThrow();
    }
    expect(() => checkBrokerOptions({ ...base, registry: 'r.json', allowAnonymous: true })).toThrow('--allow-anonymous and --registry exclude each other');
  });

  it('keeps /health and /metrics on loopback unless --http-public', () => {
    for (const http of ['127.0.0.1:9100', '[::1]:9100', 'localhost:9100']) expect(() => checkBrokerOptions({ ...base, http })).not.toThrow();
    expect(() => checkBrokerOptions({ ...base, http: '0.0.0.0:9100' })).toThrow(
      '--http 0.0.0.0:9100 is not a loopback address, and anyone who reaches it could read its /health and /metrics; give --http-public to accept that',
    );
    expect(() => checkBrokerOptions({ ...base, http: '[::]:9100', httpPublic: true })).not.toThrow();
  });

  it('wants TLS options together', () => {
    expect(() => checkBrokerOptions({ ...base, tlsPort: 8883 })).toThrow('--tls-port needs --tls-cert and --tls-key');
    expect(() => checkBrokerOptions({ ...base, tlsOnly: true })).toThrow('need --tls-port');
    expect(() => checkBrokerOptions({ ...base, tlsPort: 8883, tlsCert: 'c', tlsKey: 'k', tlsOnly: true })).not.toThrow();
  });
});
