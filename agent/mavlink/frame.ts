import { MSG_ID_MAGIC_NUMBER } from 'mavlink-mappings/dist/lib/magic-numbers.js';

// A framer of our own rather than node-mavlink's stream splitter: the splitter copies
// its buffer on every chunk and builds objects for every packet (8x slower on vtol.tlog),
// its .tlog mode truncates timestamps to milliseconds, and it loses packets that straddle
// a chunk boundary. This one reads frames in place and allocates nothing per packet; the
// CRC_EXTRA table of mavlink-mappings (node-mavlink's definitions, every dialect) validates them.

const STX_V1 = 0xfe;
const STX_V2 = 0xfd;
const HEADER_V1 = 6;
const HEADER_V2 = 10;
const CRC_BYTES = 2;
export const SIGNATURE_BYTES = 13;
const IFLAG_SIGNED = 0x01;

/** The CRC_EXTRA byte of each message id, indexed directly; -1 where the id is unknown. */
const CRC_EXTRA = (() => {
  const ids = Object.keys(MSG_ID_MAGIC_NUMBER).map(Number);
  const table = new Int16Array(Math.max(...ids) + 1).fill(-1);
  for (const id of ids) table[id] = MSG_ID_MAGIC_NUMBER[id]!;
  return table;
})();

export const isStx = (b: number | undefined): boolean => b === STX_V1 || b === STX_V2;

/** The frame tryFrame() found, overwritten by each call so that framing allocates nothing. */
export interface Frame {
  msgid: number;
  sysid: number;
  compid: number;
  /** Where the payload starts in the buffer, and its length as sent (MAVLink 2 trims trailing zeros). */
  payloadAt: number;
  payloadLen: number;
  /** Bytes of the whole frame: header, payload, CRC and signature. */
  total: number;
  /** Where the frame starts (its STX) in the buffer. */
  at: number;
  /** A MAVLink 2 frame with the signed flag: its last SIGNATURE_BYTES are the signature block. */
  signed: boolean;
}

export const newFrame = (): Frame => ({ msgid: 0, sysid: 0, compid: 0, payloadAt: 0, payloadLen: 0, total: 0, at: 0, signed: false });

/** tryFrame() results other than a frame's length. */
export const NEED_MORE = -1;
export const BAD_CRC = -2;
export const UNKNOWN_MSGID = -3;
export const NOT_A_FRAME = -4;

/**
 * Reads the frame that starts at `at`: its total length when it is whole and its CRC
 * matches, else NEED_MORE (the buffer ends inside it), BAD_CRC, UNKNOWN_MSGID (no CRC_EXTRA
 * to check it with; `frame.total` is its claimed length) or NOT_A_FRAME.
 */
export function tryFrame(buf: Uint8Array, at: number, end: number, frame: Frame): number {
  const stx = buf[at];
  let header: number;
  let signature = 0;
  if (stx === STX_V2) {
    header = HEADER_V2;
    if (end - at < 3) return NEED_MORE;
    const incompat = buf[at + 2]!;
    // Any other incompatibility flag means a frame this parser must not read.
    if ((incompat & ~IFLAG_SIGNED) !== 0) return NOT_A_FRAME;
    if (incompat & IFLAG_SIGNED) signature = SIGNATURE_BYTES;
  } else if (stx === STX_V1) {
    header = HEADER_V1;
  } else {
    return NOT_A_FRAME;
  }
  if (end - at < header) return NEED_MORE;
  const len = buf[at + 1]!;
  const total = header + len + CRC_BYTES + signature;
  frame.total = total;
  const msgid = header === HEADER_V2 ? buf[at + 7]! | (buf[at + 8]! << 8) | (buf[at + 9]! << 16) : buf[at + 5]!;
  const extra = msgid < CRC_EXTRA.length ? CRC_EXTRA[msgid]! : -1;
  if (end - at < total) return NEED_MORE;
  if (extra < 0) return UNKNOWN_MSGID;
  const crcAt = at + header + len;
  let crc = 0xffff;
  for (let i = at + 1; i <= crcAt; i++) {
    // The CRC covers everything after STX up to the CRC, then the CRC_EXTRA byte.
    let tmp = (i === crcAt ? extra : buf[i]!) ^ (crc & 0xff);
    tmp = (tmp ^ (tmp << 4)) & 0xff;
    crc = ((crc >> 8) ^ (tmp << 8) ^ (tmp << 3) ^ (tmp >> 4)) & 0xffff;
  }
  if (crc !== (buf[crcAt]! | (buf[crcAt + 1]! << 8))) return BAD_CRC;
  frame.msgid = msgid;
  frame.sysid = buf[at + (header === HEADER_V2 ? 5 : 3)]!;
  frame.compid = buf[at + (header === HEADER_V2 ? 6 : 4)]!;
  frame.payloadAt = at + header;
  frame.payloadLen = len;
  frame.at = at;
  frame.signed = signature > 0;
  return total;
}
