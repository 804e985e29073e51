import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import pino from 'pino';
import { startBroker } from '../broker/server';
import { encodeBatch } from '../proto/codec';
import { nowMicros } from '../proto/time';
import { telemetryTopic } from '../proto/topics';
import { GpsFix } from '../proto/types';
import { startCatalogServer } from '../sink/catalog/serve';
import { compactTime, QUALITY_PREFIX } from '../sink/layout';
import { sinkConfig } from '../sink/options';
import { startSink } from '../sink/sink';
import { storageConfig } from '../sink/storage-options';
import { figure, type BenchContext, type Figure } from './report';

const CHROMIUM = '/usr/bin/chromium';
const SECTION = 'catalog page';
const MINUTE_MS = 60_000;
const silent = pino({ level: 'silent' });

/** A lake a real sink wrote (a few thousand rows of 20 drones, some invalid), with one quality window of its own. */
async function realLake(lake: string): Promise<string> {
  const broker = await startBroker({ host: '127.0.0.1', port: 0 }, silent);
  const sink = await startSink(sinkConfig({ broker: broker.url, lake, flushInterval: 600, qualityWindow: 60 }), silent);
  const gateway = await mqtt.connectAsync(broker.url, { clientId: 'bench-catalog-gw' });
  try {
    const end = nowMicros() - 5_000_000;
    for (let d = 0; d < 20; d++) {
      const points = Array.from({ length: 150 }, (_, seq) => ({ drone_id: `d-${d}`, seq, ts: end - (150 - seq) * 1_000_000, lat: 47 + d / 100 + seq / 1e4, lon: 8 + seq / 1e4, battery_pct: d === 0 && seq < 5 ? 140 : 80, gps_fix: GpsFix.fix3d }));
      await gateway.publishAsync(telemetryTopic('bench-catalog'), Buffer.from(encodeBatch({ gateway_id: 'bench-catalog', batch_seq: d, sent_at: nowMicros(), points, dropped_points: 0 })), { qos: 1 });
    }
    const deadline = Date.now() + 30_000;
    while (sink.stats().batchesReceived < 20 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await sink.flush();
    await sink.catalog.closeWindow();
  } finally {
    await gateway.endAsync();
    await sink.close();
    await broker.close();
  }
  const dir = path.join(lake, QUALITY_PREFIX);
  const date = (await readdir(dir))[0]!;
  const file = (await readdir(path.join(dir, date)))[0]!;
  return readFile(path.join(dir, date, file), 'utf8');
}

/** Quality windows of a sink that ran every minute for `days`, shaped like the real one, with figures that move. */
async function addWindows(lake: string, template: string, fromMs: number, toMs: number): Promise<number> {
  const base = JSON.parse(template) as Record<string, unknown>;
  const writer = String(base['writer']);
  let n = 0;
  for (let end = Math.floor(toMs / MINUTE_MS) * MINUTE_MS; end > fromMs; end -= MINUTE_MS) {
    const wave = 0.5 + 0.5 * Math.sin(end / 3_600_000);
    const rows = Math.round(10_000 + 5_000 * wave);
    const window = { ...base, from: new Date(end - MINUTE_MS).toISOString(), to: new Date(end).toISOString(), rows, received_points: rows + 20, rejected_points: Math.round(20 * wave), error_rate: (20 * wave) / (rows + 20), missing_entries: end % 7 === 0 ? 3 : 0, freshness_seconds: 2 + 3 * wave, latency_p50_ms: 800 + 400 * wave, latency_p99_ms: 2000 + 1500 * wave, throughput_rows_per_second: rows / 60 };
    const key = `${QUALITY_PREFIX}/date=${new Date(end).toISOString().slice(0, 10)}/window-${writer}-${compactTime(end)}.json`;
    await mkdir(path.dirname(path.join(lake, key)), { recursive: true });
    await writeFile(path.join(lake, key), `${JSON.stringify(window)}\n`);
    n++;
  }
  return n;
}

/**
 * The product page's first view: from navigation to the page drawn, charts included (the
 * page's `catalog-first-view` mark), in headless Chromium, on a fresh `catalog serve` (cold:
 * nothing read yet) and again on the same one (warm, median of 3), with 1 and 7 days of
 * quality windows, one a minute.
 */
export async function runCatalogPage(ctx: BenchContext): Promise<Figure[]> {
  if (!existsSync(CHROMIUM)) return [figure(SECTION, 'catalog_page_first_view_ms_7d', `first view, 7 days of windows (not measured: ${CHROMIUM} is not installed)`, null, 'ms')];
  const { chromium } = await import('playwright-core');
  const lake = path.join(ctx.tmp, 'catalog-lake');
  ctx.progress('a lake written by a real sink');
  const template = await realLake(lake);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  // A browser and a server on a shared machine: the load says how far to trust the times.
  const figures: Figure[] = [figure(SECTION, 'catalog_page_load_average', 'load average (1 min) as the views began', os.loadavg()[0]!, '')];
  const now = Date.now();
  let written = 0;
  try {
    for (const days of [1, 7]) {
      // The newest day first, then the six before it.
      written += await addWindows(lake, template, now - days * 1440 * MINUTE_MS, now - written * MINUTE_MS);
      ctx.progress(`${written} quality windows (${days} d): first view`);
      const server = await startCatalogServer({ ...storageConfig({ lake }), http: '127.0.0.1:0' }, silent);
      try {
        const view = async (): Promise<number> => {
          const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
          try {
            await page.goto(`${server.url}/`);
            await page.waitForSelector('body[data-ready="true"]', { timeout: 30_000 });
            return Number(await page.evaluate("performance.getEntriesByName('catalog-first-view')[0].startTime"));
          } finally {
            await page.close();
          }
        };
        const cold = await view();
        const warm = [await view(), await view(), await view()].sort((a, b) => a - b)[1]!;
        const json = await (await fetch(`${server.url}/catalog/page.json`)).arrayBuffer();
        figures.push(
          figure(SECTION, `catalog_page_first_view_ms_${days}d_cold`, `first view, ${days} d of windows (${written}), fresh server`, cold, 'ms'),
          figure(SECTION, `catalog_page_first_view_ms_${days}d`, `first view, ${days} d of windows, server warm (median of 3)`, warm, 'ms'),
          figure(SECTION, `catalog_page_json_bytes_${days}d`, `page data, ${days} d of windows`, json.byteLength, 'bytes'),
        );
      } finally {
        await server.close();
      }
    }
  } finally {
    await browser.close();
  }
  return figures;
}
