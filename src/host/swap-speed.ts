// How slow the host's swap is, as the host itself sees it: milliseconds of I/O stall (PSI io
// some, /proc/pressure/io `total`, microseconds) per page swapped in (/proc/vmstat pswpin).
// The guard needs this before the host thrashes: a cold page read back from a hard disk costs
// ~6 ms of I/O wait and no memory stall, so waiting for a stall (floor.ts hostCanWait) lets
// the swap fill with pages read back at disk speed. Measured in the lab (4 guests holding page
// cache, 180 s): hdd 121 s of I/O stall over 18,897 swap-ins (6.4 ms each), ssd 3.6 s over
// 28,182 (0.13 ms). A disk's speed does not change, so the figure is cumulative: every
// interval with enough swap-ins to dominate the host's I/O adds to it, until the swap areas
// change (swapon, swapoff), which starts it again.
// Field: swap_in_io_wait_ms (null until enough swap-ins were seen, or without PSI).
// Before the first swap-in the device says what to expect: swap_rotational is 1 when the
// swap the kernel uses first (highest priority in /proc/swaps) sits on a device that reports
// itself rotational (/sys/dev/block/MAJ:MIN/queue/rotational, a partition's disk's), 0 when
// none of those does, null when unknown (no swap, a swap file on btrfs's anonymous device).
import { readFileSync, realpathSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parsePsiTotals } from '../psi.js';
import type { HostSource, Stats } from '../types.js';
import { readPressure } from './psi.js';
import { keyValue, readText, readTextIfExists, under } from './files.js';

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

export interface SwapArea {
  /** The path as /proc/swaps gives it, its octal escapes (\040 for a space) undone. */
  path: string;
  type: string;
  sizeKiB: number;
  usedKiB: number;
  priority: number;
}

/** What finding an area's device needs of it. */
export type SwapDevice = Pick<SwapArea, 'path' | 'type'>;

export function parseSwaps(text: string): SwapArea[] {
  const out: SwapArea[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 5 || !Number.isFinite(Number(f[4]))) continue;
    const path = f[0]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
    out.push({ path, type: f[1]!, sizeKiB: Number(f[2]), usedKiB: Number(f[3]), priority: Number(f[4]) });
  }
  return out;
}

/** MAJ:MIN of a device number as stat gives it (st_dev, st_rdev). */
export function majorMinor(dev: bigint): string {
  // glibc's encoding: minor's low 8 bits, major's 12, then minor's high bits.
  const major = (dev >> 8n) & 0xfffn;
  const minor = (dev & 0xffn) | ((dev >> 12n) & 0xfff00n);
  return `${major}:${minor}`;
}

/** MAJ:MIN of the block device holding a swap area: a partition's own, a file's filesystem's. */
function deviceOf(root: string, area: SwapDevice): string {
  const st = statSync(under(root, area.path), { bigint: true });
  return majorMinor(area.type === 'partition' ? st.rdev : st.dev);
}

/** 1 rotational, 0 not, null unknown: the device's queue, or (a partition) its disk's. */
export function rotationalOf(root: string, majMin: string): 0 | 1 | null {
  let dir: string;
  try {
    dir = realpathSync(under(root, `/sys/dev/block/${majMin}`));
  } catch {
    return null;
  }
  for (const d of [dir, dirname(dir)]) {
    try {
      const v = readFileSync(join(d, 'queue', 'rotational'), 'utf8').trim();
      if (v === '1' || v === '0') return v === '1' ? 1 : 0;
    } catch {
      // not this level: a partition has no queue of its own
    }
  }
  return null;
}

/** A swap area's device's flag; null when the area cannot be resolved (gone since it was
 *  listed, not visible from here, a filesystem without a block device). */
export function areaRotational(root: string, area: SwapDevice, device: (root: string, area: SwapDevice) => string = deviceOf): 0 | 1 | null {
  try {
    return rotationalOf(root, device(root, area));
  } catch {
    return null;
  }
}

/** Whether the swap used first is rotational: 1 if any area of the highest priority is. */
export function swapRotational<A extends Pick<SwapArea, 'priority'>>(areas: readonly A[], rotational: (a: A) => 0 | 1 | null): 0 | 1 | null {
  if (areas.length === 0) return null;
  const top = Math.max(...areas.map((a) => a.priority));
  const flags = areas.filter((a) => a.priority === top).map(rotational);
  if (flags.includes(1)) return 1;
  return flags.every((f) => f === 0) ? 0 : null;
}

export class SwapSpeedSource implements HostSource {
  readonly name = 'swap_speed';
  private prev: SwapCounters | null = null;
  private acc: SwapWait = { pages: 0, waitUs: 0 };
  /** The swap areas as last listed (their Used column aside) and what they gave: they change
   *  only when an admin runs swapon or swapoff. */
  private swaps: { key: string; rotational: 0 | 1 | null } | null = null;
  constructor(
    private readonly root = '/',
    private readonly opts: SwapSpeedOptions = defaultSwapSpeed,
    private readonly device: (root: string, area: SwapDevice) => string = deviceOf,
  ) {}

  private async rotational(): Promise<0 | 1 | null> {
    const areas = parseSwaps((await readTextIfExists(this.root, '/proc/swaps')) ?? '');
    const key = areas.map((a) => `${a.path}\t${a.type}\t${a.priority}`).join('\n');
    if (this.swaps?.key !== key) {
      const flag = (a: SwapArea) => areaRotational(this.root, a, this.device);
      // Another device: what the old one cost says nothing of it.
      if (this.swaps) this.acc = { pages: 0, waitUs: 0 };
      this.swaps = { key, rotational: swapRotational(areas, flag) };
    }
    return this.swaps.rotational;
  }

  async collect(): Promise<Stats> {
    return { swap_rotational: await this.rotational(), swap_in_io_wait_ms: await this.waitMs() };
  }

  private async waitMs(): Promise<number | null> {
    const ioSomeUs = parsePsiTotals(await readPressure(this.root, '/proc/pressure/io')).some;
    if (ioSomeUs === null) return null;
    const pswpin = keyValue(await readText(this.root, '/proc/vmstat'), 'pswpin');
    if (pswpin === undefined) throw new Error('vmstat: no pswpin line');
    const cur = { pswpin, ioSomeUs };
    if (this.prev) this.acc = addSwapWait(this.acc, this.prev, cur, this.opts);
    this.prev = cur;
    return swapInWaitMs(this.acc, this.opts);
  }
}
