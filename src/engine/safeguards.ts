// The guard step: every control a policy asks for passes through here before a controller
// touches anything. Pure functions of (latest sample, request, per-guest guard state, config,
// time): each returns what to do and the reasons, so the same inputs always give the same
// decision, and every clamp, rate limit, veto and rollback can be explained in the action log.
import type { Stats } from '../types.js';
import { type History, peakRate } from './history.js';

export interface SafeguardConfig {
  /** No balloon target below this (KiB). */
  minGuestKiB: number;
  /** Floor = used + headroom, used = balloon_cur - mem_unused (KiB). */
  headroomKiB: number;
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
}

export const defaultSafeguards: SafeguardConfig = {
  minGuestKiB: 128 * 1024,
  headroomKiB: 64 * 1024,
  maxStepFraction: 0.1,
  minChangeFraction: 0.0025,
  minChangeKiB: 1024,
  rollbackWindow: 3,
  rollbackSwapInKiBPerS: 4096,
  rollbackMajorFaultsPerS: 1000,
  rollbackBackoffS: 300,
};

/** What the guard remembers about one guest between cycles. */
export interface GuestGuardState {
  /** The last inflation ballast applied and that is still being watched. */
  lastInflation?: { cycle: number; at: number; step: number };
  /** No inflation before this time (seconds), after a rollback. */
  holdUntil?: number;
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

export interface BalloonBounds {
  floor: number;
  max: number;
  step: number;
  minChange: number;
  used: number | null;
}

const MiB = 1024;
export const fmtKiB = (k: number): string => (Math.abs(k) >= 10 * MiB ? `${Math.round(k / MiB)} MiB` : `${Math.round(k)} KiB`);

function num(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

/**
 * The interval a balloon target must stay in, and the step limits.
 * floor = max(configured minimum, balloon_min, used + headroom), where used memory is
 * MOM's notion: balloon_cur - mem_unused (what the guest holds minus what it reports as
 * completely unused; page cache counts as used, so the floor errs on the guest's side).
 * A floor above balloon_max is lowered to balloon_max: a guest never gets more than its maximum.
 */
export function balloonBounds(s: Stats, cfg: SafeguardConfig): BalloonBounds | string {
  const cur = num(s.balloon_cur);
  const max = num(s.balloon_max);
  if (cur === null) return 'balloon_cur unknown';
  if (max === null || max <= 0) return 'balloon_max unknown';
  const unused = num(s.mem_unused);
  const used = unused === null ? null : Math.max(0, cur - unused);
  const bmin = num(s.balloon_min) ?? 0;
  let floor = cfg.minGuestKiB;
  if (bmin > floor) floor = bmin;
  if (used !== null && used + cfg.headroomKiB > floor) floor = used + cfg.headroomKiB;
  if (floor > max) floor = max;
  const step = Math.max(1, Math.floor(cfg.maxStepFraction * max));
  const minChange = Math.max(cfg.minChangeKiB, cfg.minChangeFraction * max);
  return { floor: Math.ceil(floor), max, step, minChange, used };
}

/** Which term made the floor what it is (for the action log; computed only when logged). */
export function floorWhy(s: Stats, b: BalloonBounds, cfg: SafeguardConfig): string {
  const bmin = num(s.balloon_min) ?? 0;
  let why = `configured minimum ${fmtKiB(cfg.minGuestKiB)}`;
  let f = cfg.minGuestKiB;
  if (bmin > f) { f = bmin; why = `balloon_min ${fmtKiB(bmin)}`; }
  if (b.used !== null && b.used + cfg.headroomKiB > f) { f = b.used + cfg.headroomKiB; why = `used ${fmtKiB(b.used)} + headroom ${fmtKiB(cfg.headroomKiB)}`; }
  if (f > b.max) why += ' (capped at balloon_max)';
  return why;
}

/**
 * A rollback is due when the guest was inflated by ballast within the last `rollbackWindow`
 * policy cycles and, in a sample taken after that inflation, its swap-in or major-fault rate
 * went above the configured threshold. Returns the reason, or null.
 */
export function rollbackReason(h: History, st: GuestGuardState, cycle: number, cfg: SafeguardConfig): string | null {
  const inf = st.lastInflation;
  if (!inf || cfg.rollbackWindow <= 0 || cycle - inf.cycle > cfg.rollbackWindow) return null;
  const swap = peakRate(h, 'swap_in', inf.at);
  if (swap !== null && swap > cfg.rollbackSwapInKiBPerS) {
    return `rollback: swap_in ${Math.round(swap)} KiB/s > ${cfg.rollbackSwapInKiBPerS} KiB/s after inflating by ${fmtKiB(inf.step)} ${cycle - inf.cycle} cycle(s) ago`;
  }
  const faults = peakRate(h, 'major_fault', inf.at);
  if (faults !== null && faults > cfg.rollbackMajorFaultsPerS) {
    return `rollback: major_fault ${Math.round(faults)}/s > ${cfg.rollbackMajorFaultsPerS}/s after inflating by ${fmtKiB(inf.step)} ${cycle - inf.cycle} cycle(s) ago`;
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
}

/** Forget an inflation once its rollback window has passed. */
function expire(st: GuestGuardState, cycle: number, now: number, cfg: SafeguardConfig): GuestGuardState {
  const dropInflation = st.lastInflation !== undefined && cycle - st.lastInflation.cycle > cfg.rollbackWindow;
  const dropHold = st.holdUntil !== undefined && now >= st.holdUntil;
  if (!dropInflation && !dropHold) return st;
  return { lastInflation: dropInflation ? undefined : st.lastInflation, holdUntil: dropHold ? undefined : st.holdUntil };
}

/**
 * Decide one guest's balloon for this cycle. Guarantees, whatever the policy asked:
 * - an applied target lies in [floor, balloon_max];
 * - it differs from balloon_cur by at most one step, except that a guest below its floor
 *   (or above its max) is brought to it at once: the floor is the guest's safety, the step
 *   limit only paces the policy;
 * - no inflation while the guest's memory use is unknown, its sample is stale, or it is
 *   backing off after a rollback.
 */
export function guardBalloon(inp: BalloonGuardInput, cfg: SafeguardConfig): BalloonDecision {
  // Hot path (every guest, every cycle): one object literal per decision, no spreads, and
  // reason strings only where a decision is made.
  const s = inp.history.latest() ?? {};
  const state = expire(inp.state, inp.cycle, inp.now, cfg);
  const requestedNum = num(inp.requested);
  const from = num(s.balloon_cur);
  const b = balloonBounds(s, cfg);
  if (typeof b === 'string') {
    return decision(inp.requested === undefined ? 'skip' : 'veto', requestedNum, from, null, null, null, [b], state);
  }
  const cur = from as number;
  const { floor, max } = b;

  const rb = rollbackReason(inp.history, state, inp.cycle, cfg);
  if (rb !== null) {
    const step = state.lastInflation!.step;
    const target = Math.min(max, Math.max(floor, Math.min(cur + step, Math.max(cur + b.step, floor))));
    const next: GuestGuardState = { lastInflation: undefined, holdUntil: inp.now + cfg.rollbackBackoffS };
    const reasons = [rb, `no inflation for ${cfg.rollbackBackoffS} s`];
    return target === cur
      ? decision('skip', requestedNum, from, null, floor, max, reasons, next)
      : decision('rollback', requestedNum, from, target, floor, max, reasons, next);
  }

  if (inp.requested === undefined) return decision('skip', null, from, null, floor, max, NO_REQUEST, state);
  if (requestedNum === null) {
    return decision('veto', null, from, null, floor, max, [`balloon_target is not a finite number: ${JSON.stringify(inp.requested)}`], state);
  }
  let t = Math.round(requestedNum);
  if (t < cur) {
    const why = inp.stale ? `sample stale (${inp.stale})`
      : b.used === null ? 'guest memory use unknown (no mem_unused)'
      : state.holdUntil !== undefined ? `backing off after a rollback until t=${Math.round(state.holdUntil)} s`
      : null;
    if (why) return decision('veto', requestedNum, from, null, floor, max, [`inflation refused: ${why}`], state);
  }
  // Bit flags instead of strings until we know the decision is kept.
  let did = 0;
  if (t < floor) { did |= 1; t = floor; }
  if (t > max) { did |= 2; t = max; }
  const lo = Math.min(cur - b.step, max);
  const hi = Math.max(cur + b.step, floor);
  if (t < lo) { did |= 4; t = lo; }
  if (t > hi) { did |= 8; t = hi; }
  const outside = cur < floor || cur > max;
  const skip = t === cur || (Math.abs(t - cur) < b.minChange && !outside);
  const reasons: string[] = [];
  // What the policy asked, before the guard changed it; the reasons that follow say how.
  const asked = Math.round(requestedNum);
  if (!skip) reasons.push(asked < cur ? 'policy asked to inflate' : asked > cur ? 'policy asked to deflate' : 'policy asked to keep the size');
  if (did & 1) reasons.push(`clamped up to floor ${fmtKiB(floor)} (${floorWhy(s, b, cfg)})`);
  if (did & 2) reasons.push(`clamped down to balloon_max ${fmtKiB(max)}`);
  if (did & 4) reasons.push(`rate-limited to -${fmtKiB(b.step)} per cycle`);
  if (did & 8) reasons.push(`rate-limited to +${fmtKiB(b.step)} per cycle`);
  if (skip) {
    reasons.push(`change ${fmtKiB(t - cur)} below ${fmtKiB(b.minChange)}`);
    return decision('skip', requestedNum, from, null, floor, max, reasons, state);
  }
  if (t > cur + b.step) reasons.push(`below floor: raised by more than one step, at once`);
  const next: GuestGuardState = t < cur
    ? { lastInflation: { cycle: inp.cycle, at: inp.now, step: cur - t }, holdUntil: state.holdUntil }
    : { lastInflation: undefined, holdUntil: state.holdUntil };
  return decision('apply', requestedNum, from, t, floor, max, reasons, next);
}

const NO_REQUEST: string[] = ['no balloon_target'];

function decision(
  verdict: BalloonVerdict, requested: number | null, from: number | null, target: number | null,
  floor: number | null, max: number | null, reasons: string[], next: GuestGuardState,
): BalloonDecision {
  return { verdict, requested, from, target, floor, max, reasons, next };
}
