// The guest floor: the least memory a guest may be left with, whatever a policy asks. Every
// control that can take memory from a guest (balloon, virtio-mem, cgroup limits) respects it.
import { finite } from '../numbers.js';
import { hostMemoryStall } from '../psi.js';
import type { Stats } from '../types.js';

export interface SafeguardConfig {
  /** No balloon target below this (KiB). */
  minGuestKiB: number;
  /** Floor = used + headroom (KiB). used: the guest's memory that is not page cache,
   *  balloon_cur - mem_usable (MemAvailable), when the guest reports it; else balloon_cur -
   *  mem_unused (page cache counted as used). */
  headroomKiB: number;
  /** Page cache one policy cycle may take, as a fraction of balloon_max: below used-with-cache
   *  + headroom a balloon goes down at most this fast, so a guest's cache is reclaimed a little
   *  at a time and a hot cache shows its refaults (and a rollback) before much is gone.
   *  null: page cache counts as used (the floor is balloon_cur - mem_unused + headroom). */
  cacheStepFraction: number | null;
  /** Page cache is left to the host's swap while the host (its memory domain where one is
   *  set) stalls on memory less than this % (PSI some avg60), has at least a quarter of its
   *  swap free, and backs memory with transparent huge pages: see hostCanWait. null: the
   *  balloon takes page cache whenever the policy asks (at most cacheStep a cycle). */
  cacheStallPercent: number | null;
  /** ... and waits on I/O less than this % (PSI io some avg60): a cold page read back from a
   *  slow swap disk is an I/O wait, not a memory stall. null: I/O pressure is not looked at. */
  cacheIoPercent: number | null;
  /** ... and swaps in a page for less than this many ms of I/O stall (host field
   *  swap_in_io_wait_ms, host/swap-speed.ts; before enough swap-ins to measure, a swap on a
   *  rotational device counts as slow): on a slow disk, waiting for a stall is waiting too
   *  long. null: the swap's speed is not looked at. */
  slowSwapInMs: number | null;
  /** Largest change per policy cycle, as a fraction of balloon_max. */
  maxStepFraction: number;
  /** Changes below max(minChangeKiB, minChangeFraction * balloon_max) are skipped. */
  minChangeFraction: number;
  minChangeKiB: number;
  /** Policy cycles after an inflation during which a spike rolls it back (0: rollback off). */
  rollbackWindow: number;
  rollbackSwapInKiBPerS: number;
  rollbackMajorFaultsPerS: number;
  /** Seconds without inflation after a rollback. */
  rollbackBackoffS: number;
  /** No inflation of a guest whose memory stall (psi_some_avg10, %, where the driver reads the
   *  guest's PSI) is above this; null: off. */
  psiStopPercent: number | null;
  /** A guest memory stall (psi_some_avg10, %) above this after an inflation rolls it back;
   *  null: off. */
  rollbackPsiPercent: number | null;
  /** Seconds a guest's peak use is remembered in its floor (0: the floor is the present use
   *  only, as in MOM): a workload whose peak comes back every few minutes is not squeezed
   *  again in each idle phase. */
  peakWindowS: number;
  /** Seconds a guest's floor keeps its peak (of the last peakWindowS) after a rollback: once
   *  squeezing below a peak it came back to has hurt it, it is not squeezed below it again for
   *  this long (each rollback starts it again). */
  peakHoldS: number;
  /** Quiet growth: a guest below its floor whose kernel pages out without paging back in (no
   *  swap-in or major-fault spike, no memory stall) is not short of memory: what it pages out
   *  it does not touch. It is left to carry that growth in its own swap, rather than be handed
   *  host memory that a swapping host would take from the other guests blindly, until it has
   *  carried this fraction of balloon_max (net swap-out), then raised as before. 0: off. */
  quietGrowthFraction: number;
  /** Seconds a guest is left alone after its balloon moved to something ballast did not set
   *  (another manager, an admin's `virsh setmem`): ballast does not fight it. 0: not watched. */
  externalHoldS: number;
}

export const defaultSafeguards: SafeguardConfig = {
  minGuestKiB: 128 * 1024,
  headroomKiB: 64 * 1024,
  maxStepFraction: 0.1,
  cacheStepFraction: 0.05,
  cacheStallPercent: 2,
  cacheIoPercent: 10,
  slowSwapInMs: 1,
  minChangeFraction: 0.0025,
  minChangeKiB: 1024,
  rollbackWindow: 3,
  rollbackSwapInKiBPerS: 4096,
  rollbackMajorFaultsPerS: 1000,
  rollbackBackoffS: 300,
  psiStopPercent: 10,
  rollbackPsiPercent: 20,
  peakWindowS: 600,
  peakHoldS: 7200,
  quietGrowthFraction: 0.25,
  externalHoldS: 600,
};

/** The most a guest used in the peak window: with page cache (used) and without (anon). */
export interface RecentPeak {
  used: number | null;
  anon: number | null;
}

export interface BalloonBounds {
  floor: number;
  max: number;
  step: number;
  minChange: number;
  /** Memory the guest uses, page cache included (balloon_cur - mem_unused). */
  used: number | null;
  /** Memory the guest uses that is not reclaimable cache (balloon_cur - mem_usable), when the
   *  floor is cache-aware; null when the floor counts page cache as used. */
  anon: number | null;
  /** The recent peak that raised the floor above the present use + headroom, if it did. */
  peak: number | null;
  /** used + headroom (capped at max): below it a balloon eats into page cache. */
  cacheFloor: number;
  /** The most a cycle may take below cacheFloor. */
  cacheStep: number;
}

const MiB = 1024;
export const fmtKiB = (k: number): string => (Math.abs(k) >= 10 * MiB ? `${Math.round(k / MiB)} MiB` : `${Math.round(k)} KiB`);

/**
 * The interval a balloon target must stay in, and the step limits.
 * floor = max(configured minimum, balloon_min, used + headroom). What counts as used:
 * - cache-aware (cacheStepFraction set, and the guest reports mem_usable, its MemAvailable):
 *   balloon_cur - mem_usable, the memory the guest cannot drop. A guest whose page cache grows
 *   is not deflated for it, and a balloon may take its cache, at most cacheStep a cycle below
 *   cacheFloor (used-with-cache + headroom), the guard's pacing of that.
 * - otherwise MOM's notion: balloon_cur - mem_unused (page cache counts as used, the floor
 *   errs on the guest's side).
 * A floor above balloon_max is lowered to balloon_max: a guest never gets more than its maximum.
 */
export function balloonBounds(s: Stats, cfg: SafeguardConfig, recent?: RecentPeak): BalloonBounds | string {
  const cur = finite(s.balloon_cur);
  const max = finite(s.balloon_max);
  if (cur === null) return 'balloon_cur unknown';
  if (max === null || max <= 0) return 'balloon_max unknown';
  const unused = finite(s.mem_unused);
  const used = unused === null ? null : Math.max(0, cur - unused);
  const usable = cfg.cacheStepFraction === null ? null : finite(s.mem_usable);
  // MemAvailable is never less than what is completely free; a guest that says otherwise
  // (garbage, or a sample torn between two reads) gets the cautious floor.
  const anon = used === null || usable === null || usable < (unused ?? 0) ? null : Math.max(0, cur - usable);
  const bmin = finite(s.balloon_min) ?? 0;
  let floor = cfg.minGuestKiB;
  if (bmin > floor) floor = bmin;
  const counted = anon ?? used;
  if (counted !== null && counted + cfg.headroomKiB > floor) floor = counted + cfg.headroomKiB;
  // The recent peak, counted the same way (without page cache when the floor is cache-aware).
  // It is kept as it was reached, without headroom on top: the headroom is slack for growth
  // beyond what the guest has shown, and the peak is already the most it used in the window.
  // Memory above it is memory the guest did not touch even at its peak, which the host would
  // otherwise back (or swap) for nothing.
  const peakCounted = recent ? (anon !== null ? recent.anon : recent.used) : null;
  const peak = counted !== null && peakCounted !== null && peakCounted > floor ? peakCounted : null;
  if (peak !== null) floor = peak;
  if (floor > max) floor = max;
  const cacheFloor = used === null ? floor : Math.min(max, Math.max(floor, used + cfg.headroomKiB));
  const step = Math.max(1, Math.floor(cfg.maxStepFraction * max));
  const cacheStep = anon === null ? 0 : Math.max(1, Math.floor((cfg.cacheStepFraction ?? 0) * max));
  const minChange = Math.max(cfg.minChangeKiB, cfg.minChangeFraction * max);
  return { floor: Math.ceil(floor), max, step, minChange, used, anon, peak, cacheFloor: Math.ceil(cacheFloor), cacheStep };
}

/** Which term made the floor what it is (for the action log; computed only when logged). */
export function floorWhy(s: Stats, b: BalloonBounds, cfg: SafeguardConfig): string {
  const bmin = finite(s.balloon_min) ?? 0;
  let why = `configured minimum ${fmtKiB(cfg.minGuestKiB)}`;
  let f = cfg.minGuestKiB;
  if (bmin > f) {
    f = bmin;
    why = `balloon_min ${fmtKiB(bmin)}`;
  }
  const counted = b.anon ?? b.used;
  if (counted !== null && counted + cfg.headroomKiB > f) {
    f = counted + cfg.headroomKiB;
    why =
      b.anon !== null
        ? `used without page cache ${fmtKiB(b.anon)} + headroom ${fmtKiB(cfg.headroomKiB)}`
        : `used ${fmtKiB(counted)} + headroom ${fmtKiB(cfg.headroomKiB)}`;
  }
  if (b.peak !== null && b.peak > f) {
    f = b.peak;
    why = `peak use of the last ${Math.round(cfg.peakWindowS / 60)} min ${fmtKiB(b.peak)}`;
  }
  if (f > b.max) why += ' (capped at balloon_max)';
  return why;
}

/**
 * Whether the balloon can wait this cycle, and why (null: it may act as the policy asks): while
 * it can, it takes neither a guest's page cache nor the free memory of a guest that reports
 * its free pages. A host that backs guest memory with transparent huge pages pays for every balloon
 * inflation: the balloon hands back 4 KiB pages, each one splits a 2 MiB host page, and what
 * the guest later refaults comes back small (in the lab, 42% of QEMU RSS stayed in huge pages
 * under the balloon against 77% without it, and TCG guests ran slower for it). Cold page cache
 * costs the host nothing to hold in swap if that swap is fast: swapped out once, rarely read
 * again. So while the host is not stalling on memory and has swap room, the balloon leaves page
 * cache alone (and a guest that reports its free pages hands those back in whole blocks by
 * itself); once the host stalls (its swap is slow, or what it swaps is hot), or its swap
 * runs short, the balloon takes cache again, at most cacheStep a cycle. Hosts without PSI,
 * without swap, or without huge pages in use keep the balloon's way.
 * Measured (lab, 4 guests with 128 MiB of cache each, no manager but free page reporting): the
 * host stalled 0.2-1.3 s of 180 s with swap on an SSD and 49-86 s on a hard disk. But the
 * kernel counts a swap-in as a memory stall only for a page of the working set: cold pages
 * read back from a hard disk (8 ms each) showed as I/O wait, with the memory stall at 0.1 s,
 * and the balloon that waited kept a third less work there. So the host must also wait on
 * I/O less than cacheIoPercent (PSI io some avg60; the guests' own disk I/O counts too, which
 * only makes the balloon act as it did before this rule). Even that comes late on a hard disk:
 * a minute's average of I/O wait rises only once much cache has gone to swap, and then neither
 * the balloon nor KSM pulls the host back (lab, hdd: 3.3-7.9 Mpages/s, against 9.2 before the
 * KSM rule). So the swap must also be fast: less than slowSwapInMs of I/O stall per page
 * swapped in (host field swap_in_io_wait_ms; hdd 6.4 ms, ssd 0.13 ms), known from the first
 * thousand swap-ins on. Measured, that comes too late too (lab, hdd: the domain thrashed before
 * the thousandth swap-in, 3.71 Mpages/s), so until then the device decides: a swap on a
 * device that reports itself rotational (swap_rotational) is slow from the start. A virtual
 * disk that calls itself rotational over flash is corrected by the first thousand swap-ins.
 */
export function hostCanWait(host: Stats | undefined, cfg: SafeguardConfig, splitter = 'a balloon'): string | null {
  const limit = cfg.cacheStallPercent;
  if (limit === null || host === undefined) return null;
  // Minute averages: a burst of a second or two (a guest's start, one swap-in storm) must not
  // turn the rule over. In the lab (ssd, guests with page cache) 1.1 s of memory stall and
  // 4.4 s of I/O stall in 180 s did at avg10: the balloon took cache and KSM ran from then on.
  const stall = hostMemoryStall(host, 'avg60');
  const total = finite(host.swap_total);
  const used = finite(host.swap_usage);
  const huge = finite(host.anon_huge_pages);
  if (stall === null || stall >= limit || total === null || used === null || !(total > 0) || huge === null || !(huge > 0)) return null;
  const free = total - used;
  if (free < total / 4) return null;
  const io = finite(host.psi_io_some_avg60);
  const ioLimit = cfg.cacheIoPercent;
  if (ioLimit !== null && io !== null && io >= ioLimit) return null;
  const ioWhy = ioLimit !== null && io !== null ? ` nor on I/O (psi io some avg60 ${io}% < ${ioLimit}%)` : '';
  // The swap's measured speed once enough pages came back; until then what its device says.
  const wait = finite(host.swap_in_io_wait_ms);
  const rotational = finite(host.swap_rotational);
  const slow = cfg.slowSwapInMs;
  if (slow !== null && (wait !== null ? wait >= slow : rotational === 1)) return null;
  let swapWhy = '';
  if (slow !== null)
    swapWhy = wait !== null ? ` (${wait} ms of I/O stall a page swapped in < ${slow} ms)` : rotational === 0 ? ' (on a non-rotational device)' : '';
  return `the host is not stalling on memory (psi some avg60 ${stall}% < ${limit}%)${ioWhy}, has ${fmtKiB(free)} of ${fmtKiB(total)} swap free${swapWhy}, and ${fmtKiB(huge)} in transparent huge pages that ${splitter} would split`;
}
