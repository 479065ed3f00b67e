// The kernel's cost rule for KSM (mm/ksm.c, ksm_process_profit and general_profit): every page
// KSM watches costs one rmap item (64 bytes on 64-bit kernels), and every merged page saves a
// page. So KSM saves memory only while a process or group has fewer than
// PAGE_BYTES / RMAP_ITEM_BYTES = 64 rmap items per merged page: above that, scanning its pages
// costs more than merging them gives back.

export const PAGE_BYTES = 4096;
/** sizeof(struct ksm_rmap_item) on 64-bit kernels. */
export const RMAP_ITEM_BYTES = 64;
export const RMAP_BREAK_EVEN = PAGE_BYTES / RMAP_ITEM_BYTES;

export interface KsmCost {
  /** rmap items per merged page (zero pages KSM merged count as merged); null with none merged. */
  rmap_per_page: number | null;
  /** Bytes saved minus bytes spent, as the kernel computes it. */
  profit_bytes: number;
  /** More than RMAP_BREAK_EVEN rmap items per merged page: KSM costs this one memory. */
  costs_more: boolean;
}

export function ksmCost(mergingPages: number, rmapItems: number, zeroPages = 0): KsmCost {
  const merged = mergingPages + zeroPages;
  const profit = merged * PAGE_BYTES - rmapItems * RMAP_ITEM_BYTES;
  return { rmap_per_page: merged > 0 ? rmapItems / merged : null, profit_bytes: profit, costs_more: profit < 0 };
}
