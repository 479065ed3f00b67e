// Per-entity sample history: a fixed-size ring of the newest samples (MOM's
// sample-history-length). Samples are stored by reference, never copied; the ordered view the
// policy reads is rebuilt only when a sample was added since the last read.
import type { Stats } from '../types.js';

export class History {
  private readonly samples: (Stats | undefined)[];
  private readonly times: number[];
  private head = 0; // index of the next write
  private count = 0;
  private view: Stats[] | null = null;

  constructor(readonly capacity = 10) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`history length must be a positive integer, got ${capacity}`);
    this.samples = new Array<Stats | undefined>(capacity);
    this.times = new Array<number>(capacity).fill(0);
  }

  get length(): number {
    return this.count;
  }

  push(sample: Stats, time: number): void {
    this.samples[this.head] = sample;
    this.times[this.head] = time;
    this.head = (this.head + 1) % this.capacity;
    if (this.count < this.capacity) this.count++;
    this.view = null;
  }

  /** i = 0 is the newest sample, i = length-1 the oldest. */
  at(i: number): Stats | undefined {
    if (i < 0 || i >= this.count) return undefined;
    return this.samples[(this.head - 1 - i + this.capacity * 2) % this.capacity];
  }

  timeAt(i: number): number | undefined {
    if (i < 0 || i >= this.count) return undefined;
    return this.times[(this.head - 1 - i + this.capacity * 2) % this.capacity];
  }

  latest(): Stats | undefined {
    return this.at(0);
  }

  /** See peakRate(). Walks the ring directly: this runs for every watched guest each cycle. */
  peakRate(field: string, since: number): number | null {
    let peak: number | null = null;
    const cap = this.capacity;
    let iNew = (this.head - 1 + cap) % cap;
    for (let k = 0; k + 1 < this.count; k++) {
      const iOld = iNew === 0 ? cap - 1 : iNew - 1;
      const tNew = this.times[iNew]!;
      if (tNew <= since) break;
      const tOld = this.times[iOld]!;
      const vNew = this.samples[iNew]![field];
      const vOld = this.samples[iOld]![field];
      iNew = iOld;
      if (vNew == null || vOld == null || tNew <= tOld || vNew < vOld) continue;
      const rate = (vNew - vOld) / (tNew - tOld);
      if (peak === null || rate > peak) peak = rate;
    }
    return peak;
  }

  /** The largest value of `field` in samples taken after `since`, or null (none has it). */
  peakValue(field: string, since: number): number | null {
    let peak: number | null = null;
    const cap = this.capacity;
    let i = (this.head - 1 + cap) % cap;
    for (let k = 0; k < this.count; k++) {
      if (this.times[i]! <= since) break;
      const v = this.samples[i]![field];
      if (typeof v === 'number' && Number.isFinite(v) && (peak === null || v > peak)) peak = v;
      i = i === 0 ? cap - 1 : i - 1;
    }
    return peak;
  }

  /** Oldest first, as the policy's `stats` list. Cached until the next push. */
  toArray(): Stats[] {
    if (this.view) return this.view;
    const out = new Array<Stats>(this.count);
    for (let i = 0; i < this.count; i++) out[i] = this.at(this.count - 1 - i)!;
    this.view = out;
    return out;
  }
}

/**
 * The highest per-second rate of a cumulative counter (swap_in, major_fault) between
 * consecutive samples newer than `since`. Counter resets (a guest reboot) and missing values
 * are skipped. Returns null when no pair of samples qualifies.
 */
export function peakRate(h: History, field: string, since: number): number | null {
  return h.peakRate(field, since);
}
