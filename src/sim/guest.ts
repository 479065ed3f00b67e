// One simulated guest: its memory as the guest kernel sees it (kernel, anonymous working set
// and cold pages, page cache, free pages, its own swap) and, for every part, how much of it
// the host has swapped out or KSM has merged. A fluid model: amounts in KiB, moved between
// parts in proportion (pages inside a part are alike), which keeps a step O(1) per guest.
import { type ModelParams, PAGE_KIB, watermarks } from './params.js';
import { type Demand, type WorkloadSpec, demandAt } from './workloads.js';
import { SimVirtioMem, type VirtioMemHost, type VirtioMemSpec } from './virtio-mem.js';

/** A part of guest RAM: `size` KiB, of which `hsw` KiB are in host swap and `ksm` KiB are
 *  mapped to KSM pages (merged pages stay resident; the host does not swap them here). */
export interface Part {
  size: number;
  hsw: number;
  ksm: number;
}

/** Pages on their way from free memory to a new use; `fresh` is the part never touched
 *  before (the host has no page behind it yet). */
interface Staged extends Part {
  fresh: number;
}

const part = (): Part => ({ size: 0, hsw: 0, ksm: 0 });
const staged = (): Staged => ({ size: 0, hsw: 0, ksm: 0, fresh: 0 });
const EPS = 1e-6;
const MIB_KIB = 1024;

/** Move `x` KiB from `from` to `to`, carrying host-swapped and merged shares along. */
function move(from: Part, x: number, to: Part): number {
  if (x <= EPS || from.size <= EPS) return 0;
  if (x > from.size) x = from.size;
  const f = x / from.size;
  const h = from.hsw * f;
  const k = from.ksm * f;
  from.size -= x;
  from.hsw -= h;
  from.ksm -= k;
  if (from.size < EPS) {
    from.size = 0;
    from.hsw = 0;
    from.ksm = 0;
  } else {
    if (from.hsw < EPS) from.hsw = 0;
    if (from.ksm < EPS) from.ksm = 0;
  }
  to.size += x;
  to.hsw += h;
  to.ksm += k;
  return x;
}

/** What one step asks of the host and the devices, summed over guests by the world. */
export interface StepCtx {
  now: number;
  dt: number;
  params: ModelParams;
  cpuShare: number;
  /** Current read latency of each device including queueing delay. */
  hostLatencyS: number;
  guestLatencyS: number;
  /** Device busy time this step, seconds (reads / IOPS + writes / bandwidth). */
  hostDevBusyS: number;
  guestDevBusyS: number;
  hostSwapInKiB: number;
  hostMajorFaults: number;
  hostMinorFaults: number;
  /** Guest pages whose KSM sharing was broken by a write (copy on write). */
  ksmCowKiB: number;
}

/** Counters that only grow; samples report differences between two reads. */
export interface GuestCounters {
  swapInKiB: number;
  swapOutKiB: number;
  majorFaults: number;
  minorFaults: number;
  /** Work done: pages touched (memknobs, idle, leak), requests completed (web). */
  touches: number;
  requests: number;
  requestsOffered: number;
  hostSwapInKiB: number;
  hostSwapOutKiB: number;
  oomKills: number;
  /** Simulated seconds this guest ran. */
  aliveS: number;
  /** Seconds its workload could not run at full speed because of memory (weighted). */
  stalledS: number;
}

export interface GuestConfig {
  name: string;
  maxKiB: number;
  vcpus: number;
  swapKiB: number;
  balloonKiB: number;
  balloonMinKiB: number;
  /** Page cache already filled at start (data loaded before the run). */
  cacheKiB?: number;
  workload: WorkloadSpec;
  /** A virtio-mem device beside the `maxKiB` of base memory. */
  virtioMem?: VirtioMemSpec;
  /** It hands freed pages back to the host (virtio-balloon free page reporting). */
  freePageReporting?: boolean;
}

/** A step's plan for the workload, made before device contention is known. */
interface Plan {
  touches: number;
  requests: number;
  offered: number;
  faultHostKiB: number;
  faultGuestKiB: number;
  cacheHostKiB: number;
  cacheMissKiB: number;
  hostReads: number;
  guestReads: number;
  computeS: number;
  /** Pages per swap-in read for the workload's own faults. */
  perIo: number;
  /** Fraction of the step the workload was slowed by memory (0..1). */
  stall: number;
}

export class SimGuest {
  /** The guest's own memory stall, as its /proc/pressure/memory would show it: percent of
   *  time over ~10 s and ~60 s (exponentially decaying averages, as the kernel's). */
  psiSome10 = 0;
  psiSome60 = 0;
  readonly name: string;
  /** Base memory, KiB; the guest has this plus what its virtio-mem device has plugged. */
  readonly baseKiB: number;
  readonly vmem: SimVirtioMem | null;
  /** Page cache its kernel was asked to reclaim (memory.reclaim through its agent), freed at
   *  its next step; free page reporting then hands it back. */
  reclaimAskedKiB = 0;
  readonly vcpus: number;
  readonly swapKiB: number;
  readonly balloonMinKiB: number;
  readonly workload: WorkloadSpec;
  readonly reportsFreePages: boolean;

  /** Memory the guest has (balloon_cur): maxKiB minus the balloon. */
  balloonCur: number;
  balloonTarget: number;

  readonly kern: Part = part();
  readonly hot: Part = part();
  readonly cold: Part = part();
  readonly cache: Part = part();
  /** Free pages the guest touched before: the host still backs them. */
  readonly freeT: Part = part();
  /** Free pages never touched (or returned by the balloon): nothing behind them on the host. */
  freeU = 0;
  /** Guest swap in use, working-set pages and cold pages. */
  gswHot = 0;
  gswCold = 0;

  /** World time at which the current run of the workload began; null while it is dead. */
  workloadStart: number | null;
  workloadRestartAt = 0;
  demand: Demand;
  /** Stall time owed by synchronous host swap-ins outside the workload's own touches. */
  private debtS = 0;
  /** Fraction of the step the vCPU wanted to run last step (for CPU contention). */
  cpuDemand = 1;
  private plan: Plan | null = null;
  /** Smoothed work rate for the view (per second). */
  recentRate = 0;

  readonly c: GuestCounters = {
    swapInKiB: 0,
    swapOutKiB: 0,
    majorFaults: 0,
    minorFaults: 0,
    touches: 0,
    requests: 0,
    requestsOffered: 0,
    hostSwapInKiB: 0,
    hostSwapOutKiB: 0,
    oomKills: 0,
    aliveS: 0,
    stalledS: 0,
  };

  constructor(
    cfg: GuestConfig,
    params: ModelParams,
    now: number,
    private readonly noise: () => number,
  ) {
    this.name = cfg.name;
    this.baseKiB = cfg.maxKiB;
    this.vmem = cfg.virtioMem ? new SimVirtioMem(cfg.virtioMem) : null;
    this.vcpus = cfg.vcpus;
    this.swapKiB = cfg.swapKiB;
    this.balloonMinKiB = cfg.balloonMinKiB;
    this.workload = cfg.workload;
    this.reportsFreePages = cfg.freePageReporting === true;
    this.balloonCur = Math.min(cfg.maxKiB, cfg.balloonKiB) + (this.vmem?.size ?? 0);
    this.balloonTarget = this.balloonCur;
    // Boot: the kernel and a little page cache are touched; the rest is free and untouched.
    this.workloadStart = now;
    this.demand = demandAt(cfg.workload, 0);
    const kern = Math.min(params.guestKernelKiB, this.balloonCur * 0.5);
    // A pre-filled cache leaves room for the workload's memory and the guest's watermark.
    const room = this.balloonCur - kern - this.demand.anonKiB - watermarks(this.balloonCur).high;
    const cache = Math.min(this.balloonCur - kern, Math.max(params.guestMinCacheKiB, Math.min(cfg.cacheKiB ?? 0, room)));
    this.kern.size = kern;
    this.cache.size = cache;
    this.freeU = this.balloonCur - kern - cache;
  }

  // ---- views -------------------------------------------------------------------------

  /** balloon_max: base memory plus what virtio-mem has plugged. */
  get maxKiB(): number {
    return this.baseKiB + (this.vmem?.size ?? 0);
  }

  get anonKiB(): number {
    return this.hot.size + this.cold.size + this.gswHot + this.gswCold;
  }
  get freeKiB(): number {
    return this.freeT.size + this.freeU;
  }
  get wsKiB(): number {
    return this.hot.size + this.gswHot;
  }
  /** Guest RAM backed by the host (resident or in host swap). */
  get touchedKiB(): number {
    return this.kern.size + this.hot.size + this.cold.size + this.cache.size + this.freeT.size;
  }
  get hostSwappedKiB(): number {
    return this.kern.hsw + this.hot.hsw + this.cold.hsw + this.cache.hsw + this.freeT.hsw;
  }
  get hostResidentKiB(): number {
    return this.touchedKiB - this.hostSwappedKiB;
  }
  get ksmKiB(): number {
    return this.kern.ksm + this.hot.ksm + this.cold.ksm + this.cache.ksm + this.freeT.ksm;
  }
  get guestSwapUsedKiB(): number {
    return this.gswHot + this.gswCold;
  }
  parts(): Part[] {
    return [this.kern, this.hot, this.cold, this.cache, this.freeT];
  }

  // ---- getting free pages ------------------------------------------------------------

  /** Take up to `x` from free memory, most recently freed pages first: the buddy
   *  allocator puts a freed block at the head of its free list and allocates from the head,
   *  so the pages a guest touched and freed are reused before pages it never touched. The
   *  allocator cannot tell which of them the host swapped out or KSM merged (seed, fig. 1). */
  private takeFree(st: Staged, x: number): number {
    if (x <= EPS) return 0;
    const fromT = move(this.freeT, Math.min(x, this.freeT.size), st);
    const fromU = Math.min(this.freeU, x - fromT);
    this.freeU -= fromU;
    st.size += fromU;
    st.fresh += fromU;
    return fromT + fromU;
  }

  /** Guest reclaim: page cache first (clean, no I/O), then cold anonymous pages to guest
   *  swap (the guest's LRU knows they are cold), then, when `mode` is 'thrash', working-set
   *  pages. Returns KiB moved to free. */
  private reclaim(need: number, mode: 'cache' | 'anon' | 'thrash', ctx: StepCtx): number {
    let got = 0;
    const minCache = Math.min(ctx.params.guestMinCacheKiB, this.cache.size);
    got += move(this.cache, Math.min(need, this.cache.size - minCache), this.freeT);
    if (mode === 'cache' || got >= need - EPS) return got;
    let room = this.swapKiB - this.guestSwapUsedKiB;
    const c = Math.min(need - got, this.cold.size, room);
    if (c > EPS) {
      this.swapOut(this.cold, c, ctx);
      this.gswCold += c;
      got += c;
      room -= c;
    }
    if (mode !== 'thrash' || got >= need - EPS) return got;
    const h = Math.min(need - got, this.hot.size, room);
    if (h > EPS) {
      this.swapOut(this.hot, h, ctx);
      this.gswHot += h;
      got += h;
    }
    return got;
  }

  /** The guest writes `x` KiB of `from` to its swap. A page the host had swapped must come
   *  back from host swap first so the guest can read it (double paging). */
  private swapOut(from: Part, x: number, ctx: StepCtx): void {
    const tmp = part();
    move(from, x, tmp);
    if (tmp.hsw > 0) {
      this.hostSwapIn(tmp.hsw, ctx, true);
      tmp.hsw = 0;
    }
    this.c.swapOutKiB += x;
    ctx.guestDevBusyS += x / ctx.params.guestDevice.writeKiBps;
    move(tmp, tmp.size, this.freeT);
  }

  /** Free pages for a new use: free memory, then reclaim. */
  private obtain(x: number, mode: 'cache' | 'anon' | 'thrash', ctx: StepCtx): Staged {
    const st = staged();
    let need = x - this.takeFree(st, x);
    if (need > EPS) {
      this.reclaim(need, mode, ctx);
      need -= this.takeFree(st, need);
    }
    return st;
  }

  /** The guest writes into staged pages: the host must bring back pages it swapped out
   *  (a host major fault), copy pages KSM merged (copy on write), and back fresh pages
   *  with new memory (a host minor fault). The result is resident and unshared. */
  private materialize(st: Staged, ctx: StepCtx, owed: boolean, perIo = 1): void {
    if (st.hsw > 0) this.hostSwapIn(st.hsw, ctx, owed, perIo);
    if (st.ksm > 0) {
      ctx.ksmCowKiB += st.ksm;
      ctx.hostMinorFaults += st.ksm / PAGE_KIB;
    }
    ctx.hostMinorFaults += st.fresh / PAGE_KIB;
    this.c.minorFaults += st.fresh / PAGE_KIB;
    st.hsw = 0;
    st.ksm = 0;
    st.fresh = 0;
  }

  /** `perIo`: pages each read brings (swap readahead for sequential access). */
  private hostSwapIn(kib: number, ctx: StepCtx, owed: boolean, perIo = 1): void {
    const pages = kib / PAGE_KIB;
    this.c.hostSwapInKiB += kib;
    ctx.hostSwapInKiB += kib;
    ctx.hostMajorFaults += pages / perIo;
    ctx.hostDevBusyS += pages / perIo / ctx.params.hostSwapDevice.readIops;
    if (owed) this.debtS += (pages / perIo) * ctx.hostLatencyS;
  }

  // ---- one step, phase 1: the workload's allocations, the balloon, kswapd --------------

  prepare(ctx: StepCtx): void {
    const p = ctx.params;
    if (this.workloadStart === null && ctx.now >= this.workloadRestartAt) this.workloadStart = ctx.now;
    this.demand =
      this.workloadStart === null
        ? { ...demandAt({ kind: 'idle', anonMiB: 0, wsMiB: 0 }, 0), kind: this.demand.kind }
        : demandAt(this.workload, ctx.now - this.workloadStart);
    const d = this.demand;

    // The workload frees what it no longer holds (a Memknobs run exits, its buffer is freed).
    const anon = this.anonKiB;
    if (d.anonKiB < anon - EPS) this.freeAnon(anon - d.anonKiB);

    // It allocates what it newly holds, writing every page; new pages are hot first. Pages
    // the host must bring back from its swap make this slow: the allocation goes on in
    // chunks while the vCPU has time left in this step and resumes in the next.
    let short = d.anonKiB - this.anonKiB;
    let chunk = 8 * MIB_KIB;
    while (short > EPS && this.debtS < ctx.dt) {
      const want = Math.min(short, chunk);
      const before = this.debtS;
      const st = this.obtain(want, 'thrash', ctx);
      const got = st.size;
      // A sequential writer (Memknobs) reuses the pages its last run freed in bulk, in about
      // the order the host saw and swapped them, so host swap readahead serves it too.
      this.materialize(st, ctx, true, d.touchBound && p.reuseReadahead ? p.swapReadaheadPages : 1);
      this.debtS += ((got / PAGE_KIB) * p.touchCostS) / Math.max(0.05, ctx.cpuShare);
      const toHot = Math.min(got, Math.max(0, d.wsKiB - this.wsKiB));
      this.hot.size += toHot;
      this.cold.size += got - toHot;
      if (got <= EPS) {
        // Nothing free, nothing left to reclaim, guest swap full: the OOM killer.
        this.oomKill(ctx);
        break;
      }
      short -= got;
      const perKiB = (this.debtS - before) / Math.max(EPS, got);
      chunk = Math.max(MIB_KIB, perKiB > 0 ? (ctx.dt - this.debtS) / perKiB : short);
    }
    this.shiftWorkingSet(Math.min(d.wsKiB, this.anonKiB), ctx);

    this.balloonStep(ctx);
    this.vmem?.step(this.virtioMemHost(ctx), ctx.dt);
    if (this.reclaimAskedKiB > 0) {
      this.reclaim(this.reclaimAskedKiB, 'cache', ctx);
      this.reclaimAskedKiB = 0;
    }

    // kswapd: below the low watermark, reclaim up to the high one.
    const wm = watermarks(this.balloonCur);
    if (this.freeKiB < wm.low) this.reclaim(wm.high - this.freeKiB, 'anon', ctx);
    if (this.reportsFreePages) this.reportFreePages(ctx);
  }

  /** Free page reporting: touched free pages go back to the host a couple of seconds after
   *  they were freed, in 2 MiB+ blocks (so all but the small fragments), and with them
   *  whatever the host had behind them: resident pages freed, swap slots dropped, KSM
   *  mappings undone. Reused later, they are fresh pages to the host (a zeroed page, no I/O). */
  private reportFreePages(ctx: StepCtx): void {
    const p = ctx.params;
    const reportable = this.freeT.size - p.fprUnreportedFraction * this.freeKiB;
    if (reportable <= EPS) return;
    const x = reportable * Math.min(1, ctx.dt / Math.max(EPS, p.fprDelayS));
    const tmp = part();
    move(this.freeT, x, tmp);
    this.freeU += tmp.size;
  }

  /** Free `x` KiB of anonymous memory, resident and swapped parts in proportion. */
  private freeAnon(x: number): void {
    const total = this.anonKiB;
    if (total <= EPS) return;
    const f = Math.min(1, x / total);
    move(this.hot, this.hot.size * f, this.freeT);
    move(this.cold, this.cold.size * f, this.freeT);
    this.gswHot -= this.gswHot * f;
    this.gswCold -= this.gswCold * f;
  }

  /** Pages move between working set and cold set as the workload's hot part changes; the
   *  swapped shares move with them. A cold page that becomes hot is written, which breaks
   *  its KSM sharing. */
  private shiftWorkingSet(target: number, ctx: StepCtx): void {
    const ws = this.wsKiB;
    if (target > ws + EPS) {
      const coldAll = this.cold.size + this.gswCold;
      if (coldAll <= EPS) return;
      const x = Math.min(target - ws, coldAll);
      const fromRes = (x * this.cold.size) / coldAll;
      const tmp = part();
      move(this.cold, fromRes, tmp);
      if (tmp.ksm > 0) {
        ctx.ksmCowKiB += tmp.ksm;
        tmp.ksm = 0;
      }
      move(tmp, tmp.size, this.hot);
      const fromSw = x - fromRes;
      this.gswCold -= fromSw;
      this.gswHot += fromSw;
    } else if (target < ws - EPS) {
      const x = ws - target;
      const fromRes = (x * this.hot.size) / ws;
      move(this.hot, fromRes, this.cold);
      const fromSw = x - fromRes;
      this.gswHot -= fromSw;
      this.gswCold += fromSw;
    }
    if (this.gswHot < EPS) this.gswHot = 0;
    if (this.gswCold < EPS) this.gswCold = 0;
  }

  /** The guest's OOM killer kills the workload: its memory is freed and it restarts later. */
  private oomKill(ctx: StepCtx): void {
    this.freeAnon(this.anonKiB);
    this.gswHot = 0;
    this.gswCold = 0;
    this.c.oomKills += 1;
    this.workloadStart = null;
    this.workloadRestartAt = ctx.now + ctx.params.oomRestartS;
  }

  /** Move balloon_cur toward the target at the balloon's rate. Inflating takes free pages
   *  (then cache, then cold pages via guest swap; the driver gives up rather than OOM the
   *  guest); what it takes is released on the host: resident pages freed, host-swapped
   *  pages dropped from swap, merged pages unmapped (which frees nothing: the KSM page
   *  stays for its other users, seed figure 1). Deflating returns untouched pages. */
  private balloonStep(ctx: StepCtx): void {
    let left = ctx.params.balloonRateKiBps * ctx.dt;
    if (this.balloonTarget < this.balloonCur - EPS) {
      // Reclaim behind the balloon may need host swap-ins (double paging): it shares the
      // vCPU's time with the workload, in chunks, like an allocation.
      let chunk = 32 * MIB_KIB;
      while (left > EPS && this.balloonTarget < this.balloonCur - EPS && this.debtS < ctx.dt) {
        const want = Math.min(this.balloonCur - this.balloonTarget, left, chunk);
        const before = this.debtS;
        const st = this.obtain(want, 'anon', ctx);
        this.balloonCur -= st.size;
        left -= want;
        if (st.size < want - EPS) break; // nothing more the guest can give up now
        const perKiB = (this.debtS - before) / Math.max(EPS, st.size);
        chunk = Math.max(MIB_KIB, perKiB > 0 ? (ctx.dt - this.debtS) / perKiB : left);
      }
    } else if (this.balloonTarget > this.balloonCur + EPS) {
      const x = Math.min(this.balloonTarget - this.balloonCur, left);
      this.balloonCur += x;
      this.freeU += x;
    }
  }

  /** The guest's side of virtio-mem. Unplugging takes free pages and page cache above the
   *  guest's minimum, keeping the high watermark free: used memory is never pushed out, so an
   *  unplug stops short when it would not fit. Plugged and unplugged memory moves balloon_cur
   *  and balloon_max together (the balloon keeps its size). */
  private virtioMemHost(ctx: StepCtx): VirtioMemHost {
    return {
      releasableKiB: () => {
        const cache = Math.max(0, this.cache.size - Math.min(ctx.params.guestMinCacheKiB, this.cache.size));
        return Math.max(0, this.freeKiB + cache - watermarks(this.balloonCur).high);
      },
      release: (kib) => {
        if (this.freeKiB < kib) this.reclaim(kib - this.freeKiB, 'cache', ctx);
        const st = staged();
        const got = this.takeFree(st, kib);
        // What backed the pages on the host goes with them (QEMU discards unplugged blocks).
        this.balloonCur -= got;
        this.balloonTarget = Math.max(0, this.balloonTarget - got);
      },
      add: (kib) => {
        this.balloonCur += kib;
        this.balloonTarget += kib;
        this.freeU += kib;
      },
    };
  }

  // ---- one step, phase 2: what the workload would do, before device contention ------------

  makePlan(ctx: StepCtx, deviceBusy: { host: number; guest: number }): void {
    const p = ctx.params;
    const d = this.demand;
    const dt = ctx.dt;
    const s = Math.max(0.05, ctx.cpuShare);
    const plan: Plan = {
      touches: 0,
      requests: 0,
      offered: 0,
      faultHostKiB: 0,
      faultGuestKiB: 0,
      cacheHostKiB: 0,
      cacheMissKiB: 0,
      hostReads: 0,
      guestReads: 0,
      computeS: 0,
      perIo: 1,
      stall: 0,
    };
    const debt = Math.min(dt, this.debtS);
    this.debtS -= debt;
    const ws = this.wsKiB;
    if (this.workloadStart !== null && d.touchBound && ws > EPS) {
      // Memknobs: loop over the working set writing each page. A page in host swap costs a
      // host major fault, one in guest swap a guest major fault; the vCPU waits for either.
      const budget = dt - debt;
      const wsPages = ws / PAGE_KIB;
      const ra = p.swapReadaheadPages;
      const hPages = this.hot.hsw / PAGE_KIB / ra;
      const gPages = this.gswHot / PAGE_KIB / ra;
      const computePerPage = p.touchCostS / s;
      const pass = wsPages * computePerPage + hPages * ctx.hostLatencyS + gPages * ctx.guestLatencyS;
      let f = 1;
      if (pass <= budget) {
        plan.touches = wsPages + (budget - pass) / computePerPage;
      } else {
        f = budget / pass;
        plan.touches = f * wsPages;
      }
      plan.faultHostKiB = f * this.hot.hsw;
      plan.faultGuestKiB = f * this.gswHot;
      plan.computeS = plan.touches * p.touchCostS;
      const ideal = (dt * s) / p.touchCostS;
      plan.stall = ideal > 0 ? Math.max(0, 1 - plan.touches / ideal) : 0;
      // Memknobs is one thread: it keeps one vCPU busy at most.
      this.cpuDemand = Math.min(1, (plan.touches * computePerPage) / dt);
    } else if (this.workloadStart !== null && d.requestRate > 0) {
      // A web server: many requests in flight, so fault latency does not bound throughput;
      // CPU and the devices do. Each request reads file pages (hits in page cache, misses
      // from the guest's disk) and touches some of the server's anonymous memory.
      const offered = Math.max(0, d.requestRate * dt * (1 + 0.1 * this.noise()));
      const hit = d.fileSetKiB > 0 ? Math.min(1, this.cache.size / d.fileSetKiB) : 1;
      const cacheHswFrac = this.cache.size > 0 ? this.cache.hsw / this.cache.size : 0;
      const hostAnonFrac = ws > 0 ? this.hot.hsw / ws : 0;
      const guestAnonFrac = ws > 0 ? this.gswHot / ws : 0;
      const cpuPerReq = d.cpuPerRequestS + d.anonTouchesPerRequest * p.touchCostS;
      const byCpu = (s * this.vcpus * dt) / Math.max(1e-9, cpuPerReq);
      const req = Math.min(offered, byCpu);
      plan.offered = offered;
      plan.requests = req;
      plan.cacheMissKiB = req * d.pagesPerRequest * (1 - hit) * PAGE_KIB;
      plan.cacheHostKiB = Math.min(this.cache.hsw, req * d.pagesPerRequest * hit * cacheHswFrac * PAGE_KIB);
      plan.faultHostKiB = Math.min(this.hot.hsw, req * d.anonTouchesPerRequest * hostAnonFrac * PAGE_KIB);
      plan.faultGuestKiB = Math.min(this.gswHot, req * d.anonTouchesPerRequest * guestAnonFrac * PAGE_KIB);
      plan.computeS = req * cpuPerReq;
      this.cpuDemand = Math.min(this.vcpus, plan.computeS / dt / s);
    } else if (this.workloadStart !== null && d.touchPagesPerS > 0 && ws > EPS) {
      // Background touching (idle daemons, a leaking program's live data).
      const touches = d.touchPagesPerS * dt;
      const frac = Math.min(1, (touches * PAGE_KIB) / ws);
      plan.touches = touches;
      plan.faultHostKiB = this.hot.hsw * frac;
      plan.faultGuestKiB = this.gswHot * frac;
      plan.computeS = touches * p.touchCostS;
      this.cpuDemand = Math.min(this.vcpus, plan.computeS / dt / s) + 0.01;
    } else {
      this.cpuDemand = 0.01;
    }
    plan.perIo = d.touchBound ? p.swapReadaheadPages : 1;
    plan.hostReads = (plan.faultHostKiB / plan.perIo + plan.cacheHostKiB) / PAGE_KIB;
    plan.guestReads = (plan.faultGuestKiB / plan.perIo + plan.cacheMissKiB) / PAGE_KIB;
    deviceBusy.host += plan.hostReads;
    deviceBusy.guest += plan.guestReads;
    this.plan = plan;
  }

  get plannedReads(): { host: number; guest: number } {
    return { host: this.plan?.hostReads ?? 0, guest: this.plan?.guestReads ?? 0 };
  }

  // ---- one step, phase 3: do the planned work, scaled by what the devices could serve ----

  applyPlan(ctx: StepCtx, scale: number): void {
    const plan = this.plan;
    this.plan = null;
    if (!plan) return;
    const d = this.demand;
    const sc = Math.max(0, Math.min(1, scale));
    const touches = plan.touches * sc;
    const requests = plan.requests * sc;
    this.c.touches += touches;
    this.c.requests += requests;
    this.c.requestsOffered += plan.offered;
    const rate = d.kind === 'web' ? requests / ctx.dt : touches / ctx.dt;
    this.recentRate = this.recentRate * 0.8 + rate * 0.2;
    const stall = d.requestRate > 0 && plan.offered > 0 ? 1 - requests / plan.offered : 1 - sc * (1 - plan.stall);
    if (this.workloadStart !== null) this.c.stalledS += Math.max(0, Math.min(1, stall)) * ctx.dt;

    // Host major faults on working-set pages and cached file pages the host swapped out.
    const fh = Math.min(this.hot.hsw, plan.faultHostKiB * sc);
    if (fh > EPS) {
      this.hot.hsw -= fh;
      this.hostSwapIn(fh, ctx, false, plan.perIo);
    }
    const ch = Math.min(this.cache.hsw, plan.cacheHostKiB * sc);
    if (ch > EPS) {
      this.cache.hsw -= ch;
      this.hostSwapIn(ch, ctx, false);
    }
    // Guest major faults: working-set pages come back from guest swap into free pages,
    // which may push other pages out (thrashing when the working set does not fit).
    const fg = Math.min(this.gswHot, plan.faultGuestKiB * sc);
    if (fg > EPS) {
      this.gswHot -= fg;
      const st = this.obtain(fg, 'thrash', ctx);
      this.materialize(st, ctx, true);
      this.hot.size += st.size;
      this.gswHot += fg - st.size;
      this.c.swapInKiB += st.size;
      this.c.majorFaults += st.size / PAGE_KIB / plan.perIo;
      ctx.guestDevBusyS += st.size / PAGE_KIB / plan.perIo / ctx.params.guestDevice.readIops;
    }
    // Page-cache misses read file pages: the cache grows into free memory up to the file
    // set, or replaces older cache pages (whose frames the host may have swapped: reusing
    // them costs a host swap-in).
    const miss = plan.cacheMissKiB * sc;
    let refaultReads = 0;
    if (miss > EPS) {
      this.c.majorFaults += miss / PAGE_KIB;
      ctx.guestDevBusyS += miss / PAGE_KIB / ctx.params.guestDevice.readIops;
      const grow = Math.max(0, Math.min(miss, d.fileSetKiB - this.cache.size));
      if (grow > EPS) {
        const st = this.obtain(grow, 'cache', ctx);
        this.materialize(st, ctx, false);
        this.cache.size += st.size;
      }
      const minCache = ctx.params.guestMinCacheKiB;
      const replace = Math.min(miss - grow, Math.max(0, this.cache.size - minCache));
      if (replace > EPS) {
        const tmp = staged();
        move(this.cache, replace, tmp);
        this.materialize(tmp, ctx, false);
        move(tmp, tmp.size, this.cache);
      }
      refaultReads = replace / PAGE_KIB;
    }
    // What the guest's PSI sees: its tasks waiting for its own swap-ins and for file pages it
    // had to evict (refaults). Waits on the host's swap are invisible inside (steal time).
    const waitS = (fg / PAGE_KIB / plan.perIo + refaultReads) * ctx.guestLatencyS;
    this.observeStall(this.workloadStart === null ? 0 : Math.min(1, waitS / ctx.dt), ctx.dt);
    // Leave the guest above its min watermark for the next step's allocations.
    const wm = watermarks(this.balloonCur);
    if (this.freeKiB < wm.low) this.reclaim(wm.high - this.freeKiB, 'anon', ctx);
  }

  /** Folds one step's stalled share of time into the PSI averages. */
  private observeStall(share: number, dt: number): void {
    const pct = share * 100;
    this.psiSome10 = pct + (this.psiSome10 - pct) * Math.exp(-dt / 10);
    this.psiSome60 = pct + (this.psiSome60 - pct) * Math.exp(-dt / 60);
  }

  /** The host swaps `x` KiB of this guest out of `p` (chosen by the world). */
  hostSwapOut(pt: Part, x: number): void {
    pt.hsw += x;
    this.c.hostSwapOutKiB += x;
  }
}
