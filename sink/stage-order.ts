/**
 * The order of a commit's rows in the lake's files: one file per event-time hour, its rows
 * by drone_id, then ts (SORT_COLUMNS). Computed over the staged typed arrays, so that DuckDB
 * writes the rows in the order it is handed them and sorts nothing: its ORDER BY was the
 * largest part of writing a commit (bench `stages`). A commit's rows arrive as batches
 * interleave them, but each drone's rows mostly arrive in time order, so counting sorts and
 * a check of each drone's run cost a few passes over two columns.
 */
import { MICROS_PER_HOUR } from '../proto/time';

/** Each dictionary id's rank among the dictionary's strings in byte order, DuckDB's order for VARCHAR. */
export function dictionaryRanks(strings: readonly string[]): Uint32Array {
  const bytes = strings.map((s) => Buffer.from(s, 'utf8'));
  const ids = Array.from(strings, (_, id) => id).sort((a, b) => Buffer.compare(bytes[a]!, bytes[b]!));
  const ranks = new Uint32Array(strings.length);
  ids.forEach((id, rank) => {
    ranks[id] = rank;
  });
  return ranks;
}

/**
 * Sorts positions [from, to) of `rows` by their times `ts`, ties in their order there (the
 * rows' arrival). Event times are whole microseconds, so each position's time past the
 * run's least, times the run's length, plus its place in the run, is one exact number a
 * typed array sorts natively, with no call per comparison: on 500,000 rows whose every
 * drone's run was out of order, 0.06 CPU-us a point where a comparison sort took 0.15. A
 * run whose times span too much for that (over 2^53 / its length microseconds) is sorted
 * with a comparison instead.
 */
function sortRun(rows: Uint32Array, ts: Float64Array, from: number, to: number): void {
  const n = to - from;
  let min = Infinity;
  let max = -Infinity;
  // Staged times are whole (validation's ts rule); should one not be, the comparison sorts.
  let whole = true;
  for (let k = from; k < to; k++) {
    const t = ts[k]!;
    if (t < min) min = t;
    if (t > max) max = t;
    if (whole && !Number.isInteger(t)) whole = false;
  }
  const exact = whole && (max - min + 1) * n <= Number.MAX_SAFE_INTEGER;
  // The sorted places in the run: packed with their times when exact, else as they are.
  const keys = new Float64Array(n);
  if (exact) {
    for (let k = 0; k < n; k++) keys[k] = (ts[from + k]! - min) * n + k;
    keys.sort();
  } else {
    keys.set(Array.from({ length: n }, (_, k) => k).sort((a, b) => ts[from + a]! - ts[from + b]! || a - b));
  }
  const sortedRows = new Uint32Array(n);
  const sortedTs = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    const k = exact ? keys[j]! % n : keys[j]!;
    sortedRows[j] = rows[from + k]!;
    sortedTs[j] = ts[from + k]!;
  }
  rows.set(sortedRows, from);
  ts.set(sortedTs, from);
}

/** One file's rows: positions [from, to) of the order, all in one event-time hour. */
export interface FileRows {
  /** Hours since the epoch. */
  hour: number;
  from: number;
  to: number;
  /** The rows' least and greatest event time, microseconds. */
  minTs: number;
  maxTs: number;
}

// commitOrder's working arrays, reused from commit to commit and grown to the largest: new
// ones were 12 bytes a row allocated outside V8's heap per commit, which V8 counts towards
// its next full collection (the sink's GC threads took a tenth of its CPU). Invariant 6:
// within the sink's bound on staged rows, as the commits are.
let scratchTs = new Float64Array(0);
let scratchRows = new Uint32Array(0);

/**
 * The permutation that puts `count` staged rows in the files' order (`order[k]` is the row
 * at position k, for k below `count`), and each file's positions. The order goes into
 * `into` when it holds `count` rows, else into a new array. Rows are held in blocks of `1 << shift` rows:
 * `keys[b]` holds block b's dictionary ids of the sort string, `times[b]` its event times;
 * `ranks` gives each id's rank. Rows of equal key keep their arrival order, so the order is
 * the same on every run over the same rows. Each pass walks the blocks as they lie, and the
 * times travel with the rows they sort, so the checks and the files read them in order
 * (reading each through its block cost 0.17 CPU-us a point, a tenth of the sink's).
 */
export function commitOrder(keys: readonly ArrayLike<number>[], times: readonly ArrayLike<number>[], shift: number, count: number, ranks: Uint32Array, into: Uint32Array | null = null): { order: Uint32Array; files: FileRows[] } {
  if (count === 0) return { order: new Uint32Array(0), files: [] };
  const order = into !== null && into.length >= count ? into : new Uint32Array(count);
  const blockRows = 1 << shift;
  // Counting sort by rank: one pass to count, one to place; stable.
  const starts = new Uint32Array(ranks.length + 1);
  let minTs = Infinity;
  let maxTs = -Infinity;
  for (let b = 0, i = 0; i < count; b++) {
    const key = keys[b]!;
    const time = times[b]!;
    const rows = Math.min(blockRows, count - i);
    for (let r = 0; r < rows; r++) {
      starts[ranks[key[r]!]! + 1]!++;
      const t = time[r]!;
      if (t < minTs) minTs = t;
      if (t > maxTs) maxTs = t;
    }
    i += rows;
  }
  for (let r = 1; r < starts.length; r++) starts[r]! += starts[r - 1]!;
  const next = starts.slice(0, ranks.length);
  const hourOf = (t: number): number => Math.floor(t / MICROS_PER_HOUR);
  // Most commits hold one hour: one file, in the order this sorts them into.
  const oneHour = hourOf(minTs) === hourOf(maxTs);
  if (!oneHour && scratchRows.length < count) scratchRows = new Uint32Array(count);
  if (scratchTs.length < count) scratchTs = new Float64Array(count);
  const byKey = oneHour ? order : scratchRows;
  const byKeyTs = scratchTs;
  for (let b = 0, i = 0; i < count; b++) {
    const key = keys[b]!;
    const time = times[b]!;
    const rows = Math.min(blockRows, count - i);
    for (let r = 0; r < rows; r++, i++) {
      const at = next[ranks[key[r]!]!]!++;
      byKey[at] = i;
      byKeyTs[at] = time[r]!;
    }
  }
  // Then each key's run by time: usually in order already, checked in one pass.
  for (let r = 0; r < ranks.length; r++) {
    const from = starts[r]!;
    const to = starts[r + 1]!;
    let sorted = true;
    for (let k = from + 1; k < to && sorted; k++) sorted = byKeyTs[k - 1]! <= byKeyTs[k]!;
    if (!sorted) sortRun(byKey, byKeyTs, from, to);
  }
  if (oneHour) return { order, files: [{ hour: hourOf(minTs), from: 0, to: count, minTs, maxTs }] };
  // Else by hour too, stable, so each hour's rows keep the order above: one file each.
  // Counted per run of one hour: rows that arrive together mostly share it.
  const counts = new Map<number, number>();
  for (let k = 0; k < count; ) {
    const hour = hourOf(byKeyTs[k]!);
    let end = k + 1;
    while (end < count && hourOf(byKeyTs[end]!) === hour) end++;
    counts.set(hour, (counts.get(hour) ?? 0) + end - k);
    k = end;
  }
  const files: FileRows[] = [];
  const slot = new Map<number, FileRows>();
  let at = 0;
  for (const hour of [...counts.keys()].sort((a, b) => a - b)) {
    const file = { hour, from: at, to: at, minTs: Infinity, maxTs: -Infinity };
    files.push(file);
    slot.set(hour, file);
    at += counts.get(hour)!;
  }
  let file = files[0]!;
  for (let k = 0; k < count; k++) {
    const t = byKeyTs[k]!;
    const hour = hourOf(t);
    if (hour !== file.hour) file = slot.get(hour)!;
    if (t < file.minTs) file.minTs = t;
    if (t > file.maxTs) file.maxTs = t;
    order[file.to++] = byKey[k]!;
  }
  return { order, files };
}
