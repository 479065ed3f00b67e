// The balloon floor: the least memory a guest may be left with, whatever a policy asks. Every
// control that can take memory from a guest (balloon_target, cgroup limits) respects it.
import type { Stats } from '../../types.js';

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
  if (bmin > f) {
    f = bmin;
    why = `balloon_min ${fmtKiB(bmin)}`;
  }
  if (b.used !== null && b.used + cfg.headroomKiB > f) {
    f = b.used + cfg.headroomKiB;
    why = `used ${fmtKiB(b.used)} + headroom ${fmtKiB(cfg.headroomKiB)}`;
  }
  if (f > b.max) why += ' (capped at balloon_max)';
  return why;
}
