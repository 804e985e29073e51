import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, tempDir } from './helpers';
import { spawn } from 'node:child_process';

// A smoke test of the bench's plumbing, not of its figures: timings are never asserted.
describe('npm run bench -- --quick', () => {
  it('prints a table and writes well-formed JSON', async () => {
    const { dir, remove } = await tempDir('bench');
    try {
      const child = spawn(process.execPath, [path.join(ROOT, 'dist', 'bench.js'), '--quick', '--only', 'ingest,sizes', '--out', dir], { cwd: ROOT });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      expect(code, stderr).toBe(0);
      expect(stdout).toMatch(/^section\s+figure\s+value\s+unit\n-+/);
      expect(stdout).toMatch(/server side\s+broker \+ sink, replayed batches of 1000\s+[\d,]+\s+points\/s/);
      expect(stdout).toMatch(/machine: \d+ cores/);

      const files = (await readdir(dir)).sort();
      expect(files).toHaveLength(2);
      expect(files[1]).toBe('latest-quick.json');
      const json = JSON.parse(await readFile(path.join(dir, files[0]!), 'utf8')) as Record<string, unknown>;
      expect(json['quick']).toBe(true);
      expect(json['machine']).toMatchObject({ cores: expect.any(Number), node: process.version });
      for (const key of ['ingest_points_per_sec', 'wire_bytes_per_point', 'parquet_bytes_per_point', 'ndjson_bytes_per_point', 'protobuf_bytes_per_point']) {
        expect(typeof json[key], key).toBe('number');
        expect(json[key] as number, key).toBeGreaterThan(0);
      }
      const figures = json['figures'] as Array<Record<string, unknown>>;
      expect(figures.length).toBeGreaterThan(5);
      for (const f of figures) expect(Object.keys(f).sort()).toEqual(['key', 'label', 'section', 'unit', 'value']);
    } finally {
      await remove();
    }
  });

  it('refuses an unknown section with a clear error', async () => {
    const child = spawn(process.execPath, [path.join(ROOT, 'dist', 'bench.js'), '--only', 'warp'], { cwd: ROOT });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code).toBe(1);
    expect(stderr).toContain('unknown section(s): warp; known: e2e, ingest, agent, latency, catchup, live, stages, sizes, lake, table, quality, wire, naive, mosquitto, catalog');
  });
});
