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
 * at position k), and each file's positions. `keys[i]` is row i's dictionary id of the
 * sort string, `ranks` each id's rank, `times[i]` its event time. Rows of equal key keep
 * their arrival order, so the order is the same on every run over the same rows.
 */
export function commitOrder(keys: ArrayLike<number>, times: ArrayLike<number>, count: number, ranks: Uint32Array): { order: Uint32Array; files: FileRows[] } {
  // Counting sort by rank: one pass to count, one to place; stable.
  const starts = new Uint32Array(ranks.length + 1);
  for (let i = 0; i < count; i++) starts[ranks[keys[i]!]! + 1]!++;
  for (let r = 1; r < starts.length; r++) starts[r]! += starts[r - 1]!;
  const next = starts.slice(0, ranks.length);
  const byKey = new Uint32Array(count);
  for (let i = 0; i < count; i++) byKey[next[ranks[keys[i]!]!]!++] = i;
  // Then each key's run by time: usually in order already, checked in one pass.
  for (let r = 0; r < ranks.length; r++) {
    const from = starts[r]!;
    const to = starts[r + 1]!;
    let sorted = true;
    for (let k = from + 1; k < to && sorted; k++) sorted = times[byKey[k - 1]!]! <= times[byKey[k]!]!;
    if (sorted) continue;
    // Ties by arrival, so the sort is stable whatever the engine's sort is.
    const run = Array.from(byKey.subarray(from, to)).sort((a, b) => times[a]! - times[b]! || a - b);
    byKey.set(run, from);
  }
  // Then by hour, stable, so each hour's rows keep the order above: one file each.
  const hourOf = (i: number): number => Math.floor(times[i]! / MICROS_PER_HOUR);
  const counts = new Map<number, number>();
  for (let i = 0; i < count; i++) {
    const hour = hourOf(i);
    counts.set(hour, (counts.get(hour) ?? 0) + 1);
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
  for (let k = 0; k < count; k++) {
    const i = byKey[k]!;
    const file = files.length === 1 ? files[0]! : slot.get(hourOf(i))!;
    const ts = times[i]!;
    if (ts < file.minTs) file.minTs = ts;
    if (ts > file.maxTs) file.maxTs = ts;
    order[file.to++] = i;
  }
  return { order, files };
}
