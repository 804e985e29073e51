/**
 * Where a staged row goes in its buffer's blocks: each drone's rows in a lane of its own,
 * extents of consecutive rows that the lane takes as it fills. The files hold a drone's
 * rows together (drone_id, then ts), so DuckDB's scan then reads each column an extent at
 * a time. Staged in arrival order instead, a file's order jumped from one batch's run of a
 * drone to the next (5 to 50 rows): each jump a cache miss per column, and the scan's
 * gathers cost 4-20 ns a value where a run of hundreds costs under 1.
 *
 * A lane's next extent is half the rows it holds, within [MIN_EXTENT, MAX_EXTENT] rows: its
 * unfilled room at the commit, counted in the buffer's bytes (invariant 6), is at most a
 * third of its rows, or MIN_EXTENT.
 */
const MIN_EXTENT = 64;
/** A DuckDB vector's rows: an extent longer than that is read in pieces anyway. */
const MAX_EXTENT = 2048;

/** A buffer's lanes, indexed by the drone's id in the buffer's dictionary. */
export interface Lanes {
  /** Per lane: the position its next row takes, and the end of its extent (both 0 before its first). */
  next: Uint32Array;
  end: Uint32Array;
  /** Per lane: the rows staged in it. */
  rows: Uint32Array;
  /** Per lane: its extents, [start, end) pairs of positions; the last one's end is its room's. */
  extents: Array<number[] | undefined>;
  /** Positions the extents take in the blocks, filled or not. */
  reserved: number;
}

export const newLanes = (): Lanes => ({ next: new Uint32Array(64), end: new Uint32Array(64), rows: new Uint32Array(64), extents: [], reserved: 0 });

/** Makes room in the per-lane arrays for lane `lane`. */
export function haveLane(lanes: Lanes, lane: number): void {
  if (lane < lanes.next.length) return;
  const grow = (a: Uint32Array): Uint32Array => {
    const bigger = new Uint32Array(Math.max(lane + 1, a.length * 2));
    bigger.set(a);
    return bigger;
  };
  lanes.next = grow(lanes.next);
  lanes.end = grow(lanes.end);
  lanes.rows = grow(lanes.rows);
}

/** How many rows lane `lane`'s next extent wants. */
export const extentWanted = (lanes: Lanes, lane: number): number => Math.min(MAX_EXTENT, Math.max(MIN_EXTENT, lanes.rows[lane]! >>> 1));

/** Gives lane `lane` the next `size` positions as its extent. */
export function openExtent(lanes: Lanes, lane: number, size: number): void {
  const start = lanes.reserved;
  lanes.reserved += size;
  lanes.next[lane] = start;
  lanes.end[lane] = start + size;
  const extents = lanes.extents[lane];
  if (extents === undefined) lanes.extents[lane] = [start, start + size];
  else extents.push(start, start + size);
}

/**
 * Each lane's filled extents, lanes in the order of `ranks` (each id's rank among the
 * dictionary's strings): what commitOrder walks. A lane's last extent ends where it is filled.
 */
export function lanesInOrder(lanes: Lanes, ranks: Uint32Array): number[][] {
  const ids: number[] = [];
  lanes.extents.forEach((extents, id) => {
    if (extents === undefined) return;
    extents[extents.length - 1] = lanes.next[id]!;
    ids.push(id);
  });
  return ids.sort((a, b) => ranks[a]! - ranks[b]!).map((id) => lanes.extents[id]!);
}
