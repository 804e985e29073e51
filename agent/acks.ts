import { decodeAck } from '../proto/codec';

/**
 * The batch numbers a commit ack names, or an error text when the payload is not an ack
 * for this gateway. A bad ack frees nothing: the batches stay and are re-sent.
 */
export function ackedSeqs(payload: Uint8Array, gatewayId: string): number[] | string {
  try {
    const ack = decodeAck(payload);
    if (ack.gateway_id !== gatewayId) return `ack for gateway "${ack.gateway_id}"`;
    return ack.batch_seqs;
  } catch (err) {
    return (err as Error).message;
  }
}
