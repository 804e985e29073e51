import { mkdir } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { checkpointKey, checkRecord, emptyCommitCounts, positionValue, readNewCommits, readQuarantineCommits, RECORDS_PER_CHUNK, writerProperty, type CommitRecord } from '../sink/checkpoint';
import { commitTag, QUARANTINE_PREFIX } from '../sink/layout';
import { localStorage, putObject, type LakeStorage } from '../sink/storage';
import { tempDir } from './helpers';

const WRITER = 'sink-read';
const COMMITS = 600;

/** Commit `number` of the writer, naming the quarantine files it wrote. */
const record = (number: number, quarantine: string[] = []): CommitRecord =>
  checkRecord({
    version: 1,
    kind: 'commit',
    writer: WRITER,
    number,
    committed_at: new Date(Date.UTC(2026, 11, 1) + number * 5_000).toISOString(),
    files: [],
    quarantine,
    batches: { 'gw-1': [[number, number]] },
    points: {},
    streams: { 'd-1': { '7': [[number * 10, number * 10 + 9]] } },
    counts: emptyCommitCounts(),
  });
const quarantineKey = (number: number) => `${QUARANTINE_PREFIX}/points/date=2026-12-01/part-${commitTag(WRITER, number)}.ndjson`;

describe('reading a lake’s commit records', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0)) await c();
  });

  /** A lake whose writer committed 1..COMMITS, with a record past its position (a commit that never reached the table), and bad input in commits 10 and 20 and the one past the position. */
  async function lake(): Promise<{ storage: LakeStorage; properties: Record<string, string>; reads: string[] }> {
    const { dir, remove } = await tempDir('records');
    cleanups.push(remove);
    const storage = await localStorage(dir, 'drones/_staging/test');
    await mkdir(storage.stagingDir, { recursive: true });
    const withBadInput = new Set([10, 20, COMMITS + 1]);
    for (let n = 1; n <= COMMITS + 1; n++) {
      const quarantine = withBadInput.has(n) ? [quarantineKey(n)] : [];
      await putObject(storage, checkpointKey(WRITER, n), JSON.stringify(record(n, quarantine)), 'publish');
      for (const key of quarantine) await putObject(storage, key, '{}\n', 'publish');
    }
    const reads: string[] = [];
    // Every read the readers make, counted: the storage itself is the real one.
    const counted: LakeStorage = Object.assign(Object.create(storage) as LakeStorage, {
      read: (key: string) => {
        reads.push(key);
        return storage.read(key);
      },
    });
    return { storage: counted, properties: { [writerProperty(WRITER)]: positionValue({ commit: COMMITS, state: 0 }) }, reads };
  }

  it('hands every committed record over once, a chunk at a time, and none past the writer’s position', async () => {
    const { storage, properties } = await lake();
    const chunks: number[] = [];
    const numbers: number[] = [];
    await readNewCommits(storage, properties, (key, err) => expect.fail(`${key}: ${err.message}`), new Map(), (records) => {
      chunks.push(records.length);
      numbers.push(...records.map((r) => r.number));
    });
    expect(Math.max(...chunks)).toBe(RECORDS_PER_CHUNK);
    expect(chunks.length).toBe(Math.ceil(COMMITS / RECORDS_PER_CHUNK));
    expect(numbers.sort((a, b) => a - b)).toEqual(Array.from({ length: COMMITS }, (_, i) => i + 1));
  });

  it('refuses a record whose seq ranges run backwards, hold no whole numbers or sit under no stream id, naming the field', () => {
    const valid = record(1);
    const withStreams = (streams: unknown) => () => checkRecord({ ...valid, streams });
    const refusal = 'not a valid commit record: streams: not seq ranges by drone and stream';
    expect(withStreams({ 'd-1': { '7': [[5, 3]] } })).toThrow(refusal);
    expect(withStreams({ 'd-1': { '7': [[1.5, 3]] } })).toThrow(refusal);
    expect(withStreams({ 'd-1': { '7': [[-1, 3]] } })).toThrow(refusal);
    expect(withStreams({ 'd-1': { '7': [[1, 2, 3]] } })).toThrow(refusal);
    expect(withStreams({ 'd-1': { '7': [[1, 2 ** 53]] } })).toThrow(refusal);
    expect(withStreams({ 'd-1': { x7: [[1, 3]] } })).toThrow(refusal);
    expect(withStreams({ 'd-1': { '99999999999999999': [[1, 3]] } })).toThrow(refusal);
    expect(withStreams({ 'd-1': [[1, 3]] })).toThrow(refusal);
    expect(withStreams([])).toThrow(refusal);
    expect(checkRecord({ ...valid, streams: { 'd-1': { '7': [[1, 3]], '0': [] } } }).streams).toEqual({ 'd-1': { '7': [[1, 3]], '0': [] } });
  });

  it('reads, for the quarantine, only the records of commits that wrote quarantine files', async () => {
    const { storage, properties, reads } = await lake();
    const named: string[] = [];
    await readQuarantineCommits(storage, properties, (key, err) => expect.fail(`${key}: ${err.message}`), (records) => named.push(...records.flatMap((r) => r.quarantine)));
    expect(named.sort()).toEqual([quarantineKey(10), quarantineKey(20)]);
    expect(reads.sort()).toEqual([checkpointKey(WRITER, 10), checkpointKey(WRITER, 20)]);
  });
});
