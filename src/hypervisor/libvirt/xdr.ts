// XDR (RFC 4506) encoding and decoding: the wire format of every libvirt RPC record.
// Everything is big-endian and padded to 4-byte units; 64-bit "hyper" values are bigint here
// so that no precision is lost on the wire (callers narrow to number where it is safe).

export class XdrError extends Error {
  override name = 'XdrError';
}

const pad4 = (n: number) => (4 - (n % 4)) % 4;

export class XdrWriter {
  private buf: Buffer;
  private off = 0;

  constructor(initial = 256) {
    this.buf = Buffer.alloc(initial);
  }

  private ensure(n: number): void {
    if (this.off + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.off + n) size *= 2;
    const next = Buffer.alloc(size);
    this.buf.copy(next, 0, 0, this.off);
    this.buf = next;
  }

  int(v: number): this {
    if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) throw new XdrError(`int out of range: ${v}`);
    this.ensure(4);
    this.buf.writeInt32BE(v, this.off);
    this.off += 4;
    return this;
  }

  uint(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new XdrError(`unsigned int out of range: ${v}`);
    this.ensure(4);
    this.buf.writeUInt32BE(v, this.off);
    this.off += 4;
    return this;
  }

  hyper(v: bigint | number): this {
    const b = BigInt(v);
    if (b < -(1n << 63n) || b >= 1n << 63n) throw new XdrError(`hyper out of range: ${v}`);
    this.ensure(8);
    this.buf.writeBigInt64BE(b, this.off);
    this.off += 8;
    return this;
  }

  uhyper(v: bigint | number): this {
    const b = BigInt(v);
    if (b < 0n || b >= 1n << 64n) throw new XdrError(`unsigned hyper out of range: ${v}`);
    this.ensure(8);
    this.buf.writeBigUInt64BE(b, this.off);
    this.off += 8;
    return this;
  }

  double(v: number): this {
    this.ensure(8);
    this.buf.writeDoubleBE(v, this.off);
    this.off += 8;
    return this;
  }

  bool(v: boolean): this {
    return this.int(v ? 1 : 0);
  }

  /** Fixed-length opaque data (e.g. a 16-byte UUID): no length word, padded. */
  fixedOpaque(data: Uint8Array, len: number): this {
    if (data.length !== len) throw new XdrError(`fixed opaque needs ${len} bytes, got ${data.length}`);
    const p = pad4(len);
    this.ensure(len + p);
    this.buf.set(data, this.off);
    this.buf.fill(0, this.off + len, this.off + len + p);
    this.off += len + p;
    return this;
  }

  /** Variable-length opaque data: length word, bytes, padding. */
  opaque(data: Uint8Array, max = Infinity): this {
    if (data.length > max) throw new XdrError(`opaque longer than ${max}: ${data.length}`);
    this.uint(data.length);
    return this.fixedOpaque(data, data.length);
  }

  string(s: string, max = Infinity): this {
    return this.opaque(Buffer.from(s, 'utf8'), max);
  }

  /** XDR optional-data (`type *name`): a boolean, then the value when present. */
  optional<T>(v: T | null | undefined, enc: (w: this, v: T) => void): this {
    if (v === null || v === undefined) return this.bool(false);
    this.bool(true);
    enc(this, v);
    return this;
  }

  /** Variable-length array: count, then each element. */
  array<T>(items: readonly T[], enc: (w: this, v: T) => void, max = Infinity): this {
    if (items.length > max) throw new XdrError(`array longer than ${max}: ${items.length}`);
    this.uint(items.length);
    for (const it of items) enc(this, it);
    return this;
  }

  get length(): number {
    return this.off;
  }

  /** A copy of the bytes written so far. */
  toBuffer(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.off));
  }
}

export class XdrReader {
  private off: number;
  private readonly end: number;

  constructor(
    private readonly buf: Buffer,
    start = 0,
    end = buf.length,
  ) {
    this.off = start;
    this.end = end;
  }

  private need(n: number, what: string): void {
    if (this.off + n > this.end) {
      throw new XdrError(`truncated XDR data: need ${n} bytes for ${what} at offset ${this.off}, have ${this.end - this.off}`);
    }
  }

  int(): number {
    this.need(4, 'int');
    const v = this.buf.readInt32BE(this.off);
    this.off += 4;
    return v;
  }

  uint(): number {
    this.need(4, 'unsigned int');
    const v = this.buf.readUInt32BE(this.off);
    this.off += 4;
    return v;
  }

  hyper(): bigint {
    this.need(8, 'hyper');
    const v = this.buf.readBigInt64BE(this.off);
    this.off += 8;
    return v;
  }

  uhyper(): bigint {
    this.need(8, 'unsigned hyper');
    const v = this.buf.readBigUInt64BE(this.off);
    this.off += 8;
    return v;
  }

  /** A hyper as a number when exact (|v| < 2^53, every memory size and counter libvirt sends),
   *  else as bigint: no BigInt is made for the common case (a collection decodes hundreds). */
  hyperNarrow(): number | bigint {
    this.need(8, 'hyper');
    const hi = this.buf.readInt32BE(this.off);
    if (hi >= -0x200000 && hi <= 0x1fffff) {
      const v = hi * 0x100000000 + this.buf.readUInt32BE(this.off + 4);
      if (v >= Number.MIN_SAFE_INTEGER) {
        this.off += 8;
        return v;
      }
    }
    return this.hyper();
  }

  /** An unsigned hyper as a number when exact (< 2^53), else as bigint. */
  uhyperNarrow(): number | bigint {
    this.need(8, 'unsigned hyper');
    const hi = this.buf.readUInt32BE(this.off);
    if (hi <= 0x1fffff) {
      const v = hi * 0x100000000 + this.buf.readUInt32BE(this.off + 4);
      this.off += 8;
      return v;
    }
    return this.uhyper();
  }

  double(): number {
    this.need(8, 'double');
    const v = this.buf.readDoubleBE(this.off);
    this.off += 8;
    return v;
  }

  bool(): boolean {
    const v = this.int();
    if (v !== 0 && v !== 1) throw new XdrError(`invalid XDR boolean ${v} at offset ${this.off - 4}`);
    return v === 1;
  }

  /** Steps over `len` bytes and their padding; returns where they start. */
  private span(len: number): number {
    const p = pad4(len);
    this.need(len + p, `opaque[${len}]`);
    const at = this.off;
    this.off += len + p;
    return at;
  }

  /** A variable-length item's length word, checked against its limit. */
  private length(max: number): number {
    const len = this.uint();
    if (len > max) throw new XdrError(`opaque length ${len} exceeds limit ${max}`);
    return len;
  }

  fixedOpaque(len: number): Buffer {
    const at = this.span(len);
    return Buffer.from(this.buf.subarray(at, at + len));
  }

  opaque(max = Infinity): Buffer {
    return this.fixedOpaque(this.length(max));
  }

  /** Decoded in place: no copy of the bytes first (typed parameters' names are most of a
   *  stats reply). */
  string(max = Infinity): string {
    const len = this.length(max);
    const at = this.span(len);
    return this.buf.toString('utf8', at, at + len);
  }

  optional<T>(dec: (r: this) => T): T | null {
    return this.bool() ? dec(this) : null;
  }

  array<T>(dec: (r: this) => T, max = Infinity): T[] {
    const n = this.uint();
    if (n > max) throw new XdrError(`array length ${n} exceeds limit ${max}`);
    // Each element takes at least 4 bytes: a count larger than what is left is garbage,
    // and checking it here keeps a hostile count from allocating a huge array.
    if (n * 4 > this.end - this.off) throw new XdrError(`array length ${n} larger than the remaining data`);
    const out: T[] = [];
    for (let i = 0; i < n; i++) out.push(dec(this));
    return out;
  }

  get offset(): number {
    return this.off;
  }

  get remaining(): number {
    return this.end - this.off;
  }

  /** Throws if bytes are left over: a reply that does not fill its record exactly is malformed. */
  done(what = 'record'): void {
    if (this.off !== this.end) throw new XdrError(`${this.end - this.off} unexpected trailing bytes after ${what}`);
  }
}

/** A bigint from the wire as a number; values beyond 2^53 (not memory sizes in KiB) lose precision. */
export function toNumber(v: bigint): number {
  return Number(v);
}
