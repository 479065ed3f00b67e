// Prometheus' text format (version 0.0.4) written directly, for the per-guest families: at a
// thousand guests they are 16,000 samples, and prom-client spent ~55 ms a scrape on them
// (hashing each label set on set(), then flattening and escaping it again on output, one
// string per sample). Here each guest's label set is escaped and encoded once per scrape, and
// the samples are written as bytes into one growing buffer: almost nothing for the garbage
// collector, which matters under the daemon's small young generation (engine.small_heap),
// where a string per sample cost more in scavenges than in writing.

/** A label value as the format wants it: backslash, double quote and newline escaped. */
export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** HELP text: backslash and newline escaped. */
export function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** A sample value as the format writes it. */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/** `{a="x",b="y"}` for the label names and values given. */
export function labelSet(names: readonly string[], values: readonly string[]): string {
  let s = '{';
  for (let i = 0; i < names.length; i++) s += `${i ? ',' : ''}${names[i]}="${escapeLabelValue(values[i]!)}"`;
  return `${s}}`;
}

/** Bytes appended to one buffer that doubles when full. */
export class ByteWriter {
  private buf: Buffer;
  private at = 0;
  constructor(initial = 1 << 16) {
    this.buf = Buffer.allocUnsafe(initial);
  }
  private room(n: number): void {
    if (this.at + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.at + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.at);
    this.buf = next;
  }
  /** UTF-8 text. */
  text(s: string): void {
    this.room(s.length * 3);
    this.at += this.buf.write(s, this.at, 'utf8');
  }
  /** Text known to be ASCII (numbers, metric names). */
  ascii(s: string): void {
    this.room(s.length);
    this.at += this.buf.write(s, this.at, 'latin1');
  }
  bytes(b: Buffer): void {
    this.room(b.length);
    this.at += b.copy(this.buf, this.at);
  }
  byte(c: number): void {
    this.room(1);
    this.buf[this.at++] = c;
  }
  /** What was written (a view of the buffer, not a copy). */
  done(): Buffer {
    return this.buf.subarray(0, this.at);
  }
}

/** Each row's label set, encoded, or null for a row whose label set an earlier row has (the
 *  format forbids the same series twice: the first is written). */
export function encodeLabelSets(labels: readonly string[]): (Buffer | null)[] {
  const seen = new Set<string>();
  return labels.map((l) => {
    if (seen.has(l)) return null;
    seen.add(l);
    return Buffer.from(l, 'utf8');
  });
}

const SPACE = 0x20;
const NEWLINE = 0x0a;

/** One family: HELP, TYPE, and a sample per row whose `value` is a number (null: no sample). */
export function writeFamily<R>(
  w: ByteWriter,
  name: string,
  type: 'gauge' | 'counter',
  help: string,
  rows: readonly R[],
  labels: readonly (Buffer | null)[],
  value: (row: R) => number | null,
): void {
  w.text(`# HELP ${name} ${escapeHelp(help)}\n# TYPE ${name} ${type}`);
  const metric = Buffer.from(name, 'latin1');
  for (let i = 0; i < rows.length; i++) {
    const l = labels[i];
    if (!l) continue;
    const v = value(rows[i]!);
    if (v === null) continue;
    w.byte(NEWLINE);
    w.bytes(metric);
    w.bytes(l);
    w.byte(SPACE);
    w.ascii(formatValue(v));
  }
}
