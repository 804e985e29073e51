import type { Duplex } from 'node:stream';

/**
 * Follows MQTT's framing through a byte stream: each packet is a type byte, a remaining
 * length in 1 to 4 bytes of 7 bits (least significant first, high bit set while more
 * follow), then that many bytes. It learns each packet's size from its fixed header,
 * before any of the body arrives.
 */
export class PacketSizer {
  /** Fixed-header bytes seen of the current packet: 0 at a packet boundary. */
  private headerBytes = 0;
  private remaining = 0;
  /** Body bytes of the current packet not yet seen. */
  private skip = 0;

  /** The size of the first packet begun in `chunk` that is larger than `max` (Infinity for a malformed length), else 0. */
  oversized(chunk: Buffer, max: number): number {
    let i = 0;
    while (i < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - i);
        this.skip -= n;
        i += n;
        continue;
      }
      const byte = chunk[i++]!;
      if (this.headerBytes === 0) {
        this.headerBytes = 1;
        this.remaining = 0;
        continue;
      }
      this.remaining += (byte & 0x7f) * 128 ** (this.headerBytes - 1);
      this.headerBytes++;
      if (byte & 0x80) {
        if (this.headerBytes === 5) return Infinity;
        continue;
      }
      const size = this.headerBytes + this.remaining;
      if (size > max) return size;
      this.skip = this.remaining;
      this.headerBytes = 0;
    }
    return 0;
  }
}

/**
 * Closes `socket` as soon as it announces a packet larger than `maxBytes`. Aedes's parser
 * (mqtt-packet) has no limit for MQTT 3.1.1 and buffers a packet whole before it parses
 * it, up to the 256 MiB the length field allows. Aedes pulls bytes with `socket.read()`,
 * so they are looked at here, as it takes them, and the connection is closed at the
 * oversized packet's header, before its body is buffered; other clients are untouched.
 */
export function limitPacketSize(socket: Duplex, maxBytes: number, onOversized: (bytes: number) => void): void {
  const sizer = new PacketSizer();
  const read = socket.read.bind(socket);
  socket.read = (size?: number) => {
    const chunk: unknown = read(size);
    if (!Buffer.isBuffer(chunk) || socket.destroyed) return chunk;
    const bytes = sizer.oversized(chunk, maxBytes);
    if (bytes === 0) return chunk;
    onOversized(bytes);
    socket.destroy(new Error(bytes === Infinity ? 'malformed packet length' : `packet of ${bytes} bytes is over the limit of ${maxBytes} (--max-packet-bytes)`));
    return null;
  };
}
