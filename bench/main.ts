// `npm run bench [-- --quick] [-- --only a,b]`: every figure of the bench suite, side by
// side in one run. Prints a table and writes JSON to bench/results/. Never fails on a timing.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { runAgentFootprint } from './agent-footprint';
import { runLakeLayout } from './lake-layout';
import { runCatalogPage } from './catalog-page';
import { runCatchUp, runLatency } from './latency';
import { runLive } from './live';
import { runNaiveBaseline } from './naive';
import { runQuality } from './quality';
import { figure, table, type BenchContext, type Figure } from './report';
import { runSizes } from './sizes';
import { runStages } from './stages';
import { runTable } from './table';
import { runEndToEnd, runIngest, runMosquitto } from './throughput';
import { runWire } from './wire';

type Section = (ctx: BenchContext) => Promise<Figure[]>;

/** Ratios between figures of this run: they hold on a noisy machine where absolute rates do not. */
function comparisons(ctx: BenchContext): Figure[] {
  const e2e = ctx.earlier('e2e_points_per_sec');
  const ratio = (key: string, label: string, of: number | null, to: number | null) =>
    of !== null && to !== null && to > 0 ? [figure('comparison', key, label, of / to, 'x')] : [];
  return [
    ...ratio('e2e_vs_naive_multiple', 'end to end, as a multiple of the tutorial pipeline', e2e, ctx.earlier('naive_points_per_sec')),
    ...ratio('e2e_vs_mosquitto_multiple', 'end to end with Aedes, as a multiple of with Mosquitto', e2e, ctx.earlier('mosquitto_e2e_points_per_sec')),
    ...ratio('e2e_fraction_of_slowest_stage', 'end to end, as a fraction of the slowest stage alone', e2e, ctx.earlier('slowest_stage_points_per_sec')),
  ];
}

const SECTIONS: Record<string, Section> = {
  e2e: runEndToEnd,
  ingest: runIngest,
  agent: runAgentFootprint,
  latency: runLatency,
  catchup: runCatchUp,
  live: runLive,
  stages: runStages,
  sizes: runSizes,
  lake: runLakeLayout,
  table: runTable,
  quality: runQuality,
  wire: runWire,
  naive: runNaiveBaseline,
  mosquitto: runMosquitto,
  catalog: runCatalogPage,
};

const HELP = `Usage: npm run bench -- [--quick] [--only SECTIONS] [--out DIR]

Measures dronelake's throughput, latency, footprint and sizes, next to baselines, and
writes the figures as a table (stdout) and JSON (bench/results/).

Options:
  --quick           a short run (under a minute) with the same figures, less precise
  --only SECTIONS   comma-separated subset of: ${Object.keys(SECTIONS).join(', ')}
  --out DIR         where to write the JSON (default: bench/results)
  -h, --help        print this help and exit
`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { quick: { type: 'boolean', default: false }, only: { type: 'string' }, out: { type: 'string', default: 'bench/results' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  const names = values.only ? values.only.split(',') : Object.keys(SECTIONS);
  const unknown = names.filter((n) => !(n in SECTIONS));
  if (unknown.length > 0) throw new Error(`unknown section(s): ${unknown.join(', ')}; known: ${Object.keys(SECTIONS).join(', ')}`);

  const tmp = await mkdtemp(path.join(os.tmpdir(), 'dronelake-bench-'));
  const figures: Figure[] = [];
  const ctx: BenchContext = {
    quick: values.quick,
    tmp,
    progress: (line) => process.stderr.write(`bench: ${line}\n`),
    earlier: (key) => {
      const value = figures.find((f) => f.key === key)?.value;
      return typeof value === 'number' ? value : null;
    },
  };
  const started = Date.now();
  try {
    for (const name of names) {
      ctx.progress(`${name}...`);
      const t = Date.now();
      figures.push(...(await SECTIONS[name]!(ctx)));
      ctx.progress(`${name} done in ${((Date.now() - t) / 1000).toFixed(1)} s`);
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  figures.push(...comparisons(ctx));
  const machine = { cores: os.availableParallelism(), cpu: os.cpus()[0]?.model ?? 'unknown', memory_bytes: os.totalmem(), node: process.version, platform: `${os.platform()} ${os.release()}` };
  figures.push(figure('run', 'bench_seconds', 'whole bench run', (Date.now() - started) / 1000, 's'));
  const json = { ...Object.fromEntries(figures.map((f) => [f.key, f.value])), quick: values.quick, machine, at: new Date().toISOString(), figures };
  process.stdout.write(`${table(figures)}\n\nmachine: ${machine.cores} cores, ${machine.cpu}, Node ${machine.node}\n`);
  await mkdir(values.out, { recursive: true });
  const file = path.join(values.out, `bench-${values.quick ? 'quick' : 'full'}-${json.at.replace(/[:.]/g, '-')}.json`);
  await writeFile(file, `${JSON.stringify(json, null, 2)}\n`);
  await writeFile(path.join(values.out, `latest-${values.quick ? 'quick' : 'full'}.json`), `${JSON.stringify(json, null, 2)}\n`);
  process.stderr.write(`bench: wrote ${file}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
