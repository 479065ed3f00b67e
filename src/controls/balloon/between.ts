// Between two policy cycles the balloon's guard acts on a guest for two reasons only: an
// inflation in its rollback window that hurt, or use that has eaten into its headroom by half
// (guardBalloon's urgentOnly raise). This says whether either may come due before the next
// policy cycle, so the loop can let a stats interval pass without collecting (Loop.mayWait).
// Use is projected: the guest's growth over its last sample interval carried forward. An
// inflation is watched once it shows half of what would roll it back. A guest ramping steadily
// at its floor is raised at each cycle and needs no look in between; one that jumps, or whose
// last inflation has started to hurt, keeps the full cadence.
import { finite } from '../../numbers.js';
import type { BetweenCyclesInput } from '../control.js';
import { recentPeak } from '../peaks.js';
import { balloonBounds, fmtKiB, rollbackReason, type SafeguardConfig, usedOf } from './guard.js';
import type { BalloonState } from './index.js';

// The rollback thresholds halved, worked out once per safeguards object.
let halved: { cfg: SafeguardConfig; half: SafeguardConfig } | undefined;
function halfway(cfg: SafeguardConfig): SafeguardConfig {
  if (halved?.cfg !== cfg) {
    const half = (x: number | null) => (x === null ? null : x / 2);
    halved = {
      cfg,
      half: {
        ...cfg,
        rollbackSwapInKiBPerS: cfg.rollbackSwapInKiBPerS / 2,
        rollbackMajorFaultsPerS: cfg.rollbackMajorFaultsPerS / 2,
        rollbackPsiPercent: half(cfg.rollbackPsiPercent),
      },
    };
  }
  return halved.half;
}

/** Why this guest needs the guards' look before the next policy cycle, or null. */
export function balloonWatch(inp: BetweenCyclesInput<BalloonState>): string | null {
  const cfg = inp.safeguards;
  const st = inp.state;
  // Left alone while another manager holds it: the guard does nothing for it either way.
  if (st?.movedByOther && inp.now < st.movedByOther.until) return null;
  const h = inp.history;
  // An inflation in its window that already shows half of what would roll it back (swap-in,
  // major faults, stall since it) may hurt enough by the cycle: it is watched. One that shows
  // nothing yet waits for the cycle's own collection, as every guest's use does: on a busy
  // host the policy inflates some guest nearly every cycle (45 of 54 in a lab run), so
  // watching every inflation would leave no collection to skip.
  if (st?.guard.lastInflation) {
    const half = rollbackReason(h, st.guard, inp.cycle, halfway(cfg), 'inflating by');
    if (half !== null) return `${half.replace(/^rollback: /, '')}: halfway to a rollback`;
  }
  const s = h.latest();
  if (!s || h.length < 2) return 'too few samples to see how it grows';
  const recent = st?.rememberUntil !== undefined && inp.now < st.rememberUntil ? recentPeak(st.peaks, inp.now, cfg.peakWindowS) : undefined;
  const b = balloonBounds(s, cfg, recent);
  if (typeof b === 'string') return b;
  const cur = finite(s.balloon_cur) as number;
  const cacheAware = b.anon !== null;
  const usedNow = usedOf(s, cacheAware);
  const usedThen = usedOf(h.at(1), cacheAware);
  const dt = (h.timeAt(0) ?? 0) - (h.timeAt(1) ?? 0);
  if (usedNow === null || usedThen === null || !(dt > 0)) return 'its use is not known over its last interval';
  const growth = Math.max(0, ((usedNow - usedThen) / dt) * inp.horizonS);
  const floorThen = b.floor + growth;
  const urgent = Math.max(b.minChange, cfg.headroomKiB / 2);
  if (cur < floorThen && floorThen - cur >= urgent) {
    return `growing ${fmtKiB(growth)} by the next cycle would leave it under half its headroom (floor ${fmtKiB(Math.round(floorThen))}, balloon ${fmtKiB(cur)})`;
  }
  return null;
}
