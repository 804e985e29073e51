import { emptyCommitCounts, type CommitRecord } from '../sink/checkpoint';
import { addCommits, ledgerOf, newQualityLedger, qualityOf, retainFrom, type QualityLedger } from '../sink/quality';
import { parseState, stateJson } from '../sink/quality-state';
import { DAY_MS } from '../sink/layout';
import { productStatus } from '../sink/slo';
import { figure, type BenchContext, type Figure } from './report';

// What a sink's quality window costs after hours of commits: the product's status folded
// from every commit record again (what a reader with no ledger does, as the sink did), and
// from the sink's ledger, which takes each record once. Side by side in one run.

const DRONES = 200;
const POINTS = 50;
const COMMIT_MS = 5_000;
const WINDOW_MS = 60_000;
const SETTLE_MS = 600_000;
const T0 = Date.UTC(2026, 0, 1);

/** Commit n of a sink committing every 5 s (the default): 50 points of each of 200 drones, each in its stream. */
function commit(n: number): CommitRecord {
  const streams: Record<string, Record<string, Array<[number, number]>>> = {};
  for (let d = 0; d < DRONES; d++) streams[`gw-bench-d${d}`] = { '4242': [[n * POINTS, n * POINTS + POINTS - 1]] };
  const hour = new Date(T0 + n * COMMIT_MS).toISOString();
  return {
    version: 1,
    kind: 'commit',
    writer: 'bench',
    number: n + 1,
    committed_at: new Date(T0 + n * COMMIT_MS).toISOString(),
    files: [{ key: `telemetry/date=${hour.slice(0, 10)}/hour=${hour.slice(11, 13)}/part-bench-${n}.parquet`, rows: DRONES * POINTS, bytes: 180_000, min_ts: (T0 + n * COMMIT_MS) * 1000 - 6e6, max_ts: (T0 + n * COMMIT_MS) * 1000 }],
    quarantine: [],
    batches: {},
    points: {},
    streams,
    counts: emptyCommitCounts(),
  };
}

/** One window as the sink records it: this sink's window, then the product's status. */
function window(own: QualityLedger, all: QualityLedger, fromMs: number, endMs: number): void {
  qualityOf(own, { fromMs, toMs: endMs, settleMs: SETTLE_MS });
  productStatus(all, [], { endsMs: [], windowMs: WINDOW_MS }, SETTLE_MS, endMs);
}

function cpuSeconds(work: () => void): number {
  const start = process.cpuUsage();
  work();
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1e6;
}

export async function runQuality(ctx: BenchContext): Promise<Figure[]> {
  const hours = ctx.quick ? 6 : 24;
  ctx.progress(`quality: ${hours} h of commits every 5 s from ${DRONES} drones, a window a minute`);
  const own = newQualityLedger();
  const all = newQualityLedger();
  const records: CommitRecord[] = [];
  let ledgerCpu = 0;
  let windowStart = T0;
  for (let end = T0 + WINDOW_MS; end <= T0 + hours * 3_600_000; end += WINDOW_MS) {
    const fresh: CommitRecord[] = [];
    while (T0 + records.length * COMMIT_MS < end) {
      const c = commit(records.length);
      records.push(c);
      fresh.push(c);
    }
    ledgerCpu = cpuSeconds(() => {
      addCommits(own, fresh);
      addCommits(all, fresh);
      window(own, all, windowStart, end);
      retainFrom(all, end - DAY_MS);
      retainFrom(own, end);
    });
    windowStart = end;
  }
  const end = T0 + hours * 3_600_000;
  const recomputedCpu = cpuSeconds(() => window(ledgerOf(records), ledgerOf(records), end - WINDOW_MS, end));
  // What a restart or a reader resumes from instead of every record: the ledger's saved form.
  let saved = '';
  const saveCpu = cpuSeconds(() => {
    saved = JSON.stringify(stateJson('bench', end, new Map([['bench', records.length]]), all));
  });
  const resumeCpu = cpuSeconds(() => parseState(JSON.parse(saved)));
  const section = 'quality windows';
  return [
    figure(section, 'quality_state_bytes', `the product's ledger saved after ${hours} h (sink/quality-state.ts)`, Buffer.byteLength(saved), 'bytes'),
    figure(section, 'quality_state_save_cpu_seconds', 'saving it (JSON)', saveCpu, 's'),
    figure(section, 'quality_state_resume_cpu_seconds', 'resuming from it (parsed and checked), instead of every record', resumeCpu, 's'),
    figure(section, 'quality_window_recomputed_cpu_seconds', `one window after ${hours} h, every commit record folded again`, recomputedCpu, 's'),
    figure(section, 'quality_window_ledger_cpu_seconds', `one window after ${hours} h, the sink's ledger`, ledgerCpu, 's'),
    figure(section, 'quality_ledger_summaries', 'commit summaries the ledger keeps (a day of them at most)', all.recent.length, ''),
  ];
}
