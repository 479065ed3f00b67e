// Record framing of libvirt's RPC (src/rpc/virnetprotocol.x): every message is
//   length (4 bytes, counts itself) | header (6 XDR words) | payload
// The stream from the socket arrives in arbitrary chunks; FrameDecoder cuts it back into records.
import { XdrReader, XdrWriter } from './xdr.js';

/** virNetMessageType */
export const MessageType = {
  CALL: 0,
  REPLY: 1,
  MESSAGE: 2,
  STREAM: 3,
  CALL_WITH_FDS: 4,
  REPLY_WITH_FDS: 5,
} as const;

/** virNetMessageStatus */
export const MessageStatus = {
  OK: 0,
  ERROR: 1,
  CONTINUE: 2,
} as const;

/** VIR_NET_MESSAGE_MAX: largest serialised message, not counting the length word. */
export const MESSAGE_MAX = 16777216;
export const LEN_BYTES = 4;
export const HEADER_BYTES = 24;

export interface Header {
  prog: number;
  vers: number;
  proc: number;
  type: number;
  serial: number;
  status: number;
}

export interface Frame {
  header: Header;
  payload: Buffer;
}

export class FramingError extends Error {
  override name = 'FramingError';
}

/** One complete record, length word included, ready for the socket. */
export function encodeFrame(header: Header, payload: Uint8Array = Buffer.alloc(0)): Buffer {
  const total = LEN_BYTES + HEADER_BYTES + payload.length;
  if (total - LEN_BYTES > MESSAGE_MAX) throw new FramingError(`message of ${total} bytes exceeds the protocol limit`);
  const w = new XdrWriter(total);
  w.uint(total).uint(header.prog).uint(header.vers).int(header.proc).int(header.type).uint(header.serial).int(header.status);
  const head = w.toBuffer();
  return payload.length ? Buffer.concat([head, payload]) : head;
}

export function decodeHeader(buf: Buffer, start = 0): Header {
  const r = new XdrReader(buf, start, start + HEADER_BYTES);
  return { prog: r.uint(), vers: r.uint(), proc: r.int(), type: r.int(), serial: r.uint(), status: r.int() };
}

/**
 * Reassembles records from socket chunks: a record split over many chunks comes out once,
 * several records in one chunk come out one by one. A length word that cannot be a record
 * (smaller than a header or beyond the protocol limit) means the stream is garbage: it throws,
 * and the caller drops the connection, since there is no way to find the next record boundary.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  push(chunk: Buffer): Frame[] {
    if (chunk.length) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const out: Frame[] = [];
    for (;;) {
      if (this.buffered < LEN_BYTES) break;
      const len = this.peekLength();
      if (len < LEN_BYTES + HEADER_BYTES || len - LEN_BYTES > MESSAGE_MAX) {
        throw new FramingError(`invalid record length ${len} (not a libvirt RPC stream?)`);
      }
      if (this.buffered < len) break;
      const rec = this.take(len);
      out.push({ header: decodeHeader(rec, LEN_BYTES), payload: rec.subarray(LEN_BYTES + HEADER_BYTES) });
    }
    return out;
  }

  /** Bytes received that do not yet form a whole record. */
  get pending(): number {
    return this.buffered;
  }

  private peekLength(): number {
    const first = this.chunks[0]!;
    if (first.length >= LEN_BYTES) return first.readUInt32BE(0);
    this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!.readUInt32BE(0);
  }

  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= n) {
      // Common case: the whole record sits in the first chunk; no copy.
      const rec = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.buffered -= n;
      return rec;
    }
    const all = Buffer.concat(this.chunks, this.buffered);
    const rec = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length ? [rest] : [];
    this.buffered -= n;
    return rec;
  }
}
