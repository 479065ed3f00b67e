// The guard step: every control a policy asks for passes through here before a controller
// touches anything. Pure functions of (latest sample, request, per-guest guard state, config,
// time): each returns what to do and the reasons, so the same inputs always give the same
// decision, and every clamp, rate limit, veto and rollback can be explained in the action log.
import { finite } from '../../numbers.js';
import { type BalloonBounds, balloonBounds, fmtKiB, floorWhy, type RecentPeak, type SafeguardConfig } from '../floor.js';
import type { Stats } from '../../types.js';
import { QEMU_ALLOWANCE_KIB } from './returns.js';
import { type History, peakRate } from '../../engine/history.js';

export { balloonBounds, defaultSafeguards, floorWhy, fmtKiB, type BalloonBounds, type SafeguardConfig } from '../floor.js';

/** What the guard remembers about one guest between cycles. */
export interface GuestGuardState {
  /** The last inflation ballast applied and that is still being watched. */
  lastInflation?: { cycle: number; at: number; step: number };
  /** No inflation before this time (seconds), after a rollback. */
  holdUntil?: number;
  /** Growth the guest carries in its own swap (quiet growth, see quietGrowth). */
  carry?: QuietCarry;
}

/** Where a guest's quiet growth began: its net swap-out (swap_out - swap_in, KiB) and its use. */
export interface QuietCarry {
  netOut0: number;
  used0: number;
}

export type BalloonVerdict = 'apply' | 'rollback' | 'skip' | 'veto';

export interface BalloonDecision {
  verdict: BalloonVerdict;
  /** The policy's request (null for a rollback nobody asked for). */
  requested: number | null;
  /** balloon_cur when decided. */
  from: number | null;
  /** What to set (apply / rollback), else null. */
  target: number | null;
  floor: number | null;
  max: number | null;
  reasons: string[];
  /** Guard state to keep if the action is carried out (or at once, for skip/veto). */
  next: GuestGuardState;
}

/**
 * A rollback is due when the guest was inflated by ballast within the last `rollbackWindow`
 * policy cycles and, in a sample taken after that inflation, its swap-in or major-fault rate
 * went above the configured threshold. Returns the reason, or null.
 */
export function rollbackReason(h: History, st: GuestGuardState, cycle: number, cfg: SafeguardConfig, taking = 'inflating by'): string | null {
  const inf = st.lastInflation;
  if (!inf || cfg.rollbackWindow <= 0 || cycle - inf.cycle > cfg.rollbackWindow) return null;
  const swap = peakRate(h, 'swap_in', inf.at);
  if (swap !== null && swap > cfg.rollbackSwapInKiBPerS) {
    return `rollback: swap_in ${Math.round(swap)} KiB/s > ${cfg.rollbackSwapInKiBPerS} KiB/s after ${taking} ${fmtKiB(inf.step)} ${cycle - inf.cycle} cycle(s) ago`;
  }
  const faults = peakRate(h, 'major_fault', inf.at);
  if (faults !== null && faults > cfg.rollbackMajorFaultsPerS) {
    return `rollback: major_fault ${Math.round(faults)}/s > ${cfg.rollbackMajorFaultsPerS}/s after ${taking} ${fmtKiB(inf.step)} ${cycle - inf.cycle} cycle(s) ago`;
  }
  if (cfg.rollbackPsiPercent !== null) {
    const stall = h.peakValue('psi_some_avg10', inf.at);
    if (stall !== null && stall > cfg.rollbackPsiPercent) {
      return `rollback: guest memory stall ${stall}% (psi some avg10) > ${cfg.rollbackPsiPercent}% after ${taking} ${fmtKiB(inf.step)} ${cycle - inf.cycle} cycle(s) ago`;
    }
  }
  return null;
}

export interface BalloonGuardInput {
  history: History;
  /** The policy's balloon_target for this guest, undefined when it set none. */
  requested: unknown;
  stale?: string;
  state: GuestGuardState;
  cycle: number;
  now: number;
  /** The guest hands its freed pages back by itself (virtio-balloon free page reporting). */
  reportsFreePages?: boolean;
  /** Its peak use in the safeguards' peak window, which the floor keeps (peaks.ts). */
  recent?: RecentPeak;
  /** Between policy cycles: raise only a guest with less than half its headroom left. */
  urgentOnly?: boolean;
  /** Set when the host can wait for memory at less cost than a balloon (floor.ts hostCanWait):
   *  why. No inflation goes below used-with-cache + headroom then, and a guest that reports its
   *  free pages is not inflated at all. */
  hostCanWait?: string | null;
}

/** Forget an inflation once its rollback window has passed, and a hold once it is over. */
export function expireGuard(st: GuestGuardState, cycle: number, now: number, cfg: SafeguardConfig): GuestGuardState {
  const dropInflation = st.lastInflation !== undefined && cycle - st.lastInflation.cycle > cfg.rollbackWindow;
  const dropHold = st.holdUntil !== undefined && now >= st.holdUntil;
  if (!dropInflation && !dropHold) return st;
  return { lastInflation: dropInflation ? undefined : st.lastInflation, holdUntil: dropHold ? undefined : st.holdUntil, carry: st.carry };
}

/** A sample's use, counted as the floor counts it (without page cache when cache-aware). */
function usedOf(x: Stats | undefined, cacheAware: boolean): number | null {
  const cur = finite(x?.balloon_cur);
  const free = cacheAware ? finite(x?.mem_usable) : finite(x?.mem_unused);
  return cur === null || free === null ? null : cur - free;
}

/** Sample intervals back that the quiet-growth rule looks at (15 s at MOM's 5 s). */
const QUIET_SAMPLES = 3;

export interface QuietGrowth {
  /** Not raised this cycle: it carries its growth in its own swap. */
  hold: boolean;
  /** The carry to keep. */
  carry: QuietCarry | undefined;
  /** KiB carried so far (net swap-out since it began). */
  carried: number;
  /** KiB it may carry (quietGrowthFraction of balloon_max). */
  budget: number;
}

/**
 * Quiet growth: whether a guest below its floor is left to carry its growth in its own swap
 * this cycle instead of being raised to its floor at once. That is the case when, over the last
 * QUIET_SAMPLES intervals, it
 * - grows without being short of memory: it pages out but pages back in at most an eighth of
 *   that, with no major-fault spike (rollback_major_faults_per_s) and no memory stall above
 *   psi_stop_percent (where PSI is read); a guest paging its working set in and out, however
 *   slowly, is short of memory and is raised as before;
 * - and is growing now: paging out, or its use rising sample after sample (on its way to its
 *   kernel's watermarks, where it starts paging out). A working set allocated in one step, or a
 *   guest merely at its floor, is not carrying anything;
 * - and has paged out before (swap_out since boot): only then is it known to have swap. One
 *   without would go to its OOM killer instead;
 * - and has carried less than the budget (quietGrowthFraction of balloon_max, counted as its
 *   net swap-out, swap_out - swap_in, since it began). Ballast does not see how much swap the
 *   guest has: the budget keeps it from filling it (which would OOM the guest), and past it the
 *   guest is raised as before for the rest of that growth.
 * Why: what it pages out it does not touch (a leak, data written once). Raised, it would get host
 * RAM for that cold memory, and a host that is swapping takes it from the other guests blindly
 * (it cannot tell their hot pages from cold ones; the guest's own LRU can).
 * The carry is forgotten when its use falls back below where it began by more than the headroom
 * (what it grew since, the carried part with it, is gone: the process exited; while it carries,
 * its use in RAM stays where it began, give or take what its kernel keeps free) or its swap
 * counters go back (a reboot).
 */
export function quietGrowth(h: History, s: Stats, b: BalloonBounds, cur: number, carry: QuietCarry | undefined, cfg: SafeguardConfig): QuietGrowth {
  const budget = cfg.quietGrowthFraction * b.max;
  const no = (c: QuietCarry | undefined): QuietGrowth => ({ hold: false, carry: c, carried: 0, budget });
  const used = b.anon ?? b.used;
  const so = finite(s.swap_out);
  const si = finite(s.swap_in);
  if (!(budget > 0) || used === null || so === null || si === null || !(so > 0)) return no(carry);
  const netOut = so - si;
  if (carry !== undefined && (used < carry.used0 - cfg.headroomKiB || netOut < carry.netOut0)) carry = undefined;
  if (cur >= b.floor || h.length < 2) return no(carry);
  const n = Math.min(QUIET_SAMPLES, h.length - 1);
  const old = h.at(n);
  const since = h.timeAt(n) as number;
  const outThen = finite(old?.swap_out);
  const inThen = finite(old?.swap_in);
  if (outThen === null || inThen === null) return no(carry);
  const pagedOut = so - outThen;
  const pagedIn = si - inThen;
  if (pagedIn < 0 || pagedIn * 8 > Math.max(0, pagedOut)) return no(carry);
  const faults = h.peakRate('major_fault', since);
  if (faults !== null && faults > cfg.rollbackMajorFaultsPerS) return no(carry);
  const stall = cfg.psiStopPercent === null ? null : h.peakValue('psi_some_avg10', since);
  if (stall !== null && stall > (cfg.psiStopPercent as number)) return no(carry);
  if (!(pagedOut > 0)) {
    const cacheAware = b.anon !== null;
    const then = usedOf(old, cacheAware);
    if (then === null || used - then < b.minChange) return no(carry);
    let prev = then;
    for (let i = n - 1; i >= 0; i--) {
      const u = usedOf(h.at(i), cacheAware);
      if (u === null || !(u > prev)) return no(carry);
      prev = u;
    }
  }
  if (carry === undefined) carry = { netOut0: netOut, used0: used };
  const carried = netOut - carry.netOut0;
  return { hold: carried < budget, carry, carried, budget };
}

/**
 * Decide one guest's balloon for this cycle. Guarantees, whatever the policy asked:
 * - an applied target lies in [floor, balloon_max];
 * - it differs from balloon_cur by at most one step, except that a guest below its floor
 *   (or above its max) is brought to it at once: the floor is the guest's safety, the step
 *   limit only paces the policy;
 * - a guest below its floor is raised to it even when the policy asks nothing for it or its
 *   inflation is refused;
 * - no inflation while the guest's memory use is unknown, its sample is stale, or it is
 *   backing off after a rollback.
 */
export function guardBalloon(inp: BalloonGuardInput, cfg: SafeguardConfig): BalloonDecision {
  // Hot path (every guest, every cycle): one object literal per decision, no spreads, and
  // reason strings only where a decision is made.
  const s = inp.history.latest() ?? {};
  const expired = expireGuard(inp.state, inp.cycle, inp.now, cfg);
  const requestedNum = finite(inp.requested);
  const from = finite(s.balloon_cur);
  const bounds = balloonBounds(s, cfg, inp.recent);
  if (typeof bounds === 'string') {
    return decision(inp.requested === undefined ? 'skip' : 'veto', requestedNum, from, null, null, null, [bounds], expired);
  }
  const cur = from as number;
  const q = inp.stale ? null : quietGrowth(inp.history, s, bounds, cur, expired.carry, cfg);
  const state: GuestGuardState =
    q === null || q.carry === expired.carry ? expired : { lastInflation: expired.lastInflation, holdUntil: expired.holdUntil, carry: q.carry };
  // Held at its size: not raised to its floor, and not inflated. A policy that asks to deflate
  // it is followed as always (to its floor at once), and so is a rollback.
  const rb = rollbackReason(inp.history, state, inp.cycle, cfg);
  if (q?.hold && !(requestedNum !== null && requestedNum > cur) && rb === null) {
    const why = `quiet growth: it pages out without paging back in or stalling, so it carries its growth in its own swap (${fmtKiB(q.carried)} of ${fmtKiB(q.budget)}) rather than being raised to its floor ${fmtKiB(bounds.floor)} (${floorWhy(s, bounds, cfg)})`;
    return decision(inp.requested === undefined ? 'skip' : 'veto', requestedNum, from, null, bounds.floor, bounds.max, [why], state);
  }
  return decideBalloon(inp, cfg, s, state, rb, requestedNum, from, cur, bounds);
}

function decideBalloon(
  inp: BalloonGuardInput,
  cfg: SafeguardConfig,
  s: Stats,
  state: GuestGuardState,
  rb: string | null,
  requestedNum: number | null,
  from: number | null,
  cur: number,
  b: BalloonBounds,
): BalloonDecision {
  const { floor, max } = b;

  if (rb !== null) {
    const step = state.lastInflation!.step;
    const target = Math.min(max, Math.max(floor, Math.min(cur + step, Math.max(cur + b.step, floor))));
    const next: GuestGuardState = { lastInflation: undefined, holdUntil: inp.now + cfg.rollbackBackoffS, carry: state.carry };
    const reasons = [rb, `no inflation for ${cfg.rollbackBackoffS} s`];
    return target === cur
      ? decision('skip', requestedNum, from, null, floor, max, reasons, next)
      : decision('rollback', requestedNum, from, target, floor, max, reasons, next);
  }

  // Below its floor (its use grew after an inflation) a guest is raised to it even when the
  // policy asks nothing or its inflation is refused: a policy that only ever shrinks under
  // pressure (MOM's balloon rules) would otherwise leave a growing guest to its own OOM killer.
  // Not on a stale sample (its use is not known), nor for less than a tiny change.
  // Between policy cycles only a guest with less than half its headroom left: one whose use
  // wobbles a few MiB around the floor it was inflated to waits for the cycle (raising it at
  // every collection made a third more balloon actions in the lab, each cycle inflating it again).
  const raise = !inp.stale && cur < floor && floor - cur >= (inp.urgentOnly ? Math.max(b.minChange, cfg.headroomKiB / 2) : b.minChange);
  if (inp.requested === undefined) {
    return raise ? raiseToFloor(null, from, s, b, cfg, state, 'no balloon_target') : decision('skip', null, from, null, floor, max, NO_REQUEST, state);
  }
  if (requestedNum === null) {
    return decision('veto', null, from, null, floor, max, [`balloon_target is not a finite number: ${JSON.stringify(inp.requested)}`], state);
  }
  let t = Math.round(requestedNum);
  if (t < cur) {
    const stall = cfg.psiStopPercent === null ? null : finite(s.psi_some_avg10);
    const why = inp.stale
      ? `sample stale (${inp.stale})`
      : b.used === null
        ? 'guest memory use unknown (no mem_unused)'
        : state.holdUntil !== undefined
          ? `backing off after a rollback until t=${Math.round(state.holdUntil)} s`
          : stall !== null && stall > (cfg.psiStopPercent as number)
            ? `guest memory stall ${stall}% (psi some avg10) above ${cfg.psiStopPercent}%`
            : null;
    if (why) {
      const refused = `inflation refused: ${why}`;
      return raise ? raiseToFloor(requestedNum, from, s, b, cfg, state, refused) : decision('veto', requestedNum, from, null, floor, max, [refused], state);
    }
  }
  // Bit flags instead of strings until we know the decision is kept.
  let did = 0;
  if (t < floor) {
    did |= 1;
    t = floor;
  }
  if (t > max) {
    did |= 2;
    t = max;
  }
  const lo = Math.min(cur - b.step, max);
  const hi = Math.max(cur + b.step, floor);
  if (t < lo) {
    did |= 4;
    t = lo;
  }
  // Into page cache only a little per cycle (cacheStep is 0 unless the floor is cache-aware),
  // and not at all while the host holds cache more cheaply in its swap.
  const leave = inp.hostCanWait ?? null;
  const cacheLo = Math.max(floor, Math.min(cur, b.cacheFloor) - (leave === null ? b.cacheStep : 0));
  if (t < cacheLo && t < cur) {
    did |= leave === null ? 16 : 64;
    t = Math.min(cur, cacheLo);
  }
  // A guest that reports its free pages has already handed most of its free memory back:
  // QEMU holds what the guest uses plus what it has not reported yet (blocks under 2 MiB, the
  // last seconds' frees). An inflation that stays within the guest's free memory takes reported
  // pages too once the unreported ones are gone, which gives the host nothing and costs the
  // guest room to grow (and, where the host backs guest RAM with huge pages, splits them). So
  // it is held to the free memory QEMU still backs. Below the guest's use (its page cache,
  // when the policy asks for that) the balloon reclaims memory QEMU holds: not limited here.
  let backedFree = -1;
  if (inp.reportsFreePages && t < cur && b.used !== null && t >= b.used) {
    const rss = finite(s.rss);
    if (rss !== null) {
      backedFree = Math.max(0, rss - QEMU_ALLOWANCE_KIB - b.used);
      if (t < cur - backedFree) {
        did |= 32;
        t = Math.min(max, cur - backedFree);
      }
    }
  }
  // And while the host can wait, a reporting guest's free memory is reporting's to return:
  // it goes back in 2 MiB+ blocks where the balloon would split huge pages for the rest.
  // (A guest above its balloon_max is still brought back to it.)
  if (inp.reportsFreePages && leave !== null && t < Math.min(cur, max)) {
    did |= 128;
    t = Math.min(cur, max);
  }
  if (t > hi) {
    did |= 8;
    t = hi;
  }
  // Above balloon_max a guest is brought back however small the change. Below its floor by
  // the smallest change or more, the clamps above move it at least that far; by less, it is
  // left alone like any tiny change (raising it would deflate a few KiB every cycle its use
  // wobbles: in the lab one balloon action in ten was such a sub-MiB deflation).
  const skip = t === cur || (Math.abs(t - cur) < b.minChange && cur <= max);
  const reasons: string[] = [];
  // What the policy asked, before the guard changed it; the reasons that follow say how.
  const asked = Math.round(requestedNum);
  if (!skip) reasons.push(asked < cur ? 'policy asked to inflate' : asked > cur ? 'policy asked to deflate' : 'policy asked to keep the size');
  if (did & 1) reasons.push(`clamped up to floor ${fmtKiB(floor)} (${floorWhy(s, b, cfg)})`);
  if (did & 2) reasons.push(`clamped down to balloon_max ${fmtKiB(max)}`);
  if (did & 4) reasons.push(`rate-limited to -${fmtKiB(b.step)} per cycle`);
  if (did & 8) reasons.push(`rate-limited to +${fmtKiB(b.step)} per cycle`);
  if (did & 16) reasons.push(`page cache taken at most ${fmtKiB(b.cacheStep)} per cycle (below used with cache + headroom ${fmtKiB(b.cacheFloor)})`);
  if (did & 64) reasons.push(`page cache left to the host (below used with cache + headroom ${fmtKiB(b.cacheFloor)}): ${leave}`);
  if (did & 128) reasons.push(`free memory left to free page reporting, which hands it back in whole blocks: ${leave}`);
  if (did & 32)
    reasons.push(
      `free page reporting: QEMU still backs ${fmtKiB(backedFree)} of the guest's free memory (rss - ${fmtKiB(QEMU_ALLOWANCE_KIB)} QEMU overhead - used), the rest is back with the host already`,
    );
  if (skip) {
    reasons.push(`change ${fmtKiB(t - cur)} below ${fmtKiB(b.minChange)}`);
    return decision('skip', requestedNum, from, null, floor, max, reasons, state);
  }
  if (t > cur + b.step) reasons.push(`below floor: raised by more than one step, at once`);
  const next: GuestGuardState =
    t < cur
      ? { lastInflation: { cycle: inp.cycle, at: inp.now, step: cur - t }, holdUntil: state.holdUntil, carry: state.carry }
      : { lastInflation: undefined, holdUntil: state.holdUntil, carry: state.carry };
  return decision('apply', requestedNum, from, t, floor, max, reasons, next);
}

const NO_REQUEST: string[] = ['no balloon_target'];

/** A guest below its floor, raised to it whatever the policy asked (see guardBalloon). */
function raiseToFloor(
  requested: number | null,
  from: number | null,
  s: Stats,
  b: BalloonBounds,
  cfg: SafeguardConfig,
  state: GuestGuardState,
  why: string,
): BalloonDecision {
  const reasons = [why, `below floor: raised to ${fmtKiB(b.floor)} (${floorWhy(s, b, cfg)}) at once`];
  return decision('apply', requested, from, b.floor, b.floor, b.max, reasons, { lastInflation: undefined, holdUntil: state.holdUntil, carry: state.carry });
}

function decision(
  verdict: BalloonVerdict,
  requested: number | null,
  from: number | null,
  target: number | null,
  floor: number | null,
  max: number | null,
  reasons: string[],
  next: GuestGuardState,
): BalloonDecision {
  return { verdict, requested, from, target, floor, max, reasons, next };
}
