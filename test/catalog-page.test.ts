import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import mqtt from 'mqtt';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type Broker } from '../broker/server';
import { isLoopback } from '../deploy/runtime/options';
import { encodeBatch } from '../proto/codec';
import { nowMicros } from '../proto/time';
import { telemetryTopic } from '../proto/topics';
import { FlightState, GpsFix, type TelemetryPoint } from '../proto/types';
import { TABLE_METADATA_PREFIX } from '../sink/layout';
import { sinkConfig } from '../sink/options';
import { startSink, type Sink } from '../sink/sink';
import { awayFromHourBoundary, cli, quietLog, ROOT, waitFor } from './helpers';
import { loadTable } from '../sink/table/metadata';
import { testLake, type TestLake } from './lakes';
import { HAS_SCHEMAS, loadValidators } from './schemas';

const CHROMIUM = '/usr/bin/chromium';
const HAS_CHROMIUM = existsSync(CHROMIUM);
const why = HAS_CHROMIUM ? '' : ` (skipped: ${CHROMIUM} is not installed; apt-get install chromium)`;
/** Where the screenshot goes: a test artifact, ignored by git. */
const ARTIFACTS = path.join(ROOT, 'test-artifacts');

const GW = 'gw-page';
const DRONES = 4;
const POINTS = 60;

/** A drone flying a circle of its own, one point every 2 s up to a few seconds ago. */
function flight(d: number, seqs: number[]): TelemetryPoint[] {
  const end = nowMicros() - 5_000_000;
  return seqs.map((seq) => {
    const a = (seq / POINTS) * 2 * Math.PI;
    return {
      drone_id: `d-${d}`,
      seq,
      ts: end - (POINTS - seq) * 2_000_000,
      lat: 47.37 + d * 0.01 + 0.004 * Math.sin(a),
      lon: 8.54 + d * 0.01 + 0.006 * Math.cos(a),
      alt_m: 480 + seq,
      battery_pct: 90 - seq / 2,
      gps_fix: GpsFix.fix3d,
      flight_state: FlightState.cruise,
    };
  });
}
const seqs = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

interface CatalogJson {
  quality: { rows: number; missing_entries: number; error_rate: number; rejected_points: number; rejected_points_by_reason: Record<string, number>; undecodable_batches: number };
  slos: Array<{ property: string; target: number; actual: number | null; met: boolean }>;
}

describe.skipIf(!HAS_CHROMIUM)(`the product page in headless Chromium, served by a real sink${why}`, () => {
  let broker: Broker;
  let sink: Sink;
  let lake: TestLake;
  let gateway: mqtt.MqttClient;
  let browser: Browser;
  let batchSeq = 0;
  let report: CatalogJson;

  async function send(payloads: Uint8Array[]): Promise<void> {
    const before = sink.stats().batchesReceived;
    for (const p of payloads) await gateway.publishAsync(telemetryTopic(GW), Buffer.from(p), { qos: 1 });
    await waitFor('every message taken', () => sink.stats().batchesReceived === before + payloads.length);
    await sink.flush();
  }
  const batch = (points: TelemetryPoint[]) => encodeBatch({ gateway_id: GW, batch_seq: batchSeq++, sent_at: nowMicros(), points, dropped_points: 0 });

  beforeAll(async () => {
    // The tracks are the last hour's, read from the current and the previous hour's partitions.
    await awayFromHourBoundary();
    lake = await testLake('local');
    broker = await startBroker({ host: '127.0.0.1', port: 0 }, quietLog);
    const config = sinkConfig({ ...lake.config, broker: broker.url, flushInterval: 600, missingAfter: 0, qualityWindow: 3600, http: '127.0.0.1:0', live: true, alertSilence: 0 });
    sink = await startSink(config, quietLog);
    gateway = await mqtt.connectAsync(broker.url, { clientId: `${GW}-1` });
    // Two quality windows: the first half of each flight, then the rest, where drone 3
    // skips seq 30-39 (10 missing entries), with 7 + 3 invalid points and a message that is no batch.
    await send(Array.from({ length: DRONES }, (_, d) => batch(flight(d, seqs(0, POINTS / 2 - 1)))));
    await sink.catalog.closeWindow();
    const invalid = [...flight(9, seqs(0, 6)).map((p) => ({ ...p, lat: 91 })), ...flight(9, seqs(7, 9)).map((p) => ({ ...p, battery_pct: 140 }))];
    const rest = Array.from({ length: DRONES }, (_, d) => batch(flight(d, d === 3 ? seqs(40, POINTS - 1) : seqs(POINTS / 2, POINTS - 1))));
    await send([...rest, batch(invalid), batch(flight(8, [0])).subarray(0, 12)]);
    await sink.catalog.closeWindow();
    const r = await cli(['catalog', ...lake.args, '--json']);
    expect(r.code, r.stderr).toBe(0);
    report = JSON.parse(r.stdout) as CatalogJson;
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await gateway?.endAsync();
    await sink?.close();
    await broker?.close();
    await lake?.remove();
  });

  /** The page, opened with every request checked: loopback only, and nothing else is even attempted. */
  async function open(): Promise<{ page: Page; requests: string[]; errors: string[] }> {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const requests: string[] = [];
    await context.route('**/*', (route) => {
      const url = new URL(route.request().url());
      requests.push(url.href);
      return isLoopback(url.hostname) || url.protocol === 'data:' ? route.continue() : route.abort();
    });
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${sink.http!}/`);
    await page.waitForSelector('body[data-ready]');
    if ((await page.getAttribute('body', 'data-ready')) !== 'true') throw new Error(`the page did not load: ${await page.locator('#load-error').textContent()}`);
    return { page, requests, errors };
  }

  it('shows the numbers `dronelake catalog --json` prints, charts with marks, tracks, quarantine, sample rows and the live view, and asks nothing of anyone but this server', async () => {
    expect(report.quality).toMatchObject({ rows: DRONES * POINTS - 10, missing_entries: 10, rejected_points: 10, undecodable_batches: 1 });
    const { page, requests, errors } = await open();
    const text = async (selector: string) => (await page.locator(selector).textContent())?.trim();

    // The figures, as the CLI's text output writes them.
    expect(await text('[data-figure="rows"] .value')).toBe(String(report.quality.rows));
    expect(await text('[data-figure="missing_entries"] .value')).toBe(String(report.quality.missing_entries));
    expect(await text('[data-figure="error_rate"] .value')).toBe(`${(report.quality.error_rate * 100).toFixed(2)} %`);
    expect(await text('[data-figure="rejected_points"] .value')).toBe(String(report.quality.rejected_points));
    // The objectives that were set (a minimum of 0 was not), each met or not as the CLI says, with its promise.
    const set = report.slos.filter((s) => !(s.target <= 0 && ['availability', 'throughput', 'retention'].includes(s.property)));
    expect(set.length).toBeGreaterThanOrEqual(4);
    expect(await page.locator('[data-objective]').count()).toBe(set.length);
    for (const slo of set) {
      expect(await text(`[data-objective="${slo.property}"] [data-field="status"]`), slo.property).toBe(slo.met ? 'met' : slo.actual === null ? 'no data' : 'BREACHED');
    }
    const errorRate = report.slos.find((s) => s.property === 'errorRate')!;
    expect(errorRate).toMatchObject({ target: 0.01, met: false });
    expect(await text('[data-objective="errorRate"] [data-field="now"]')).toBe(`${(errorRate.actual! * 100).toFixed(2)} %`);
    expect(await text('[data-objective="errorRate"] [data-field="promise"]')).toBe('at most 1 % of input rejected, last 24 h');

    // Five charts, each a canvas with its series drawn in its colour, not just axes.
    // In the page's own JavaScript: this project's types have no DOM outside the page's script.
    const marks = (await page.evaluate(`[...document.querySelectorAll('figure[data-chart]')].map((figure) => {
      const canvas = figure.querySelector('canvas');
      const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
      const [r, g, b] = getComputedStyle(figure.querySelector('.u-series:nth-child(2) .u-marker')).borderColor.match(/\\d+/g).map(Number);
      let n = 0;
      for (let i = 0; i < data.length; i += 4) if (Math.abs(data[i] - r) < 24 && Math.abs(data[i + 1] - g) < 24 && Math.abs(data[i + 2] - b) < 24 && data[i + 3] > 200) n++;
      return [figure.dataset.chart, n];
    })`)) as Array<[string, number]>;
    expect(marks.map(([name]) => name)).toEqual(['freshness', 'error rate', 'missing entries', 'throughput', 'commit latency']);
    for (const [name, n] of marks) expect(n, `pixels of ${name}'s series`).toBeGreaterThan(0);

    // The last hour's tracks: one line per drone with its latest state.
    expect(await page.locator('#tracks-plot polyline').count()).toBe(DRONES);
    expect(await page.locator('#latest-state tbody tr').count()).toBe(DRONES);
    expect(await text('#latest-state tbody tr:first-child td:first-child')).toBe('d-0');
    // The quarantine by reason, as the report counts it, with examples.
    const reasons = Object.fromEntries((await page.locator('#quarantine-table tbody tr').allTextContents()).map((t) => t.match(/^(point|batch)(\w+?)(\d+)$/)!.slice(2)).map(([r, n]) => [r, Number(n)]));
    expect(reasons).toEqual({ lat_range: 7, battery_pct_range: 3, undecodable: 1 });
    await expect(page.locator('#quarantine').getByText('"lat":91').count()).resolves.toBeGreaterThan(0);
    expect(await page.locator('#sample-table tbody tr').count()).toBeGreaterThan(0);
    expect(await page.locator('#columns-table tbody tr').filter({ hasText: 'primary key' }).count()).toBe(3);
    expect(await text('#lineage .lineage')).toContain('gateway-telemetry');
    expect(await text('#snapshots p')).toMatch(/^metadata: file:\/\/.*\/drones\/telemetry\/v1\/metadata\/v\d+\.metadata\.json$/);

    // The live view: points committed after the page opened appear in it.
    await waitFor('the live view to connect', async () => (await text('#live-status'))?.startsWith('connected') || undefined);
    await send([batch(flight(5, seqs(0, 4)))]);
    await waitFor('the live view to show 5 points', async () => (await text('#live-status')) === '5 points received since the page opened' || undefined, 10_000);

    await mkdir(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'catalog-page.png'), fullPage: true });
    expect(errors).toEqual([]);
    expect(requests.length).toBeGreaterThanOrEqual(3);
    expect(requests.filter((u) => !isLoopback(new URL(u).hostname))).toEqual([]);
  });

  it("lists the table's snapshots, the current one marked", async () => {
    const storage = await lake.open();
    const metadata = (await loadTable(storage))!.metadata;
    await storage.close();
    const { page, errors } = await open();
    const rows = await page.locator('#snapshots-table tbody tr').allTextContents();
    expect(rows).toHaveLength(metadata.snapshots.length);
    for (const s of metadata.snapshots) expect(rows.filter((r) => r.startsWith(String(s['snapshot-id'])) && r.endsWith(`${s.summary.operation}${s.summary['added-records']}`)), String(s['snapshot-id'])).toHaveLength(1);
    expect(rows.filter((r) => r.includes('(current)'))).toEqual([expect.stringMatching(new RegExp(`^${metadata['current-snapshot-id']} \\(current\\)`))]);
    expect(await page.locator('pre[data-engine="PyIceberg"]').textContent()).toContain(`uri="${sink.http!}/iceberg"`);
    expect(errors).toEqual([]);
  });

  it.skipIf(!HAS_SCHEMAS)(`serves a product descriptor that is valid ODPS, with the documents at the URLs it lists${HAS_SCHEMAS ? '' : ' (skipped: ../shared/schemas is not there)'}`, async () => {
    const product = (await (await fetch(`${sink.http!}/catalog/product`)).json()) as { managementPorts: Array<{ name: string; url?: string }> };
    expect(loadValidators()!.product(product)).toEqual([]);
    for (const name of ['contract', 'product', 'slo-status', 'quality-history', 'lineage']) {
      const port = product.managementPorts.find((p) => p.name === name)!;
      const res = await fetch(port.url!);
      expect(res.status, port.url).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/json');
    }
    const history = (await (await fetch(`${sink.http!}/catalog/quality?days=1`)).json()) as { windows: Array<{ rows: number }> };
    expect(history.windows.map((w) => w.rows)).toEqual([DRONES * POINTS / 2, DRONES * POINTS / 2 - 10]);
    const bad = await fetch(`${sink.http!}/catalog/lineage?days=30`);
    expect({ status: bad.status, body: await bad.json() }).toEqual({ status: 400, body: { error: 'days must be a whole number from 1 to 7, got "30"' } });
  });
});
