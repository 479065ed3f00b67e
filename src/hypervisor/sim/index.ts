// The simulator behind the same interfaces as the real drivers: a Hypervisor (guests,
// balloons, lifecycle events), a KSM backend and a host source, all reading one SimWorld.
// Field names and units are MOM's, as the libvirt driver and the /proc sources give them:
// guest swap_in/swap_out (KiB) and major_fault/minor_fault are counters since the guest
// booted (virtio-balloon statistics are), host swap_in/swap_out/major_fault/minor_fault are
// per-interval deltas in pages (as /proc/vmstat read by MOM), memory in KiB.
import type { GuestSample, HostSource, Hypervisor, HypervisorCapabilities, KsmBackend, KsmSettings, LifecycleEvent, Stats } from '../../types.js';
import { PAGE_KIB } from '../../sim/params.js';
import type { SimGuest } from '../../sim/guest.js';
import type { SimWorld } from '../../sim/world.js';
import { withMomDefaults } from '../mom-defaults.js';
import { simCpuTune } from './cputune.js';
import { SimMemoryDevices } from './memory-devices.js';
import { SimGuestReclaim } from './guest-reclaim.js';

const round2 = (v: number) => Math.round(v * 100) / 100;

function guestStats(world: SimWorld, g: SimGuest): Stats {
  const c = g.c;
  return withMomDefaults({
    balloon_cur: Math.round(g.balloonCur),
    balloon_max: g.maxKiB,
    balloon_min: g.balloonMinKiB,
    mem_available: Math.round(g.balloonCur),
    mem_unused: Math.round(g.freeKiB),
    mem_free: Math.round(g.freeKiB + g.cache.size),
    // What the guest could hand over without swapping (free + droppable cache), as
    // virtio-balloon's "usable" (MemAvailable) statistic.
    mem_usable: Math.round(g.freeKiB + Math.max(0, g.cache.size - world.params.guestMinCacheKiB)),
    swap_in: Math.round(c.swapInKiB),
    swap_out: Math.round(c.swapOutKiB),
    major_fault: Math.round(c.majorFaults),
    minor_fault: Math.round(c.minorFaults),
    rss: Math.round(g.hostResidentKiB + world.params.qemuOverheadKiB),
    // The guest's own PSI, as hypervisor.guest_psi reads it from a real guest. A simulated
    // guest runs one workload, so whenever it stalls all its work does: full = some.
    psi_some_avg10: round2(g.psiSome10),
    psi_some_avg60: round2(g.psiSome60),
    psi_full_avg10: round2(g.psiSome10),
    psi_full_avg60: round2(g.psiSome60),
    // The guest's OOM kills since boot, as QEMU 9.1+ reports a Linux 6.12+ guest's; the scan
    // and reclaim counters have no counterpart in the fluid model.
    oom_kills: g.c.oomKills,
    vcpu_count: g.vcpus,
    // MOM's CpuTune fields as a guest without a CPU limit has them (no quota, the default period).
    vcpu_quota: -1,
    vcpu_period: 100000,
  });
}

export class SimHypervisor implements Hypervisor {
  readonly name = 'sim';
  /** setBalloon calls that changed a guest's target (for run summaries). */
  balloonActions = 0;
  /** The simulated host's own KSM, and CPU tuning kept as set (the simulator has no scheduler). */
  readonly capabilities: HypervisorCapabilities;

  constructor(private readonly world: SimWorld) {
    this.capabilities = { ksm: new SimKsm(world), cpuTune: simCpuTune(), memoryDevices: new SimMemoryDevices(world), guestReclaim: new SimGuestReclaim(world) };
  }

  async connect(): Promise<void> {}
  async close(): Promise<void> {}

  async collect(): Promise<GuestSample[]> {
    const out: GuestSample[] = [];
    for (const g of this.world.guests.values()) {
      out.push({
        id: g.name,
        name: g.name,
        props: { name: g.name, workload: g.workload.kind, free_page_reporting: g.reportsFreePages ? 1 : 0 },
        stats: guestStats(this.world, g),
      });
    }
    return out;
  }

  async setBalloon(id: string, targetKiB: number): Promise<void> {
    const g = this.world.guests.get(id);
    if (!g) throw new Error(`sim: cannot set the balloon of guest ${id}: it is not running`);
    if (typeof targetKiB !== 'number' || !Number.isFinite(targetKiB) || targetKiB <= 0)
      throw new Error(`sim: guest ${id}: balloon target must be a positive number of KiB, got ${targetKiB}`);
    if (targetKiB > g.maxKiB) throw new Error(`sim: guest ${id}: balloon target ${Math.round(targetKiB)} KiB exceeds its maximum ${g.maxKiB} KiB`);
    if (Math.abs(targetKiB - g.balloonTarget) > 0.5) this.balloonActions++;
    g.balloonTarget = targetKiB;
  }

  onEvent(listener: (e: LifecycleEvent) => void): () => void {
    return this.world.onEvent((e) => listener({ kind: e.kind, id: e.name, name: e.name, detail: e.detail }));
  }
}

const KSM_LIMITS: Record<keyof KsmSettings, [number, number]> = {
  run: [0, 2],
  pages_to_scan: [0, 2 ** 32 - 1],
  sleep_millisecs: [0, 2 ** 32 - 1],
  merge_across_nodes: [0, 1],
};

/** KSM's sysfs files as the simulator keeps them. */
function ksmStats(world: SimWorld): Stats {
  const sav = world.ksmSavings();
  let volatile = 0;
  let unshared = 0;
  if (world.host.ksmFullScans > 0) {
    // After a scan, pages being written are "volatile"; stable pages with no twin "unshared".
    for (const g of world.guests.values()) {
      volatile += g.hot.size - g.hot.hsw;
      const dup = g.demand.dupFraction;
      unshared += (g.cold.size - g.cold.hsw + g.freeT.size - g.freeT.hsw) * (1 - dup);
      unshared += (g.kern.size - g.kern.hsw) * (1 - world.params.osSharedFraction);
      unshared += (g.cache.size - g.cache.hsw) * (1 - g.demand.cacheDupFraction);
    }
  }
  return {
    ksm_run: world.ksm.run,
    ksm_pages_to_scan: world.ksm.pages_to_scan,
    ksm_sleep_millisecs: world.ksm.sleep_millisecs,
    ksm_merge_across_nodes: world.ksm.merge_across_nodes,
    ksm_pages_shared: Math.round(sav.sharedKiB / PAGE_KIB),
    ksm_pages_sharing: Math.round(sav.savedKiB / PAGE_KIB),
    ksm_pages_unshared: Math.round(unshared / PAGE_KIB),
    ksm_pages_volatile: Math.round(volatile / PAGE_KIB),
    ksm_full_scans: Math.floor(world.host.ksmFullScans),
  };
}

export class SimKsm implements KsmBackend {
  constructor(private readonly world: SimWorld) {}

  async read(): Promise<Stats> {
    return ksmStats(this.world);
  }

  async write(settings: Partial<KsmSettings>): Promise<void> {
    // Check everything first so that a bad value changes nothing.
    for (const [k, v] of Object.entries(settings)) {
      const lim = KSM_LIMITS[k as keyof KsmSettings];
      if (!lim) throw new Error(`sim ksm: unknown setting ${k}`);
      if (typeof v !== 'number' || !Number.isInteger(v) || v < lim[0] || v > lim[1])
        throw new Error(`sim ksm: ${k} must be an integer in [${lim[0]}, ${lim[1]}], got ${String(v)}`);
    }
    Object.assign(this.world.ksm, settings);
  }
}

/** Host fields: memory, swap, faults, KSM, CPUs. Rates are deltas since this source's last
 *  collection (null on the first, as the /proc sources report). */
export function simHostSource(world: SimWorld): HostSource {
  let prev: { t: number; sin: number; sout: number; maj: number; min: number; ksmCpu: number } | null = null;
  return {
    name: 'sim',
    async collect(): Promise<Stats> {
      const h = world.host;
      const cur = {
        t: world.now,
        sin: h.swapInKiB / PAGE_KIB,
        sout: h.swapOutKiB / PAGE_KIB,
        maj: h.majorFaults,
        min: h.minorFaults,
        ksmCpu: h.ksmdCpuS,
      };
      const free = world.hostFreeKiB();
      let shareable = 0;
      for (const g of world.guests.values()) shareable += g.hostResidentKiB + world.params.qemuOverheadKiB;
      const dt = prev ? cur.t - prev.t : 0;
      const d = (a: number, b: number) => (prev ? Math.max(0, Math.round(a - b)) : null);
      const stats: Stats = {
        mem_available: world.hostTotalKiB,
        mem_unused: Math.round(free),
        mem_free: Math.round(free),
        anon_pages: Math.round(world.hostUsedKiB() - world.params.hostOsKiB - world.reservedKiB),
        swap_total: world.hostSwapKiB,
        swap_usage: Math.round(world.hostSwapUsedKiB()),
        swap_in: d(cur.sin, prev?.sin ?? 0),
        swap_out: d(cur.sout, prev?.sout ?? 0),
        major_fault: d(cur.maj, prev?.maj ?? 0),
        minor_fault: d(cur.min, prev?.min ?? 0),
        ...ksmStats(world),
        ksm_shareable: Math.round(shareable),
        ksmd_cpu_usage: prev && dt > 0 ? Math.round(((cur.ksmCpu - prev.ksmCpu) / dt) * 1000) / 10 : null,
        cpu_count: world.cpus,
      };
      prev = cur;
      return stats;
    },
  };
}

export interface SimMetrics {
  /** Sum over guests of each guest's mean work rate (as the seed scored Memknobs): pages
   *  touched/s when most guests run Memknobs-like workloads, requests/s when most serve web. */
  throughput: number;
  throughput_unit: 'pages/s' | 'requests/s';
  memknobs_pages_per_s: number;
  web_requests_per_s: number;
  web_requests_offered_per_s: number;
  /** Pages swapped in or out, host and guests together. */
  swap_ops: number;
  host_swap_ops: number;
  guest_swap_ops: number;
  oom_kills: number;
  guest_oom_kills: number;
  host_oom_kills: number;
  /** Simulated seconds the host spent below its low watermark. */
  pressure_s: number;
  /** Sum over guests of seconds their workload was slowed by memory. */
  guest_stalled_s: number;
  ksmd_cpu_s: number;
  ksm_saved_kib: number;
  host_swap_usage_kib: number;
  simulated_s: number;
}

export function simWorldMetrics(world: SimWorld): SimMetrics {
  const t = world.totals();
  let knobs = 0;
  let web = 0;
  let webOffered = 0;
  let nKnobs = 0;
  let nWeb = 0;
  let stalled = 0;
  for (const r of world.records.values()) {
    const c = r.counters;
    stalled += c.stalledS;
    if (c.aliveS <= 0) continue;
    if (r.workload === 'web') {
      web += c.requests / c.aliveS;
      webOffered += c.requestsOffered / c.aliveS;
      nWeb++;
    } else if (r.workload === 'memknobs' || r.workload === 'phases') {
      knobs += c.touches / c.aliveS;
      nKnobs++;
    }
  }
  const hostOps = (world.host.swapInKiB + world.host.swapOutKiB) / PAGE_KIB;
  const guestOps = (t.guestSwapInKiB + t.guestSwapOutKiB) / PAGE_KIB;
  const webMain = nWeb > nKnobs;
  return {
    throughput: webMain ? web : knobs,
    throughput_unit: webMain ? 'requests/s' : 'pages/s',
    memknobs_pages_per_s: knobs,
    web_requests_per_s: web,
    web_requests_offered_per_s: webOffered,
    swap_ops: hostOps + guestOps,
    host_swap_ops: hostOps,
    guest_swap_ops: guestOps,
    oom_kills: t.guestOomKills + world.host.hostOomKills,
    guest_oom_kills: t.guestOomKills,
    host_oom_kills: world.host.hostOomKills,
    pressure_s: world.host.pressureS,
    guest_stalled_s: stalled,
    ksmd_cpu_s: world.host.ksmdCpuS,
    ksm_saved_kib: world.ksmSavings().savedKiB,
    host_swap_usage_kib: world.hostSwapUsedKiB(),
    simulated_s: world.now,
  };
}
