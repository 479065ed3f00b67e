// A guest's recent peak use, for floors that remember: the most it used in the last window,
// kept as the maxima of a few buckets (an eighth of the window each), so a thousand guests cost
// a few numbers each rather than every sample. "Used" is counted both with page cache
// (balloon_cur - mem_unused) and without (balloon_cur - mem_usable), as the floor may count it.
// The balloon's floor keeps it after a rollback; virtio-mem never unplugs below it.
import { finite } from '../numbers.js';
import type { Stats } from '../types.js';
import type { RecentPeak } from './floor.js';

const BUCKETS = 8;

export interface PeakBucket {
  /** Start of the bucket, seconds. */
  start: number;
  used: number | null;
  anon: number | null;
}

const maxOf = (a: number | null, b: number | null) => (a === null ? b : b === null ? a : Math.max(a, b));

/** This sample's use added to the buckets, in place (every collection of every guest passes
 *  here: no new arrays), buckets older than the window dropped; a new array only for a guest's
 *  first sample. */
export function addPeak(peaks: PeakBucket[] | undefined, s: Stats, time: number, windowS: number): PeakBucket[] | undefined {
  return addPeakOf(peaks, finite(s.balloon_cur), s, time, windowS);
}

/** The same, with the guest's memory `cur` given (virtio-mem: the guest's own total,
 *  which includes what its device has plugged, where balloon_cur may not). */
export function addPeakOf(peaks: PeakBucket[] | undefined, cur: number | null, s: Stats, time: number, windowS: number): PeakBucket[] | undefined {
  if (!(windowS > 0)) return undefined;
  const unused = finite(s.mem_unused);
  const usable = finite(s.mem_usable);
  const used = cur !== null && unused !== null ? Math.max(0, cur - unused) : null;
  const anon = cur !== null && usable !== null && usable >= (unused ?? 0) ? Math.max(0, cur - usable) : null;
  if (used === null && anon === null) return peaks;
  const len = windowS / BUCKETS;
  const kept = peaks ?? [];
  while (kept.length > 0 && kept[0]!.start + len <= time - windowS) kept.shift();
  const last = kept[kept.length - 1];
  if (last && time < last.start + len) {
    last.used = maxOf(last.used, used);
    last.anon = maxOf(last.anon, anon);
  } else kept.push({ start: time, used, anon });
  return kept;
}

/** The most used within the window before `now`, or undefined when nothing is remembered. */
export function recentPeak(peaks: readonly PeakBucket[] | undefined, now: number, windowS: number): RecentPeak | undefined {
  if (!peaks || !(windowS > 0)) return undefined;
  let used: number | null = null;
  let anon: number | null = null;
  const len = windowS / BUCKETS;
  for (const b of peaks) {
    if (b.start + len <= now - windowS) continue;
    used = maxOf(used, b.used);
    anon = maxOf(anon, b.anon);
  }
  return used === null && anon === null ? undefined : { used, anon };
}
