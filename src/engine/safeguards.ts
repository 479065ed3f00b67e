// The guard step: every control a policy asks for passes through here before a controller
// touches anything. Pure functions of (latest sample, request, per-guest guard state, config,
// time): each returns what to do and the reasons, so the same inputs always give the same
// decision, and every clamp, rate limit, veto and rollback can be explained in the action log.
import type { Stats } from '../types.js';
import { History, peakRate } from './history.js';

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
  rollbackSwapInKiBPerS: 1024,
  rollbackMajorFaultsPerS: 500,
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
  floorReason: string;
}

const MiB = 1024;
const fmtKiB = (k: number): string => (Math.abs(k) >= 10 * MiB ? `${Math.round(k / MiB)} MiB` : `${Math.round(k)} KiB`);

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
  let floorReason = `configured minimum ${fmtKiB(cfg.minGuestKiB)}`;
  if (bmin > floor) { floor = bmin; floorReason = `balloon_min ${fmtKiB(bmin)}`; }
  if (used !== null && used + cfg.headroomKiB > floor) {
    floor = used + cfg.headroomKiB;
    floorReason = `used ${fmtKiB(used)} + headroom ${fmtKiB(cfg.headroomKiB)}`;
  }
  if (floor > max) { floor = max; floorReason += ' (capped at balloon_max)'; }
  const step = Math.max(1, Math.floor(cfg.maxStepFraction * max));
  const minChange = Math.max(cfg.minChangeKiB, cfg.minChangeFraction * max);
  return { floor: Math.ceil(floor), max, step, minChange, used, floorReason };
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
  let next = st;
  if (next.lastInflation && cycle - next.lastInflation.cycle > cfg.rollbackWindow) {
    next = { ...next, lastInflation: undefined };
  }
  if (next.holdUntil !== undefined && now >= next.holdUntil) next = { ...next, holdUntil: undefined };
  return next;
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
  const s = inp.history.latest() ?? {};
  const state = expire(inp.state, inp.cycle, inp.now, cfg);
  const requestedNum = num(inp.requested);
  const base = { requested: requestedNum, from: num(s.balloon_cur), floor: null, max: null, target: null };
  const b = balloonBounds(s, cfg);
  if (typeof b === 'string') {
    return { ...base, verdict: inp.requested === undefined ? 'skip' : 'veto', reasons: [b], next: state };
  }
  const cur = s.balloon_cur as number;
  const bounded = { ...base, floor: b.floor, max: b.max };

  const rb = rollbackReason(inp.history, state, inp.cycle, cfg);
  if (rb !== null) {
    const step = state.lastInflation!.step;
    const target = Math.min(b.max, Math.max(b.floor, Math.min(cur + step, Math.max(cur + b.step, b.floor))));
    const hold = `no inflation for ${cfg.rollbackBackoffS} s`;
    return {
      ...bounded,
      verdict: target === cur ? 'skip' : 'rollback',
      target: target === cur ? null : target,
      reasons: [rb, hold],
      next: { lastInflation: undefined, holdUntil: inp.now + cfg.rollbackBackoffS },
    };
  }

  if (inp.requested === undefined) return { ...bounded, verdict: 'skip', reasons: ['no balloon_target'], next: state };
  if (requestedNum === null) {
    return { ...bounded, verdict: 'veto', reasons: [`balloon_target is not a finite number: ${JSON.stringify(inp.requested)}`], next: state };
  }
  const reasons: string[] = [];
  let t = Math.round(requestedNum);
  if (t < cur) {
    const why = inp.stale ? `sample stale (${inp.stale})`
      : b.used === null ? 'guest memory use unknown (no mem_unused)'
      : state.holdUntil !== undefined ? `backing off after a rollback until t=${Math.round(state.holdUntil)} s`
      : null;
    if (why) return { ...bounded, verdict: 'veto', reasons: [`inflation refused: ${why}`], next: state };
  }
  if (t < b.floor) { reasons.push(`clamped up to floor ${fmtKiB(b.floor)} (${b.floorReason})`); t = b.floor; }
  if (t > b.max) { reasons.push(`clamped down to balloon_max ${fmtKiB(b.max)}`); t = b.max; }
  const lo = Math.min(cur - b.step, b.max);
  const hi = Math.max(cur + b.step, b.floor);
  if (t < lo) { reasons.push(`rate-limited to -${fmtKiB(b.step)} per cycle`); t = lo; }
  if (t > hi) { reasons.push(`rate-limited to +${fmtKiB(b.step)} per cycle`); t = hi; }
  const outside = cur < b.floor || cur > b.max;
  if (t === cur || (Math.abs(t - cur) < b.minChange && !outside)) {
    return { ...bounded, verdict: 'skip', reasons: [...reasons, `change ${fmtKiB(t - cur)} below ${fmtKiB(b.minChange)}`], next: state };
  }
  if (cur < b.floor) reasons.push(`below floor: raised to ${fmtKiB(b.floor)} at once`);
  reasons.unshift(t < cur ? 'policy asked to inflate' : 'policy asked to deflate');
  const next: GuestGuardState = t < cur
    ? { ...state, lastInflation: { cycle: inp.cycle, at: inp.now, step: cur - t } }
    : { ...state, lastInflation: undefined };
  return { ...bounded, verdict: 'apply', target: t, reasons, next };
}

// ---- KSM ----------------------------------------------------------------------------------

/** Valid values of each KSM knob. The kernel takes any unsigned int for the two rates; these
 *  bounds only refuse values no sane policy means (0 pages, hours of sleep). */
export const KSM_RANGES: Record<string, { min: number; max: number; set?: number[] }> = {
  ksm_run: { min: 0, max: 2, set: [0, 1, 2] },
  ksm_pages_to_scan: { min: 1, max: 100_000 },
  ksm_sleep_millisecs: { min: 1, max: 60_000 },
  ksm_merge_across_nodes: { min: 0, max: 1, set: [0, 1] },
};

export interface KnobDecision {
  control: string;
  requested: unknown;
  verdict: 'apply' | 'veto';
  value: number | null;
  reasons: string[];
}

/** Range-check one KSM control (integers; fractional values are rounded, out of range refused). */
export function guardKsm(control: string, requested: unknown): KnobDecision {
  const range = KSM_RANGES[control];
  if (!range) return { control, requested, verdict: 'veto', value: null, reasons: [`unknown KSM control ${control}`] };
  const v = typeof requested === 'boolean' ? Number(requested) : num(requested);
  if (v === null) return { control, requested, verdict: 'veto', value: null, reasons: [`not a finite number: ${JSON.stringify(requested)}`] };
  const r = Math.round(v);
  const reasons = r !== v ? [`rounded ${v} to ${r}`] : [];
  const ok = range.set ? range.set.includes(r) : r >= range.min && r <= range.max;
  if (!ok) {
    const allowed = range.set ? range.set.join(', ') : `${range.min}..${range.max}`;
    return { control, requested, verdict: 'veto', value: null, reasons: [`${r} out of range (${allowed})`] };
  }
  return { control, requested, verdict: 'apply', value: r, reasons: ['policy request', ...reasons] };
}

// ---- cgroup limits ------------------------------------------------------------------------

export const CGROUP_CONTROLS = ['mem_high', 'mem_max'] as const;

/**
 * Check a guest's mem_high / mem_max (KiB). -1 or "max" removes the limit; a limit below the
 * guest's balloon floor is raised to it (a cgroup limit under the guest's own use would make
 * the host swap the guest: the double paging ballast exists to avoid).
 */
export function guardCgroup(control: string, requested: unknown, s: Stats, cfg: SafeguardConfig): KnobDecision {
  if (requested === 'max' || requested === -1) return { control, requested, verdict: 'apply', value: null, reasons: ['policy removes the limit'] };
  const v = num(requested);
  if (v === null || v <= 0) return { control, requested, verdict: 'veto', value: null, reasons: [`expected a positive KiB value, -1 or "max": ${JSON.stringify(requested)}`] };
  const b = balloonBounds(s, cfg);
  let value = Math.round(v);
  const reasons = ['policy request'];
  if (typeof b !== 'string' && value < b.floor) {
    reasons.push(`raised to floor ${fmtKiB(b.floor)} (${b.floorReason})`);
    value = b.floor;
  } else if (typeof b === 'string' && value < cfg.minGuestKiB) {
    reasons.push(`raised to configured minimum ${fmtKiB(cfg.minGuestKiB)}`);
    value = cfg.minGuestKiB;
  }
  return { control, requested, verdict: 'apply', value, reasons };
}
