// The cgroup control's safeguard: a limit never below the guest's balloon floor.
import { finite } from '../../numbers.js';
import type { Stats } from '../../types.js';
import type { KnobDecision } from '../control.js';
import { balloonBounds, floorWhy, fmtKiB, type SafeguardConfig } from '../floor.js';

export const CGROUP_CONTROLS = ['mem_high', 'mem_max'] as const;

/**
 * Check a guest's mem_high / mem_max (KiB). -1 or "max" removes the limit; a limit below the
 * guest's balloon floor is raised to it (a cgroup limit under the guest's own use would make
 * the host swap the guest: the double paging ballast exists to avoid).
 */
export function guardCgroup(control: string, requested: unknown, s: Stats, cfg: SafeguardConfig): KnobDecision {
  if (requested === 'max' || requested === -1) return { control, requested, verdict: 'apply', value: null, reasons: ['policy removes the limit'] };
  const v = finite(requested);
  if (v === null || v <= 0)
    return { control, requested, verdict: 'veto', value: null, reasons: [`expected a positive KiB value, -1 or "max": ${JSON.stringify(requested)}`] };
  const b = balloonBounds(s, cfg);
  let value = Math.round(v);
  const reasons = ['policy request'];
  // Page cache counts here: under a host-side limit the host would swap the guest's cache out.
  if (typeof b !== 'string' && value < b.cacheFloor) {
    reasons.push(`raised to floor ${fmtKiB(b.cacheFloor)} (${b.cacheFloor > b.floor ? 'used with page cache + headroom' : floorWhy(s, b, cfg)})`);
    value = b.cacheFloor;
  } else if (typeof b === 'string' && value < cfg.minGuestKiB) {
    reasons.push(`raised to configured minimum ${fmtKiB(cfg.minGuestKiB)}`);
    value = cfg.minGuestKiB;
  }
  return { control, requested, verdict: 'apply', value, reasons };
}
