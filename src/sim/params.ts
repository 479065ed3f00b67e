// Every constant of the simulator's model, with the reason for its value. Memory in KiB,
// time in seconds. None of these was adjusted to make an experiment come out one way or
// another: each is a kernel fact, a figure from the seed paper (MOM on an IBM HS22, 2011),
// or an order-of-magnitude estimate marked as such. A scenario may override any of them.

export const PAGE_KIB = 4;
export const MIB = 1024;
export const GIB = 1024 * 1024;

/** A storage device that serves page-ins (random 4 KiB reads) and swap-outs (writes). */
export interface DeviceParams {
  /** Service time of one random 4 KiB read with an idle device. */
  readLatencyS: number;
  /** Random 4 KiB reads per second the device sustains with many requests queued. */
  readIops: number;
  /** Sequential write bandwidth, KiB/s: swap-out is written in clusters, not page by page. */
  writeKiBps: number;
}

export interface ModelParams {
  /** Integration step. 1 s is far below the 5 s / 10 s MOM intervals, and a fault latency
   *  (milliseconds) is far below 1 s, so the fluid model's per-step averages hold. */
  stepS: number;
  /** CPU time for a vCPU to write one resident 4 KiB page: a memset of 4 KiB at ~8 GB/s,
   *  or one cache miss plus a two-level (EPT) TLB walk; both are ~0.5 us. Estimate. */
  touchCostS: number;
  /** The device behind host swap. The seed's HS22 kept VM images on NFS and the host's own
   *  swap on its local disk; we do not know either device, so both default to the same
   *  estimate of a 2011 disk array (5 ms random read, 2,000 IOPS, 200 MiB/s sequential)
   *  so that no difference between host and guest swapping comes from the hardware. */
  hostSwapDevice: DeviceParams;
  /** The device behind guest swap and guest file reads (the VM images; NFS in the seed). */
  guestDevice: DeviceParams;
  /** How fast a balloon inflates or deflates, KiB/s. The virtio-balloon driver hands the
   *  host 256 pages per virtqueue request and QEMU discards them with madvise; this runs
   *  at hundreds of MiB/s. Estimate; at 10 s policy intervals the rate rarely binds. */
  balloonRateKiBps: number;
  /** ksmd CPU time per page scanned: a checksum of 4 KiB plus red-black tree lookups with
   *  memcmp. Reports of ksmd at a few percent of a core for 5,000 pages/s (the kernel's
   *  defaults, 100 pages every 20 ms) put it at a few microseconds. Estimate. */
  ksmCostPerPageS: number;
  /** Fraction of a guest's kernel/OS memory that is identical across guests booted from
   *  the same image (kernel text, shared libraries, zeroed buffers). The seed's guests were
   *  32 copies of one image. Estimate. */
  osSharedFraction: number;
  /** For each distinct KSM page, how many guest pages map it, for workload data. A merged
   *  page saves (sharers - 1)/sharers of its memory. Estimate: data merges in large groups. */
  ksmDataSharers: number;
  /** Memory the host keeps for itself (kernel, libvirtd, page cache of its own files). */
  hostOsKiB: number;
  /** Per-guest QEMU overhead outside guest RAM (device emulation, EPT tables, I/O buffers).
   *  ~64 MiB is typical of qemu-kvm processes of the period. Estimate. */
  qemuOverheadKiB: number;
  /** Memory a guest's kernel and system daemons use after boot (a minimal 2011 distro
   *  guest: ~128 MiB). Estimate. */
  guestKernelKiB: number;
  /** Page cache a guest cannot drop without thrashing on its own binaries and libraries. */
  guestMinCacheKiB: number;
  /** Seconds before a workload killed by the guest's OOM killer is started again (a
   *  benchmark harness restarting it). */
  oomRestartS: number;
  /** Pages one swap-in I/O brings when the faulting access is sequential and the pages were
   *  swapped out in that order: vm.page-cluster defaults to 3, 2^3 = 8 pages per read. It
   *  applies to a Memknobs loop on both sides: the guest's LRU swaps its buffer out in loop
   *  order, and the 2.6.3x host evicts guest pages in list order (see hostReclaim), which is
   *  the order the guest first touched them; and to a new run's allocation, which reuses
   *  the pages the previous run freed in bulk, in about the order the host swapped them.
   *  Random access (a web server) and the guest's own reclaim get 1. */
  swapReadaheadPages: number;
  /** Whether the host's LRU learns which guest pages are in use. false (default), as on
   *  the seed's hardware and kernel: with EPT and no accessed bits, Linux 2.6.3x's
   *  kvm_age_rmapp() reports every guest page as old ("always return old for EPT"), so host
   *  reclaim picks guest pages with no regard to use. true: EPT accessed bits (Intel Haswell
   *  and later, newer kernels) let the host keep pages the guest touches continuously and
   *  evict the others first; it still cannot tell which of them the guest considers free. */
  hostSeesGuestAccess: boolean;
  /** Whether swap readahead also serves a sequential writer's reuse of freed pages the host
   *  swapped (see swapReadaheadPages). false: one read per page. */
  reuseReadahead: boolean;
  /** Weight of the newest step in each device's load average (queueing delay). */
  deviceLoadSmoothing: number;
  /** Every guest hands its freed pages back (virtio-balloon free page reporting), unless its
   *  own `freePageReporting` says otherwise: KubeVirt's default. */
  guestsReportFreePages: boolean;
  /** Seconds before a freed page is reported: the guest kernel's page_reporting_delay (2 s). */
  fprDelayS: number;
  /** Share of a reporting guest's touched free memory that stays unreported: reporting takes
   *  free blocks of the pageblock order (2 MiB on x86) and up, so free pages in smaller
   *  fragments stay with the host (estimate). */
  fprUnreportedFraction: number;
}

export const defaultParams: ModelParams = {
  stepS: 1,
  touchCostS: 0.5e-6,
  hostSwapDevice: { readLatencyS: 0.005, readIops: 2000, writeKiBps: 200 * MIB },
  guestDevice: { readLatencyS: 0.005, readIops: 2000, writeKiBps: 200 * MIB },
  balloonRateKiBps: 256 * MIB,
  ksmCostPerPageS: 3e-6,
  osSharedFraction: 0.5,
  ksmDataSharers: 32,
  hostOsKiB: 1 * GIB,
  qemuOverheadKiB: 64 * MIB,
  guestKernelKiB: 128 * MIB,
  guestMinCacheKiB: 16 * MIB,
  oomRestartS: 30,
  swapReadaheadPages: 8,
  hostSeesGuestAccess: false,
  reuseReadahead: true,
  deviceLoadSmoothing: 0.5,
  guestsReportFreePages: false,
  fprDelayS: 2,
  fprUnreportedFraction: 0.1,
};

/** Reclaim watermarks as Linux computes them for a zone of `totalKiB`:
 *  min_free_kbytes = sqrt(16 * lowmem KiB) (clamped to [128 KiB, 256 MiB] in recent kernels),
 *  low = min + step, high = min + 2 * step, step = max(min / 4, total * watermark_scale_factor
 *  (default 10 / 10000)). kswapd wakes below low and reclaims up to high. */
export function watermarks(totalKiB: number): { min: number; low: number; high: number } {
  const min = Math.min(256 * MIB, Math.max(128, Math.sqrt(16 * Math.max(0, totalKiB))));
  const step = Math.max(min / 4, totalKiB * 0.001);
  return { min, low: min + step, high: min + 2 * step };
}

/** What a scenario or --param may override (devices field by field). */
export type ParamOverrides = Partial<Omit<ModelParams, 'hostSwapDevice' | 'guestDevice'>> & {
  hostSwapDevice?: Partial<DeviceParams>;
  guestDevice?: Partial<DeviceParams>;
};

export function mergeParams(base: ModelParams, over: ParamOverrides | undefined): ModelParams {
  if (!over) return base;
  return {
    ...base,
    ...over,
    hostSwapDevice: { ...base.hostSwapDevice, ...(over.hostSwapDevice ?? {}) },
    guestDevice: { ...base.guestDevice, ...(over.guestDevice ?? {}) },
  };
}
