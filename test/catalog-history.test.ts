import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catalogDocuments, type QualityWindow } from '../sink/catalog/documents';
import { historyOf } from '../sink/catalog/page-data';
import { windowEndsBetween } from '../sink/catalog/read';
import { compactTime, QUALITY_PREFIX, qualityDayPrefix } from '../sink/layout';
import { openLake } from '../sink/open-storage';
import { storageConfig } from '../sink/storage-options';
import type { LakeStorage } from '../sink/storage';
import { tempDir } from './helpers';

const MIN = 60_000;
const NOW = Date.UTC(2026, 11, 2, 10, 30);

function window(endMs: number, over: Partial<QualityWindow> = {}): QualityWindow {
  return {
    writer: 'sink-a',
    from: new Date(endMs - MIN).toISOString(),
    to: new Date(endMs).toISOString(),
    rows: 600,
    received_points: 600,
    missing_entries: 0,
    rejected_points: 0,
    undecodable_batches: 0,
    error_rate: 0,
    freshness_seconds: 2,
    latency_p50_ms: 900,
    latency_p99_ms: 1800,
    throughput_rows_per_second: 10,
    ...over,
  };
}

describe("the page's quality history", () => {
  it('is window by window for the last 24 h, and before that the worst window of each 10 minutes with the mean throughput', () => {
    const recent = [window(NOW - 2 * MIN, { writer: 'sink-a', rows: 300, received_points: 300, rejected_points: 3, freshness_seconds: 4 }), window(NOW - 2 * MIN, { writer: 'sink-b', rows: 300, received_points: 300, rejected_points: 1, freshness_seconds: 1 })];
    // Two days ago, ten windows in one bucket: one of them bad.
    const bucket = Math.floor((NOW - 2 * 86_400_000) / (10 * MIN)) * 10 * MIN;
    const old = Array.from({ length: 10 }, (_, i) => window(bucket + (i + 1) * MIN, i === 4 ? { freshness_seconds: 90, missing_entries: 7, rejected_points: 300, throughput_rows_per_second: 20 } : {}));
    const h = historyOf([...old, ...recent], NOW);
    expect(h.t).toEqual([(bucket + 10 * MIN) / 1000, (NOW - 2 * MIN) / 1000]);
    expect(h.freshness_s).toEqual([90, 1]);
    expect(h.missing_entries).toEqual([7, 0]);
    expect(h.error_rate).toEqual([0.5, 4 / 600]);
    expect(h.throughput).toEqual([11, 20]);
    expect(h.latency_p99_ms).toEqual([1800, 1800]);
  });
});

describe('the listing of quality windows', () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  let storage: LakeStorage;
  const put = async (endMs: number) => {
    const key = `${QUALITY_PREFIX}/date=${new Date(endMs).toISOString().slice(0, 10)}/window-sink-a-${compactTime(endMs)}.json`;
    await mkdir(path.dirname(path.join(storage.root, key)), { recursive: true });
    await writeFile(path.join(storage.root, key), `${JSON.stringify(window(endMs))}\n`);
    return key;
  };

  beforeAll(async () => {
    tmp = await tempDir('catalog-history');
    storage = await openLake(storageConfig({ lake: tmp.dir }));
  });
  afterAll(async () => {
    await storage.close();
    await tmp.remove();
  });

  it('gives a sink the windows of the last day from the days they lie under, not from the whole history', async () => {
    const own = await tempDir('windows-day');
    const storage = await openLake(storageConfig({ lake: own.dir }));
    const from = NOW - 86_400_000;
    const putWindow = async (endMs: number, writer: string) => {
      const key = `${qualityDayPrefix(endMs)}window-${writer}-${compactTime(endMs)}.json`;
      await mkdir(path.dirname(path.join(storage.root, key)), { recursive: true });
      await writeFile(path.join(storage.root, key), `${JSON.stringify(window(endMs, { writer }))}\n`);
    };
    // Two sinks record the same window ends; one window is older than the day, one is past its end.
    for (const end of [from - MIN, from, from + 30 * MIN, NOW - MIN, NOW, NOW + MIN]) {
      await putWindow(end, 'sink-x');
      await putWindow(end, 'sink-y');
    }
    const listed: string[] = [];
    const counted: LakeStorage = Object.assign(Object.create(storage) as LakeStorage, {
      list: (prefix: string) => {
        listed.push(prefix);
        return storage.list(prefix);
      },
    });
    const ends = await windowEndsBetween(counted, from, NOW);
    expect(ends.sort((a, b) => a - b)).toEqual([from, from + 30 * MIN, NOW - MIN, NOW]);
    expect(listed).toEqual([qualityDayPrefix(from), qualityDayPrefix(NOW)]);
    await storage.close();
    await own.remove();
  });

  it('lists the days of the page’s history and one more, never the older history', async () => {
    const own = await tempDir('windows-kept');
    const lake = await openLake(storageConfig({ lake: own.dir }));
    const listed: string[] = [];
    const counted: LakeStorage = Object.assign(Object.create(lake) as LakeStorage, {
      list: (prefix: string) => {
        listed.push(prefix);
        return lake.list(prefix);
      },
    });
    const putIn = async (endMs: number) => {
      const key = `${qualityDayPrefix(endMs)}window-sink-k-${compactTime(endMs)}.json`;
      await mkdir(path.dirname(path.join(lake.root, key)), { recursive: true });
      await writeFile(path.join(lake.root, key), `${JSON.stringify(window(endMs))}\n`);
      return key;
    };
    const old = await putIn(NOW - 30 * 86_400_000);
    const kept = [await putIn(NOW - 8 * 86_400_000), await putIn(NOW - 86_400_000), await putIn(NOW)];
    const docs = catalogDocuments(counted, (key, err) => {
      throw new Error(`${key}: ${err.message}`);
    });
    const keys = (await docs.listWindows(NOW)).map((o) => o.key);
    expect(keys).toEqual(kept);
    expect(keys).not.toContain(old);
    // Nine day directories, from eight days back to today, and no listing of the whole history.
    expect(listed).toHaveLength(9);
    expect(listed.every((prefix) => prefix >= qualityDayPrefix(NOW - 8 * 86_400_000) && prefix <= qualityDayPrefix(NOW))).toBe(true);
    await lake.close();
    await own.remove();
  });

  it('is what a full listing gives, listing again only the days still open, and all of it every 10 minutes', async () => {
    const docs = catalogDocuments(storage, (key, err) => {
      throw new Error(`${key}: ${err.message}`);
    });
    const keys = [await put(NOW - 3 * 86_400_000), await put(NOW - 86_400_000), await put(NOW - MIN)];
    const full = async () => (await storage.list(`${QUALITY_PREFIX}/`)).map((o) => o.key);
    expect((await docs.listWindows(NOW)).map((o) => o.key)).toEqual(keys);
    // Today's new window shows at once; one put into a closed day (no sink does that) only at the next full listing.
    const today = await put(NOW);
    const late = await put(NOW - 2 * 86_400_000);
    expect((await docs.listWindows(NOW + 1000)).map((o) => o.key)).toEqual([...keys, today].sort());
    expect((await docs.listWindows(NOW + 11 * MIN)).map((o) => o.key)).toEqual(await full());
    expect(await full()).toContain(late);
    // Past midnight plus the margin, yesterday is closed: listed once more, then kept.
    const midnight = Date.UTC(2026, 11, 3);
    const lastOfDay = await put(midnight - 1000);
    expect((await docs.listWindows(midnight + 61 * MIN)).map((o) => o.key)).toEqual(await full());
    expect((await docs.listWindows(midnight + 62 * MIN)).map((o) => o.key)).toContain(lastOfDay);
    expect((await docs.listWindows(midnight + 62 * MIN)).map((o) => o.key)).toEqual(await full());
  });
});
