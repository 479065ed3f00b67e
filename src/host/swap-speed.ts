// How slow the host's swap is, as the host itself sees it: milliseconds of I/O stall (PSI io
// some, /proc/pressure/io `total`, microseconds) per page swapped in (/proc/vmstat pswpin).
// The guard needs this before the host thrashes: a cold page read back from a hard disk costs
// ~6 ms of I/O wait and no memory stall, so waiting for a stall (floor.ts hostCanWait) lets
// the swap fill with pages read back at disk speed. Measured in the lab (4 guests holding page
// cache, 180 s): hdd 121 s of I/O stall over 18,897 swap-ins (6.4 ms each), ssd 3.6 s over
// 28,182 (0.13 ms). A disk's speed does not change while the daemon runs, so the figure is
// cumulative: every interval with enough swap-ins to dominate the host's I/O adds to it.
// Field: swap_in_io_wait_ms (null until enough swap-ins were seen, or without PSI).
import type { HostSource, Stats } from '../types.js';
import { keyValue, readText, readTextIfExists } from './files.js';

export interface SwapSpeedOptions {
  /** An interval counts only with at least this many swap-ins: with fewer, the guests' own
   *  disk I/O would be most of the stall. */
  minPagesPerInterval: number;
  /** Pages swapped in (over counted intervals) before the figure is given. */
  minPages: number;
}

export const defaultSwapSpeed: SwapSpeedOptions = { minPagesPerInterval: 64, minPages: 1024 };

export interface SwapCounters {
  /** /proc/vmstat pswpin (pages). */
  pswpin: number;
  /** /proc/pressure/io `some total` (microseconds). */
  ioSomeUs: number;
}

export interface SwapWait {
  pages: number;
  waitUs: number;
}

/** The `some total=` of a PSI file; null when absent. */
export function psiSomeTotalUs(text: string): number | null {
  const m = /^some\b.*\btotal=(\d+)/m.exec(text);
  return m ? Number(m[1]) : null;
}

/** Adds the interval prev -> cur to `acc` when it swapped in enough pages to count. */
export function addSwapWait(acc: SwapWait, prev: SwapCounters, cur: SwapCounters, opts: SwapSpeedOptions): SwapWait {
  const pages = cur.pswpin - prev.pswpin;
  const us = cur.ioSomeUs - prev.ioSomeUs;
  if (!(pages >= opts.minPagesPerInterval) || !(us >= 0)) return acc;
  return { pages: acc.pages + pages, waitUs: acc.waitUs + us };
}

/** Milliseconds of I/O stall per page swapped in; null before minPages were seen. */
export function swapInWaitMs(acc: SwapWait, opts: SwapSpeedOptions): number | null {
  return acc.pages >= opts.minPages ? Math.round((acc.waitUs / acc.pages) * 10) / 10000 : null;
}

export class SwapSpeedSource implements HostSource {
  readonly name = 'swap_speed';
  private prev: SwapCounters | null = null;
  private acc: SwapWait = { pages: 0, waitUs: 0 };
  constructor(
    private readonly root = '/',
    private readonly opts: SwapSpeedOptions = defaultSwapSpeed,
  ) {}

  async collect(): Promise<Stats> {
    let io: string | null;
    try {
      io = await readTextIfExists(this.root, '/proc/pressure/io');
    } catch (err) {
      // psi=0 on the kernel command line: the file is there and reading it fails.
      if ((err as NodeJS.ErrnoException).code !== 'EOPNOTSUPP') throw err;
      io = null;
    }
    const ioSomeUs = io === null ? null : psiSomeTotalUs(io);
    if (ioSomeUs === null) return { swap_in_io_wait_ms: null };
    const pswpin = keyValue(await readText(this.root, '/proc/vmstat'), 'pswpin');
    if (pswpin === undefined) throw new Error('vmstat: no pswpin line');
    const cur = { pswpin, ioSomeUs };
    if (this.prev) this.acc = addSwapWait(this.acc, this.prev, cur, this.opts);
    this.prev = cur;
    return { swap_in_io_wait_ms: swapInWaitMs(this.acc, this.opts) };
  }
}
