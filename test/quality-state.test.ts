import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { positionValue, writerProperty } from '../sink/checkpoint';
import { newQualityLedger } from '../sink/quality';
import { loadState, QUALITY_STATE_PREFIX, saveState } from '../sink/quality-state';
import { localStorage, type LakeStorage } from '../sink/storage';
import { tempDir } from './helpers';

const T0 = Date.UTC(2026, 11, 6, 10);
const HOUR = 3_600_000;

describe('saved quality states', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0)) await c();
  });

  async function lake(): Promise<LakeStorage> {
    const { dir, remove } = await tempDir('states');
    cleanups.push(remove);
    const storage = await localStorage(dir, 'drones/_staging/test');
    await mkdir(storage.stagingDir, { recursive: true });
    return storage;
  }
  /** A ledger that has folded up to `toMs`, with `rows` rows: enough to tell states apart. */
  const ledgerAt = (toMs: number, rows: number) => ({ ...newQualityLedger(), toMs, rows });
  const table = (positions: Record<string, number>) => Object.fromEntries(Object.entries(positions).map(([w, commit]) => [writerProperty(w), positionValue({ commit, state: 0 })]));

  it('keeps a writer’s two newest, and a reader takes the newest of any writer', async () => {
    const storage = await lake();
    for (let h = 0; h < 4; h++) await saveState(storage, 'sink-a', T0 + h * HOUR, new Map([['sink-a', 10 * (h + 1)]]), ledgerAt(T0 + h * HOUR, h));
    await saveState(storage, 'sink-b', T0 + 2.5 * HOUR, new Map([['sink-b', 5]]), ledgerAt(T0 + 2.5 * HOUR, 99));
    const names = (await readdir(path.join(storage.root, QUALITY_STATE_PREFIX))).sort();
    expect(names).toEqual(['state-sink-a-20261206T120000000Z.json', 'state-sink-a-20261206T130000000Z.json', 'state-sink-b-20261206T123000000Z.json']);
    const state = await loadState(storage, table({ 'sink-a': 40, 'sink-b': 5 }), (key, err) => expect.fail(`${key}: ${err.message}`));
    expect(state?.writer).toBe('sink-a');
    expect(state?.ledger.rows).toBe(3);
    expect(state?.ledger.firstAt).toBe(Infinity);
    expect([...state!.taken]).toEqual([['sink-a', 40]]);
  });

  it('passes over a damaged state, and one that holds commits the table does not, saying why, to the next newest', async () => {
    const storage = await lake();
    await saveState(storage, 'sink-a', T0, new Map([['sink-a', 10]]), ledgerAt(T0, 1));
    await saveState(storage, 'sink-b', T0 + HOUR, new Map([['sink-b', 50]]), ledgerAt(T0 + HOUR, 2));
    await saveState(storage, 'sink-c', T0 + 2 * HOUR, new Map([['sink-c', 7]]), ledgerAt(T0 + 2 * HOUR, 3));
    await writeFile(path.join(storage.root, QUALITY_STATE_PREFIX, 'state-sink-c-20261206T120000000Z.json'), '{"version": 1, "writer": "sink-c", "saved_at": 3}');
    const skipped: string[] = [];
    // The table was made anew: sink-b's commits stop at 20.
    const state = await loadState(storage, table({ 'sink-a': 10, 'sink-b': 20, 'sink-c': 7 }), (key, err) => skipped.push(`${path.basename(key)}: ${err.message}`));
    expect(state?.writer).toBe('sink-a');
    expect(skipped).toEqual([
      'state-sink-c-20261206T120000000Z.json: not a valid quality state: saved_at: expected string, received number',
      'state-sink-b-20261206T110000000Z.json: it holds commit 50 of sink-b, which the table does not',
    ]);
    expect(await loadState(storage, table({ 'sink-a': 9 }), () => {})).toBeNull();
  });
});
