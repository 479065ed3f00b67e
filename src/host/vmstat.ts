// /proc/vmstat counters -> per-interval deltas, as MOM reports them: swap_in/swap_out in pages
// (pswpin/pswpout), major_fault, and minor_fault = pgfault - pgmajfault (pgfault counts both).
import type { HostSource, Stats } from '../types.js';
import { keyValue, readText } from './files.js';

export interface VmstatCounters {
  pswpin: number;
  pswpout: number;
  pgmajfault: number;
  pgfault: number;
}

export function parseVmstat(text: string): VmstatCounters {
  const need = (k: keyof VmstatCounters): number => {
    const v = keyValue(text, k);
    if (v === undefined) throw new Error(`vmstat: no ${k} line`);
    return v;
  };
  return { pswpin: need('pswpin'), pswpout: need('pswpout'), pgmajfault: need('pgmajfault'), pgfault: need('pgfault') };
}

/** Deltas between two readings; null fields without a previous reading. A counter that went
 *  backwards (never on a live kernel, but fixtures and containers can) gives null, not a negative. */
export function vmstatDeltas(prev: VmstatCounters | null, cur: VmstatCounters): Stats {
  if (!prev) return { swap_in: null, swap_out: null, major_fault: null, minor_fault: null };
  const d = (a: number, b: number): number | null => (b >= a ? b - a : null);
  const minorPrev = prev.pgfault - prev.pgmajfault;
  const minorCur = cur.pgfault - cur.pgmajfault;
  return {
    swap_in: d(prev.pswpin, cur.pswpin),
    swap_out: d(prev.pswpout, cur.pswpout),
    major_fault: d(prev.pgmajfault, cur.pgmajfault),
    minor_fault: d(minorPrev, minorCur),
  };
}

export class VmstatSource implements HostSource {
  readonly name = 'vmstat';
  private prev: VmstatCounters | null = null;
  constructor(private readonly root = '/') {}
  async collect(): Promise<Stats> {
    const cur = parseVmstat(await readText(this.root, '/proc/vmstat'));
    const out = vmstatDeltas(this.prev, cur);
    this.prev = cur;
    return out;
  }
}
