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

/**
 * The permutation that puts `count` staged rows in the files' order (`order[k]` is the row
 * at position k), and each file's positions. Rows are held in blocks of `1 << shift` rows:
 * `keys[b]` holds block b's dictionary ids of the sort string, `times[b]` its event times;
 * `ranks` gives each id's rank. Rows of equal key keep their arrival order, so the order is
 * the same on every run over the same rows.
 */
export function commitOrder(keys: readonly ArrayLike<number>[], times: readonly ArrayLike<number>[], shift: number, count: number, ranks: Uint32Array): { order: Uint32Array; files: FileRows[] } {
  const mask = (1 << shift) - 1;
  const key = (i: number): number => ranks[keys[i >>> shift]![i & mask]!]!;
  const ts = (i: number): number => times[i >>> shift]![i & mask]!;
  // Counting sort by rank: one pass to count, one to place; stable.
  const starts = new Uint32Array(ranks.length + 1);
  for (let i = 0; i < count; i++) starts[key(i) + 1]!++;
  for (let r = 1; r < starts.length; r++) starts[r]! += starts[r - 1]!;
  const next = starts.slice(0, ranks.length);
  const byKey = new Uint32Array(count);
  for (let i = 0; i < count; i++) byKey[next[key(i)]!++] = i;
  // Then each key's run by time: usually in order already, checked in one pass.
  for (let r = 0; r < ranks.length; r++) {
    const from = starts[r]!;
    const to = starts[r + 1]!;
    let sorted = true;
    for (let k = from + 1; k < to && sorted; k++) sorted = ts(byKey[k - 1]!) <= ts(byKey[k]!);
    if (sorted) continue;
    // Ties by arrival, so the sort is stable whatever the engine's sort is.
    const run = Array.from(byKey.subarray(from, to)).sort((a, b) => ts(a) - ts(b) || a - b);
    byKey.set(run, from);
  }
  // Then by hour, stable, so each hour's rows keep the order above: one file each.
  const hourOf = (i: number): number => Math.floor(ts(i) / MICROS_PER_HOUR);
  // Counted per run of one hour: rows that arrive together mostly share it.
  const counts = new Map<number, number>();
  for (let i = 0; i < count; ) {
    const hour = hourOf(i);
    let end = i + 1;
    while (end < count && hourOf(end) === hour) end++;
    counts.set(hour, (counts.get(hour) ?? 0) + end - i);
    i = end;
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
  const order = files.length === 1 ? byKey : new Uint32Array(count);
  let file = files[0]!;
  for (let k = 0; k < count; k++) {
    const i = byKey[k]!;
    const t = ts(i);
    const hour = Math.floor(t / MICROS_PER_HOUR);
    if (hour !== file.hour) file = slot.get(hour)!;
    if (t < file.minTs) file.minTs = t;
    if (t > file.maxTs) file.maxTs = t;
    order[file.to++] = i;
  }
  return { order, files };
}
