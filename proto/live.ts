import { ByteReader } from './varint';
import { liveTopic } from './topics';

// The live port's messages, as far as a party that only forwards them needs to know them:
// how many points one holds, read without decoding it. The sink writes a message as a JSON
// array of lake rows, each an object whose first key is drone_id (the contract's field 1),
// or (--live-format v2) as a ColumnarBatch, which begins with its point_count.

const LIVE_PREFIX = liveTopic('');

/** How every JSON row of a live message begins. Inside a JSON string a quote is escaped, so these bytes start a row and nothing else. */
const ROW_START = '{"drone_id":';

/** The v2 tag of point_count (field 1, varint), which a ColumnarBatch's encoder writes first. */
const POINT_COUNT_TAG = 0x08;

/** The points a message on `topic` carries: its rows on a live topic, 0 on an events topic (and on any other). */
export function livePointCount(topic: string, payload: Buffer | string): number {
  if (!topic.startsWith(LIVE_PREFIX)) return 0;
  if (typeof payload !== 'string' && payload[0] === POINT_COUNT_TAG) {
    try {
      return new ByteReader(payload.subarray(1, 11)).varint();
    } catch {
      // Not a message the sink wrote (without a registry anyone may publish here): no points.
      return 0;
    }
  }
  // A string and a Buffer both find the row start by indexOf, from where the last one ended.
  let n = 0;
  for (let i = payload.indexOf(ROW_START); i >= 0; i = payload.indexOf(ROW_START, i + ROW_START.length)) n++;
  return n;
}
