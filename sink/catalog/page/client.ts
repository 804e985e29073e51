// The product page's script, bundled with uPlot and its stylesheet into one file
// (dist/catalog-page.js) that the catalog serves: the page loads nothing from elsewhere.
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { isSet, num, objectiveStatus, OBJECTIVES, percent } from '../objectives-text';
import type { PageData } from '../page-data';

/** With tokens, the page is opened as /#token=ID.SECRET: the fragment never reaches a server or a log. */
const token = new URLSearchParams(location.hash.slice(1)).get('token');
const headers: Record<string, string> = token ? { Authorization: `Bearer ${token}` } : {};

type Child = Node | string | null | undefined | false;
function h(tag: string, attrs: Record<string, string> = {}, ...children: Child[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}
const SVG = 'http://www.w3.org/2000/svg';
function s(tag: string, attrs: Record<string, string | number>): SVGElement {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}
const table = (head: string[], rows: Child[][], attrs: Record<string, string> = {}): HTMLElement =>
  h('table', attrs, h('thead', {}, h('tr', {}, ...head.map((c) => h('th', {}, c)))), h('tbody', {}, ...rows.map((r) => h('tr', {}, ...r.map((c) => h('td', {}, c))))));
const section = (id: string, title: string, ...children: Child[]): HTMLElement => h('section', { id }, h('h2', {}, title), ...children);

function snippets(data: PageData): HTMLElement {
  const base = `${location.origin}/iceberg`;
  const glob = data.snippets.glob;
  const tokenLine = (setting: string) => (data.snippets.tokens ? setting : '');
  const engines: Array<[string, string]> = [
    ['DuckDB', `-- the files, with the partitions as columns\nSELECT * FROM read_parquet('${glob}', hive_partitioning = true);${data.table ? `\n-- or the Iceberg table (extension iceberg)\nSELECT * FROM iceberg_scan('${data.table.metadata_location}');` : ''}`],
    ['Spark', `spark.sql.catalog.dronelake=org.apache.iceberg.spark.SparkCatalog\nspark.sql.catalog.dronelake.type=rest\nspark.sql.catalog.dronelake.uri=${base}\n${tokenLine('spark.sql.catalog.dronelake.token=ID.SECRET\n')}-- then: SELECT * FROM dronelake.drones.telemetry`],
    ['Trino', `connector.name=iceberg\niceberg.catalog.type=rest\niceberg.rest-catalog.uri=${base}\n${tokenLine('iceberg.rest-catalog.security=OAUTH2\niceberg.rest-catalog.oauth2.token=ID.SECRET\n')}-- then: SELECT * FROM dronelake.drones.telemetry`],
    ['Polars', `import polars as pl\ndf = pl.scan_parquet("${glob}", hive_partitioning=True).collect()${data.table ? `\n# or the Iceberg table\ndf = pl.scan_iceberg("${data.table.metadata_location}").collect()` : ''}`],
    ['PyIceberg', `from pyiceberg.catalog import load_catalog\ncatalog = load_catalog("dronelake", type="rest", uri="${base}"${data.snippets.tokens ? ', token="ID.SECRET"' : ''})\ndf = catalog.load_table("drones.telemetry").scan().to_arrow()`],
  ];
  return section(
    'engines',
    'Read it from an engine',
    ...engines.map(([name, code]) => {
      const pre = h('pre', { 'data-engine': name }, code);
      const copy = h('button', { type: 'button' }, 'copy');
      copy.addEventListener('click', () => void navigator.clipboard?.writeText(code).then(() => (copy.textContent = 'copied')));
      return h('div', { class: 'snippet' }, h('h3', {}, name, ' ', copy), pre);
    }),
  );
}

const CHARTS: Array<{ title: string; unit: string; series: Array<{ label: string; values: (d: PageData['history']) => Array<number | null>; color: string }> }> = [
  { title: 'freshness', unit: 's', series: [{ label: 'newest row age (s)', values: (d) => d.freshness_s, color: '#2a6' }] },
  { title: 'error rate', unit: '%', series: [{ label: 'rejected (%)', values: (d) => d.error_rate.map((r) => r * 100), color: '#c33' }] },
  { title: 'missing entries', unit: 'points', series: [{ label: 'missing', values: (d) => d.missing_entries, color: '#a60' }] },
  { title: 'throughput', unit: 'rows/s', series: [{ label: 'rows/s', values: (d) => d.throughput, color: '#36c' }] },
  {
    title: 'commit latency',
    unit: 'ms',
    series: [
      { label: 'p50 (ms)', values: (d) => d.latency_p50_ms, color: '#639' },
      { label: 'p99 (ms)', values: (d) => d.latency_p99_ms, color: '#c6c' },
    ],
  },
];

/** The charts' section, and the function that draws them once it is in the document. */
function charts(data: PageData): { el: HTMLElement; draw(days: number): void } {
  const holder = h('div', { class: 'charts' });
  const buttons = ([['24 h', 1], ['7 days', 7]] as const).map(([label, days]) => {
    const b = h('button', { type: 'button', 'data-days': String(days) }, label);
    b.addEventListener('click', () => draw(days));
    return b;
  });
  let plots: uPlot[] = [];
  function draw(days: number): void {
    for (const p of plots) p.destroy();
    holder.replaceChildren();
    const from = Date.now() / 1000 - days * 86_400;
    const start = data.history.t.findIndex((t) => t >= from);
    const slice = <T>(values: T[]): T[] => (start < 0 ? [] : values.slice(start));
    const t = slice(data.history.t);
    plots = CHARTS.map((c) => {
      const box = h('figure', { class: 'chart', 'data-chart': c.title }, h('figcaption', {}, `${c.title}, last ${days === 1 ? '24 h' : '7 days (before the last 24 h, 10-minute buckets: the worst window of each, the mean throughput)'}`));
      holder.append(box);
      return new uPlot(
        {
          width: 460,
          height: 180,
          scales: { x: { time: true, range: [from, Date.now() / 1000] } },
          series: [{}, ...c.series.map((sr) => ({ label: sr.label, stroke: sr.color, width: 1.5, spanGaps: false, points: { show: t.length < 60 } }))],
          axes: [{}, { label: c.unit, size: 60 }],
          legend: { show: true },
        },
        [t, ...c.series.map((sr) => slice(sr.values(data.history)))] as uPlot.AlignedData,
        box,
      );
    });
    for (const b of buttons) b.classList.toggle('on', b.dataset['days'] === String(days));
  }
  return { el: h('div', {}, h('p', {}, 'history: ', ...buttons, ` (${data.history_windows} quality windows in 7 days)`), holder), draw };
}

/** The objectives as `dronelake catalog` prints them: the ones set, each with its promise, its status and its value now. */
function objectives(data: PageData): HTMLElement {
  const rows = data.report.slos.filter(isSet).map((o) => {
    const status = objectiveStatus(o);
    const text = OBJECTIVES[o.property];
    return h(
      'tr',
      { 'data-objective': o.property, class: status === 'BREACHED' ? 'bad' : '' },
      h('td', {}, text.name),
      h('td', { 'data-field': 'status' }, status),
      h('td', { 'data-field': 'promise' }, text.promise(o.target)),
      h('td', { 'data-field': 'now' }, text.now(o.actual)),
    );
  });
  return h('table', { id: 'objectives-table' }, h('thead', {}, h('tr', {}, h('th', {}, 'objective'), h('th', {}, 'status'), h('th', {}, 'promise'), h('th', {}, 'now'))), h('tbody', {}, ...rows));
}

function quality(data: PageData): HTMLElement {
  const q = data.report.quality;
  const figure = (name: string, value: string) => h('div', { class: 'figure', 'data-figure': name }, h('span', { class: 'value' }, value), h('span', { class: 'label' }, name.replaceAll('_', ' ')));
  return h(
    'div',
    { class: 'figures' },
    figure('rows', String(q.rows)),
    figure('error_rate', percent(q.error_rate)),
    figure('missing_entries', String(q.missing_entries)),
    figure('rejected_points', String(q.rejected_points)),
    figure('duplicates_dropped', String(q.duplicates_dropped)),
    figure('drones', String(q.drones)),
    figure('throughput', `${num(data.report.throughput.rows_per_second, 1)} rows/s`),
  );
}

function quarantine(data: PageData): HTMLElement {
  const reasons = [...Object.entries(data.quarantine.points_by_reason).map(([r, n]) => ['point', r, n] as const), ...Object.entries(data.quarantine.batches_by_reason).map(([r, n]) => ['batch', r, n] as const)].filter(([, , n]) => n > 0);
  return section(
    'quarantine',
    'Quarantine',
    reasons.length === 0 ? h('p', {}, 'nothing kept aside: no input was rejected') : table(['kind', 'reason', 'count'], reasons.map(([k, r, n]) => [k, r, String(n)]), { id: 'quarantine-table' }),
    data.quarantine.examples.length > 0 && h('h3', {}, 'examples'),
    data.quarantine.examples.length > 0 && table(['reason', 'received', 'gateway', 'what'], data.quarantine.examples.map((e) => [e.reason, e.received_at, e.gateway_id ?? '-', h('code', {}, e.detail.slice(0, 200))])),
  );
}

const PALETTE = ['#36c', '#c33', '#2a6', '#a60', '#639', '#0aa', '#c6c', '#666'];
function tracks(data: PageData): HTMLElement {
  if (data.tracks.length === 0) return section('tracks', 'Tracks, last hour', h('p', {}, 'no drone reported a position in the last hour'));
  const all = data.tracks.flatMap((t) => t.path);
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const span = Math.max(x1 - x0, y1 - y0, 1e-4);
  const W = 480;
  const px = (p: [number, number]): string => `${(((p[0] - x0) / span) * (W - 20) + 10).toFixed(1)},${(W - 10 - ((p[1] - y0) / span) * (W - 20)).toFixed(1)}`;
  const svg = s('svg', { viewBox: `0 0 ${W} ${W}`, width: W, height: W, id: 'tracks-plot', role: 'img' });
  data.tracks.forEach((t, i) => {
    const color = PALETTE[i % PALETTE.length]!;
    svg.append(s('polyline', { points: t.path.map(px).join(' '), fill: 'none', stroke: color, 'stroke-width': 1.5, 'data-drone': t.drone_id }));
    const [cx, cy] = px(t.path.at(-1)!).split(',');
    svg.append(s('circle', { cx: cx!, cy: cy!, r: 4, fill: color }));
  });
  const state = ['drone_id', 'ts', 'lat', 'lon', 'alt_m', 'ground_speed_mps', 'battery_pct', 'flight_state', 'gps_fix'];
  return section(
    'tracks',
    'Tracks, last hour',
    h('div', { class: 'row' }, svg, table(state.map((c) => c.replace(/_/g, ' ')), data.tracks.map((t) => state.map((c) => (c === 'drone_id' ? t.drone_id : String(t.latest[c] ?? '-')))), { id: 'latest-state' })),
  );
}

function live(data: PageData): HTMLElement {
  const out = section('live', 'Live');
  if (!data.live) {
    out.append(h('p', {}, 'The live port is served by a sink started with --live; this server has none.'));
    return out;
  }
  const status = h('p', { id: 'live-status' }, 'connecting…');
  const latest = h('tbody');
  out.append(status, h('table', {}, h('thead', {}, h('tr', {}, ...['drone', 'ts', 'lat', 'lon', 'battery %', 'state'].map((c) => h('th', {}, c)))), latest));
  const byDrone = new Map<string, HTMLElement>();
  let points = 0;
  // fetch, not EventSource: it can send the token.
  void (async () => {
    try {
      const res = await fetch('/live', { headers });
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      status.textContent = 'connected, waiting for points';
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const message = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = /^event: (.*)$/m.exec(message)?.[1];
          const json = /^data: (.*)$/m.exec(message)?.[1];
          if (event !== 'points' || json === undefined) continue;
          const rows = JSON.parse(json) as Array<Record<string, unknown>>;
          points += rows.length;
          const row = rows.at(-1)!;
          const id = String(row['drone_id']);
          const tr = h('tr', {}, ...['drone_id', 'ts', 'lat', 'lon', 'battery_pct', 'flight_state'].map((c) => h('td', {}, String(row[c] ?? '-'))));
          const old = byDrone.get(id);
          if (old) old.replaceWith(tr);
          else latest.append(tr);
          byDrone.set(id, tr);
          status.textContent = `${points} points received since the page opened`;
        }
      }
      status.textContent = `the live stream ended after ${points} points`;
    } catch (err) {
      status.textContent = `live view unavailable: ${(err as Error).message}`;
    }
  })();
  return out;
}

function render(data: PageData): void {
  const p = data.report.product;
  const app = document.getElementById('app')!;
  const history = charts(data);
  app.replaceChildren(
    h(
      'header',
      {},
      h('h1', {}, `${p.name} `, h('small', {}, p.id)),
      h('p', { id: 'about' }, `domain ${p.domain} · version `, h('b', { 'data-field': 'version' }, p.version), ` · ${p.status} · owner `, h('b', { 'data-field': 'owner' }, data.ownership.owner), ` (team ${data.ownership.team}) · support `, h('a', { href: data.ownership.support }, data.ownership.support)),
      data.purpose && h('p', {}, data.purpose),
      h('p', { class: 'muted' }, `key: ${data.report.key} · as of ${data.generated_at}`),
    ),
    section('objectives', 'Objectives', objectives(data), quality(data), history.el),
    snippets(data),
    section(
      'contract',
      'Contract',
      table(['column', 'type', 'unit', 'description', 'key'], data.columns.map((c) => [h('code', {}, c.name), c.type, c.unit ?? '', c.description, c.primary_key ? 'primary key' : '']), { id: 'columns-table' }),
    ),
    quarantine(data),
    tracks(data),
    live(data),
    section('sample', 'Sample rows', data.sample.rows.length === 0 ? h('p', {}, 'no sample yet') : h('div', { class: 'scroll' }, table(data.sample.columns, data.sample.rows.map((r) => r.map((v) => (v === null ? '' : String(v)))), { id: 'sample-table' }))),
    section(
      'lineage',
      'Lineage',
      h('div', { class: 'lineage' }, h('div', { class: 'box' }, h('b', {}, 'input ports'), ...data.lineage.inputs.map((n) => h('div', {}, n))), '→', h('div', { class: 'box' }, h('b', {}, data.lineage.job)), '→', h('div', { class: 'box' }, h('b', {}, 'output ports'), ...data.lineage.outputs.map((n) => h('div', {}, n)))),
      h('p', { class: 'muted' }, data.lineage.last_event ? `last OpenLineage event: ${data.lineage.last_event}` : 'no OpenLineage event in the last 24 h'),
    ),
    section(
      'snapshots',
      'Table snapshots',
      data.table === null
        ? h('p', {}, 'not an Iceberg table yet')
        : h(
            'div',
            {},
            h('p', {}, 'metadata: ', h('code', {}, data.table.metadata_location)),
            table(['snapshot', 'parent', 'at', 'operation', 'added rows'], data.table.snapshots.map((sn) => [String(sn.id) + (sn.id === data.table!.current_snapshot_id ? ' (current)' : ''), sn.parent === null ? '-' : String(sn.parent), sn.at, sn.operation, sn.summary['added-records'] ?? '-']), { id: 'snapshots-table' }),
          ),
    ),
    section('documents', 'Documents', h('ul', {}, ...data.documents.map((d) => h('li', {}, h('a', { href: d.path }, d.path), ` ${d.description}`)))),
  );
  history.draw(1);
}

void (async () => {
  try {
    const res = await fetch('/catalog/page.json', { headers });
    const body = (await res.json()) as PageData | { error: string };
    if (!res.ok || 'error' in body) throw new Error('error' in body ? body.error : `HTTP ${res.status}`);
    render(body);
    // The first view is drawn, charts included: what the bench measures (catalog_page_first_view_*).
    performance.mark('catalog-first-view');
    document.body.dataset['ready'] = 'true';
  } catch (err) {
    document.getElementById('app')!.replaceChildren(h('p', { class: 'bad', id: 'load-error' }, `could not load the catalog: ${(err as Error).message}`));
    document.body.dataset['ready'] = 'error';
  }
})();
