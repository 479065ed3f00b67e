// The simulated host: guests (src/sim/guest.ts) coming and going on a schedule, host reclaim
// (swapping guest memory when the host runs short), KSM merging, CPU and device contention.
// Deterministic: the same spec and seed give the same run.
import { type ModelParams, type ParamOverrides, GIB, MIB, PAGE_KIB, defaultParams, mergeParams, watermarks } from './params.js';
import { Rng } from './rng.js';
import { type GuestCounters, type Part, type StepCtx, SimGuest } from './guest.js';
import type { WorkloadSpec } from './workloads.js';
import type { VirtioMemSpec } from './virtio-mem.js';

export interface GuestSpec {
  name: string;
  /** Guest memory (balloon_max), MiB. */
  memMiB: number;
  vcpus?: number;
  /** Guest swap, MiB. Default: equal to memory (RHEL 6's guidance for 2-8 GiB of RAM). */
  swapMiB?: number;
  /** balloon_cur at boot, MiB (default: memMiB). */
  balloonMiB?: number;
  /** balloon_min reported to the policy, MiB (default 0, as libvirt without min_guarantee). */
  balloonMinMiB?: number;
  /** Page cache filled at start, MiB (data loaded into the guest before the run). */
  cacheMiB?: number;
  /** Simulated second at which it starts (default 0) and stops (default: never). */
  startS?: number;
  stopS?: number;
  workload: WorkloadSpec;
  /** A virtio-mem device beside memMiB (src/sim/virtio-mem.ts). */
  virtioMem?: VirtioMemSpec;
  /** It hands freed pages back (free page reporting); default: params.guestsReportFreePages. */
  freePageReporting?: boolean;
}

export interface KsmSettingsState {
  run: number;
  pages_to_scan: number;
  sleep_millisecs: number;
  merge_across_nodes: number;
}

export interface ScenarioSpec {
  name?: string;
  description?: string;
  host: {
    memMiB: number;
    swapMiB: number;
    cpus: number;
    /** Memory taken out of reach of guests (the seed reserved huge pages for Cloudy). It
     *  still counts in mem_available (MemTotal), as reserved huge pages do. */
    reservedMiB?: number;
    /** KSM's state at start (kernel defaults: run 0, 100 pages, 20 ms). */
    ksm?: Partial<KsmSettingsState>;
  };
  guests: GuestSpec[];
  seed?: number;
  params?: ParamOverrides;
}

export type WorldEvent = { kind: 'started' | 'stopped' | 'destroyed' | 'crashed'; name: string; detail?: string };

/** Host-wide counters that only grow. */
export interface HostCounters {
  swapInKiB: number;
  swapOutKiB: number;
  majorFaults: number;
  minorFaults: number;
  ksmFullScans: number;
  ksmdCpuS: number;
  ksmCowKiB: number;
  /** Seconds the host was below its low watermark (reclaiming guest memory). */
  pressureS: number;
  hostOomKills: number;
}

/** What a finished or stopped guest contributed (kept for the run's totals). */
export interface GuestRecord {
  name: string;
  workload: string;
  counters: GuestCounters;
}

export class SimWorld {
  readonly spec: ScenarioSpec;
  readonly params: ModelParams;
  readonly seed: number;
  readonly hostTotalKiB: number;
  readonly hostSwapKiB: number;
  readonly reservedKiB: number;
  readonly cpus: number;
  private _now = 0;
  get now(): number {
    return this._now;
  }

  /** Running guests, in start order. */
  readonly guests = new Map<string, SimGuest>();
  /** Every guest that ever ran, finished or not, by name (the latest one of a name). */
  readonly records = new Map<string, GuestRecord>();
  ksm: KsmSettingsState;
  readonly host: HostCounters = {
    swapInKiB: 0,
    swapOutKiB: 0,
    majorFaults: 0,
    minorFaults: 0,
    ksmFullScans: 0,
    ksmdCpuS: 0,
    ksmCowKiB: 0,
    pressureS: 0,
    hostOomKills: 0,
  };
  /** Last step's ksmd CPU use, fraction of one CPU. */
  ksmdCpu = 0;
  private hostLoad = 0;
  private guestLoad = 0;
  private carryHostBusy = 0;
  private carryGuestBusy = 0;
  private cpuShare = 1;
  private readonly rng: Rng;
  private readonly pending: { at: number; spec: GuestSpec; index: number }[];
  private readonly events: WorldEvent[] = [];
  private listeners: ((e: WorldEvent) => void)[] = [];

  constructor(spec: ScenarioSpec, seed?: number) {
    this.spec = spec;
    this.params = mergeParams(defaultParams, spec.params);
    this.seed = seed ?? spec.seed ?? 1;
    this.rng = new Rng(this.seed);
    this.hostTotalKiB = spec.host.memMiB * MIB;
    this.hostSwapKiB = spec.host.swapMiB * MIB;
    this.reservedKiB = (spec.host.reservedMiB ?? 0) * MIB;
    this.cpus = spec.host.cpus;
    this.ksm = { run: 0, pages_to_scan: 100, sleep_millisecs: 20, merge_across_nodes: 1, ...spec.host.ksm };
    this.pending = spec.guests.map((g, index) => ({ at: g.startS ?? 0, spec: g, index })).sort((a, b) => a.at - b.at || a.index - b.index);
    this.startDue();
  }

  // ---- events -----------------------------------------------------------------------

  onEvent(listener: (e: WorldEvent) => void): () => void {
    this.listeners.push(listener);
    return () => {
      this.listeners = this.listeners.filter((l) => l !== listener);
    };
  }

  private emit(e: WorldEvent): void {
    this.events.push(e);
    for (const l of this.listeners) l(e);
  }

  /** Events since the last call (for polling consumers). */
  drainEvents(): WorldEvent[] {
    return this.events.splice(0);
  }

  // ---- lifecycle ----------------------------------------------------------------------

  private startDue(): void {
    while (this.pending.length > 0 && this.pending[0]!.at <= this._now + 1e-9) {
      const { spec, index } = this.pending.shift()!;
      if (this.guests.has(spec.name)) throw new Error(`scenario: guest ${spec.name} is already running`);
      const noiseRng = this.rng.fork(index + 1);
      const g = new SimGuest(
        {
          name: spec.name,
          maxKiB: spec.memMiB * MIB,
          vcpus: spec.vcpus ?? 1,
          swapKiB: (spec.swapMiB ?? spec.memMiB) * MIB,
          balloonKiB: (spec.balloonMiB ?? spec.memMiB) * MIB,
          balloonMinKiB: (spec.balloonMinMiB ?? 0) * MIB,
          cacheKiB: (spec.cacheMiB ?? 0) * MIB,
          workload: spec.workload,
          virtioMem: spec.virtioMem,
          freePageReporting: spec.freePageReporting ?? this.params.guestsReportFreePages,
        },
        this.params,
        this._now,
        // Symmetric noise in [-1, 1): request arrivals vary from step to step.
        () => noiseRng.next() * 2 - 1,
      );
      this.guests.set(spec.name, g);
      this.records.set(spec.name, { name: spec.name, workload: spec.workload.kind, counters: g.c });
      this.emit({ kind: 'started', name: spec.name });
    }
  }

  private stopDue(): void {
    for (const spec of this.spec.guests) {
      if (spec.stopS === undefined || spec.stopS > this._now + 1e-9) continue;
      if (this.guests.delete(spec.name)) this.emit({ kind: 'stopped', name: spec.name });
    }
  }

  /** Remove a guest now (destroyed by an operator, or `crashed` by the host OOM killer);
   *  false if it was not running. */
  destroyGuest(name: string, detail = 'destroyed', kind: 'destroyed' | 'crashed' = 'destroyed'): boolean {
    if (!this.guests.delete(name)) return false;
    this.emit({ kind, name, detail });
    return true;
  }

  // ---- host views ---------------------------------------------------------------------

  /** KiB saved by KSM: merged guest pages minus the KSM pages that hold their content. */
  ksmSavings(): { mergedKiB: number; sharedKiB: number; savedKiB: number; osMergedKiB: number } {
    let os = 0;
    let data = 0;
    let maxKern = 0;
    for (const g of this.guests.values()) {
      os += g.kern.ksm;
      data += g.hot.ksm + g.cold.ksm + g.cache.ksm + g.freeT.ksm;
      maxKern = Math.max(maxKern, g.kern.size * this.params.osSharedFraction);
    }
    // OS pages: one copy of the image's shareable pages serves every guest.
    const osShared = Math.min(os, maxKern);
    const dataShared = data / Math.max(1, this.params.ksmDataSharers);
    const shared = osShared + dataShared;
    return { mergedKiB: os + data, sharedKiB: shared, savedKiB: Math.max(0, os + data - shared), osMergedKiB: os };
  }

  /** Host memory in use, KiB (host OS, reserved, QEMU overheads, guest pages not in swap,
   *  less what KSM saves). */
  hostUsedKiB(): number {
    let used = this.params.hostOsKiB + this.reservedKiB;
    for (const g of this.guests.values()) used += this.params.qemuOverheadKiB + g.hostResidentKiB;
    return used - this.ksmSavings().savedKiB;
  }

  hostFreeKiB(): number {
    return this.hostTotalKiB - this.hostUsedKiB();
  }

  hostSwapUsedKiB(): number {
    let s = 0;
    for (const g of this.guests.values()) s += g.hostSwappedKiB;
    return s;
  }

  // ---- time ---------------------------------------------------------------------------

  /** Move simulated time forward by `seconds`, in steps of params.stepS. */
  advance(seconds: number): void {
    if (!(seconds >= 0) || !Number.isFinite(seconds)) throw new Error(`advance: bad duration ${seconds}`);
    let left = seconds;
    while (left > 1e-9) {
      const dt = Math.min(this.params.stepS, left);
      this.step(dt);
      left -= dt;
    }
  }

  private step(dt: number): void {
    const p = this.params;
    const queue = (load: number) => 1 / (1 - Math.min(0.95, load));
    const ctx: StepCtx = {
      now: this._now,
      dt,
      params: p,
      cpuShare: this.cpuShare,
      hostLatencyS: p.hostSwapDevice.readLatencyS * queue(this.hostLoad),
      guestLatencyS: p.guestDevice.readLatencyS * queue(this.guestLoad),
      hostDevBusyS: this.carryHostBusy,
      guestDevBusyS: this.carryGuestBusy,
      hostSwapInKiB: 0,
      hostMajorFaults: 0,
      hostMinorFaults: 0,
      ksmCowKiB: 0,
    };
    const guests = [...this.guests.values()];

    // Phase 1: allocations, frees, balloons, guest kswapd.
    for (const g of guests) g.prepare(ctx);

    // Phase 2: plans; then what fraction of the planned reads each device can serve in the
    // time it has left after the writes and reads already issued this step.
    const reads = { host: 0, guest: 0 };
    for (const g of guests) g.makePlan(ctx, reads);
    const hostLeft = Math.max(0.1 * dt, dt - ctx.hostDevBusyS);
    const guestLeft = Math.max(0.1 * dt, dt - ctx.guestDevBusyS);
    const hostScale = reads.host > 0 ? Math.min(1, (hostLeft * p.hostSwapDevice.readIops) / reads.host) : 1;
    const guestScale = reads.guest > 0 ? Math.min(1, (guestLeft * p.guestDevice.readIops) / reads.guest) : 1;

    // Phase 3: the work, each guest slowed by the busiest device it needs.
    for (const g of guests) {
      const r = g.plannedReads;
      const sc = Math.min(r.host > 0 ? hostScale : 1, r.guest > 0 ? guestScale : 1);
      g.applyPlan(ctx, sc);
      g.c.aliveS += dt;
    }

    // Phase 4: the host reclaims when it runs short; KSM scans.
    const hostWm = watermarks(this.hostTotalKiB);
    let free = this.hostFreeKiB();
    if (free < hostWm.low) {
      this.host.pressureS += dt;
      const written = this.hostReclaim(hostWm.high - free);
      ctx.hostDevBusyS += written / p.hostSwapDevice.writeKiBps;
      free = this.hostFreeKiB();
      while (free < hostWm.min && this.guests.size > 0) {
        this.hostOomKill();
        free = this.hostFreeKiB();
      }
    }
    this.ksmStep(dt, ctx);

    // Device load for the next step's queueing delay; I/O issued beyond the device's
    // capacity this step is carried into the next.
    const a = p.deviceLoadSmoothing;
    this.hostLoad = (1 - a) * this.hostLoad + a * Math.min(1, ctx.hostDevBusyS / dt);
    this.guestLoad = (1 - a) * this.guestLoad + a * Math.min(1, ctx.guestDevBusyS / dt);
    this.carryHostBusy = Math.max(0, ctx.hostDevBusyS - dt);
    this.carryGuestBusy = Math.max(0, ctx.guestDevBusyS - dt);

    // CPU: vCPUs that want to run share what ksmd leaves (the host kernel's fair scheduler).
    let want = 0;
    for (const g of this.guests.values()) want += g.cpuDemand;
    const avail = Math.max(0.5, this.cpus - this.ksmdCpu);
    this.cpuShare = want > avail ? avail / want : 1;

    this.host.swapInKiB += ctx.hostSwapInKiB;
    this.host.majorFaults += ctx.hostMajorFaults;
    this.host.minorFaults += ctx.hostMinorFaults;
    this.host.ksmCowKiB += ctx.ksmCowKiB;
    this._now += dt;
    this.stopDue();
    this.startDue();
  }

  /** Swap `need` KiB of guest memory out, spread over the guest pages the host may swap in
   *  proportion: the host cannot tell a guest's hot pages from its cold or free ones (the
   *  seed: "the host lacks guest page-access information, it cannot use LRU well"; see
   *  params.hostSeesGuestAccess). With access information, pages outside the guests'
   *  working sets and kernels go first. KSM-merged pages are left alone. Returns KiB written. */
  private hostReclaim(need: number): number {
    const room = Math.max(0, this.hostSwapKiB - this.hostSwapUsedKiB());
    let want = Math.min(need, room);
    let written = 0;
    const tiers: ((g: SimGuest) => Part[])[] = this.params.hostSeesGuestAccess
      ? [(g) => [g.cold, g.cache, g.freeT], (g) => [g.kern, g.hot]]
      : [(g) => g.parts()];
    for (const tier of tiers) {
      if (want <= 0) break;
      let total = 0;
      for (const g of this.guests.values()) for (const pt of tier(g)) total += Math.max(0, pt.size - pt.hsw - pt.ksm);
      if (total <= 0) continue;
      const f = Math.min(1, want / total);
      for (const g of this.guests.values()) {
        for (const pt of tier(g)) {
          const x = Math.max(0, pt.size - pt.hsw - pt.ksm) * f;
          if (x > 0) {
            g.hostSwapOut(pt, x);
            written += x;
            want -= x;
          }
        }
      }
    }
    this.host.swapOutKiB += written;
    return written;
  }

  /** Out of memory and swap: the host's OOM killer kills the QEMU process with the most
   *  memory (its badness counts resident and swapped pages). */
  private hostOomKill(): void {
    let victim: SimGuest | null = null;
    for (const g of this.guests.values()) if (!victim || g.touchedKiB > victim.touchedKiB) victim = g;
    if (!victim) return;
    this.host.hostOomKills += 1;
    victim.c.oomKills += 1;
    this.destroyGuest(victim.name, 'killed by the host OOM killer', 'crashed');
  }

  /** ksmd: with run=1 it scans pages_to_scan pages, sleeps sleep_millisecs, and so on. A
   *  page is merged when it is seen unchanged and identical to another page, so only
   *  stable duplicate pages merge: working-set pages being written are volatile. Every
   *  resident page of the guests is visited once per full scan, so in `dt` seconds a
   *  fraction rate*dt/scannable of the eligible pages merges. run=2 unmerges everything;
   *  run=0 stops scanning but keeps merged pages (kernel documentation). */
  private ksmStep(dt: number, ctx: StepCtx): void {
    const p = this.params;
    this.ksmdCpu = 0;
    if (this.ksm.run === 2) {
      for (const g of this.guests.values()) for (const pt of g.parts()) pt.ksm = 0;
      return;
    }
    if (this.ksm.run !== 1 || this.ksm.pages_to_scan <= 0) return;
    const sleepS = Math.max(0, this.ksm.sleep_millisecs) / 1000;
    const batch = this.ksm.pages_to_scan;
    const rate = batch / (sleepS + batch * p.ksmCostPerPageS); // pages/s
    this.ksmdCpu = rate * p.ksmCostPerPageS;
    this.host.ksmdCpuS += this.ksmdCpu * dt;
    let scannable = 0;
    for (const g of this.guests.values()) scannable += g.hostResidentKiB / PAGE_KIB;
    if (scannable <= 0) return;
    const visited = (rate * dt) / scannable;
    this.host.ksmFullScans += visited;
    const h = 1 - Math.exp(-visited);
    for (const g of this.guests.values()) {
      const dup = g.demand.dupFraction;
      this.mergeInto(g.kern, p.osSharedFraction, h);
      this.mergeInto(g.cold, dup, h);
      this.mergeInto(g.freeT, dup, h);
      this.mergeInto(g.cache, g.demand.cacheDupFraction, h);
    }
    void ctx;
  }

  private mergeInto(pt: Part, dupFraction: number, h: number): void {
    const eligible = (pt.size - pt.hsw) * dupFraction - pt.ksm;
    if (eligible > 0) pt.ksm += eligible * h;
  }

  // ---- totals -------------------------------------------------------------------------

  /** Totals over every guest that ran (running or not). */
  totals(): {
    touches: number;
    requests: number;
    requestsOffered: number;
    guestSwapInKiB: number;
    guestSwapOutKiB: number;
    guestOomKills: number;
    perGuestRate: { name: string; workload: string; rate: number }[];
  } {
    let touches = 0;
    let requests = 0;
    let offered = 0;
    let sin = 0;
    let sout = 0;
    let oom = 0;
    const perGuestRate: { name: string; workload: string; rate: number }[] = [];
    for (const r of this.records.values()) {
      const c = r.counters;
      touches += c.touches;
      requests += c.requests;
      offered += c.requestsOffered;
      sin += c.swapInKiB;
      sout += c.swapOutKiB;
      oom += c.oomKills;
      const work = r.workload === 'web' ? c.requests : c.touches;
      perGuestRate.push({ name: r.name, workload: r.workload, rate: c.aliveS > 0 ? work / c.aliveS : 0 });
    }
    return {
      touches,
      requests,
      requestsOffered: offered,
      guestSwapInKiB: sin,
      guestSwapOutKiB: sout,
      guestOomKills: oom - this.host.hostOomKills,
      perGuestRate,
    };
  }
}

export { GIB, MIB };
