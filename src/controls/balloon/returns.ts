// What a balloon inflation really gave back to the host. A balloon's size is not the memory
// returned: QEMU frees only the pages that were resident, so a guest that hands over pages it
// never touched returns nothing (and needs not), and memory held in transparent huge pages may
// not come back although it was resident (docs/host.md). Between two samples in which the
// balloon shrank the guest, the fall of QEMU's resident memory (rss), capped at the shrink, is
// what came back. Pure: the engine keeps the totals per guest.
import type { Stats } from '../../types.js';

export interface BalloonReturn {
  /** KiB the balloon took from the guest (inflations only), since the guest appeared. */
  inflatedKiB: number;
  /** KiB of QEMU's resident memory that went with them. */
  returnedKiB: number;
  /** KiB that should have come back: the part of each inflation the host had backed with
   *  resident memory. Ballooning memory the guest never touched returns nothing and is not a
   *  failure (it still caps what the guest can touch later). */
  expectedKiB: number;
}

/** QEMU's own resident memory (its code, TCG or device buffers: tens of MiB) is not guest RAM:
 *  rss above the guest's new size by less than this is not counted as expected back. */
export const QEMU_ALLOWANCE_KIB = 64 * 1024;

/** The inflation between two samples and the memory it returned, or null when there was none or rss is unknown. */
export function inflationStep(prev: Stats | undefined, cur: Stats): BalloonReturn | null {
  const a = prev?.balloon_cur;
  const b = cur.balloon_cur;
  const ra = prev?.rss;
  const rb = cur.rss;
  if (typeof a !== 'number' || typeof b !== 'number' || b >= a) return null;
  if (typeof ra !== 'number' || typeof rb !== 'number') return null;
  const inflated = a - b;
  // The guest can keep at most its new size resident: what was resident beyond it must go.
  const expected = Math.min(inflated, Math.max(0, ra - b - QEMU_ALLOWANCE_KIB));
  return { inflatedKiB: inflated, returnedKiB: Math.min(inflated, Math.max(0, ra - rb)), expectedKiB: expected };
}

export function addReturn(total: BalloonReturn | undefined, step: BalloonReturn): BalloonReturn {
  return {
    inflatedKiB: (total?.inflatedKiB ?? 0) + step.inflatedKiB,
    returnedKiB: (total?.returnedKiB ?? 0) + step.returnedKiB,
    expectedKiB: (total?.expectedKiB ?? 0) + step.expectedKiB,
  };
}

/** Worth a warning: at least 64 MiB should have come back (it was resident) and under a quarter of it did. */
export function ineffective(total: BalloonReturn): boolean {
  return total.expectedKiB >= 64 * 1024 && total.returnedKiB < total.expectedKiB / 4;
}
