import { createHash, randomBytes } from 'node:crypto';

/** The legacy stream: points of producers that name none, keyed by (drone_id, seq) alone. */
export const LEGACY_STREAM = 0;

/**
 * A new stream id, 1..2^53-1, drawn at random. Invariant 3: a spool draws one whenever it
 * starts counting seqs afresh, so two runs, two gateways or a wiped spool never number
 * points in the same stream. 53 bits keep it exact as a JS number and a JSON value; two
 * draws collide with odds of about n²/2^54, once in 18 million for a million streams.
 */
export function newStreamId(): number {
  return streamOfBytes(randomBytes(7));
}

/** A stream id from 7 bytes: 53 bits, 5 of the first byte and all of the other six; never 0. */
function streamOfBytes(bytes: Buffer): number {
  const id = (bytes[0]! & 0x1f) * 2 ** 48 + bytes.readUIntBE(1, 6);
  return id === 0 ? 1 : id;
}

export const isStreamId = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 0;

/**
 * The stream of a gateway's ingest API points that name none: derived from the gateway id,
 * so it is the same across restarts, wiped spools and replaced machines. Those points are
 * numbered by their client, whose seq must keep growing per drone at that gateway.
 */
export function ingestStreamOf(gatewayId: string): number {
  return streamOfBytes(createHash('sha256').update(`dronelake ingest stream ${gatewayId}`).digest());
}
