// What a balloon inflation really gave back to the host. A balloon's size is not the memory
// returned: QEMU frees only the pages that were resident, so a guest that hands over pages it
// never touched, or memory held in transparent huge pages, returns less (docs/host.md). Between
// two samples in which the balloon shrank the guest, the fall of QEMU's resident memory (rss),
// capped at the shrink, is what came back. Pure: the engine keeps the totals per guest.
import type { Stats } from '../types.js';

export interface BalloonReturn {
  /** KiB the balloon took from the guest (inflations only), since the guest appeared. */
  inflatedKiB: number;
  /** KiB of QEMU's resident memory that went with them. */
  returnedKiB: number;
}

/** The inflation between two samples and the memory it returned, or null when there was none or rss is unknown. */
export function inflationStep(prev: Stats | undefined, cur: Stats): BalloonReturn | null {
  const a = prev?.balloon_cur;
  const b = cur.balloon_cur;
  const ra = prev?.rss;
  const rb = cur.rss;
  if (typeof a !== 'number' || typeof b !== 'number' || b >= a) return null;
  if (typeof ra !== 'number' || typeof rb !== 'number') return null;
  const inflated = a - b;
  return { inflatedKiB: inflated, returnedKiB: Math.min(inflated, Math.max(0, ra - rb)) };
}

export function addReturn(total: BalloonReturn | undefined, step: BalloonReturn): BalloonReturn {
  return { inflatedKiB: (total?.inflatedKiB ?? 0) + step.inflatedKiB, returnedKiB: (total?.returnedKiB ?? 0) + step.returnedKiB };
}

/** Worth a warning: at least 64 MiB ballooned and under a quarter of it came back. */
export function ineffective(total: BalloonReturn): boolean {
  return total.inflatedKiB >= 64 * 1024 && total.returnedKiB < total.inflatedKiB / 4;
}
