// QEMU's balloon statistics (qom-get guest-stats, bytes and counts) in MOM's guest fields
// (KiB), the same meanings the libvirt driver gives them:
//   stat-total-memory -> mem_available    stat-free-memory -> mem_unused
//   stat-free-memory + stat-disk-caches -> mem_free    stat-available-memory -> mem_usable
//   stat-swap-in / stat-swap-out -> swap_in / swap_out (KiB, cumulative since guest boot)
//   stat-major-faults / stat-minor-faults -> major_fault / minor_fault (cumulative counts)
//   stat-htlb-pgalloc / stat-htlb-pgfail -> htlb_pgalloc / htlb_pgfail
// and what QEMU 9.1+ passes on from Linux 6.12+ guests (null before):
//   stat-oom-kills / stat-alloc-stalls -> oom_kills / alloc_stalls (counts since boot)
//   stat-async-scans / stat-direct-scans -> async_scan / direct_scan (KiB scanned by kswapd /
//   by direct reclaim), stat-async-reclaims / stat-direct-reclaims -> async_reclaim /
//   direct_reclaim (KiB reclaimed), cumulative since guest boot like swap_in
import type { Stats } from '../../types.js';

export interface GuestStatsReply {
  stats?: Record<string, unknown>;
  'last-update'?: number;
}

/** A stat the guest did not report is -1, which QEMU sends as an unsigned 64-bit number. */
export function statValue(v: unknown): number | null {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v >= 2 ** 63) return null;
  return v;
}

const kib = (v: number | null): number | null => (v === null ? null : Math.floor(v / 1024));

export function guestStatsToMom(reply: GuestStatsReply): { stats: Stats; lastUpdate: number } {
  const s = reply.stats ?? {};
  const g = (k: string) => statValue(s[k]);
  const unused = kib(g('stat-free-memory'));
  const caches = kib(g('stat-disk-caches'));
  return {
    stats: {
      mem_available: kib(g('stat-total-memory')),
      mem_unused: unused,
      mem_free: unused === null ? null : unused + (caches ?? 0),
      mem_usable: kib(g('stat-available-memory')),
      swap_in: kib(g('stat-swap-in')),
      swap_out: kib(g('stat-swap-out')),
      major_fault: g('stat-major-faults'),
      minor_fault: g('stat-minor-faults'),
      htlb_pgalloc: g('stat-htlb-pgalloc'),
      htlb_pgfail: g('stat-htlb-pgfail'),
      oom_kills: g('stat-oom-kills'),
      alloc_stalls: g('stat-alloc-stalls'),
      async_scan: kib(g('stat-async-scans')),
      direct_scan: kib(g('stat-direct-scans')),
      async_reclaim: kib(g('stat-async-reclaims')),
      direct_reclaim: kib(g('stat-direct-reclaims')),
    },
    lastUpdate: typeof reply['last-update'] === 'number' ? reply['last-update'] : 0,
  };
}

/** Why a guest's stats are not usable, or null when they are. */
export function staleReason(lastUpdate: number, stats: Stats): string | null {
  if (lastUpdate === 0) return 'no balloon statistics from the guest yet (virtio_balloon driver not loaded, or still booting)';
  if (stats.mem_available === null && stats.mem_unused === null) return 'the guest reports no memory statistics through its balloon';
  return null;
}
