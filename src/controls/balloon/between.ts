// Between two policy cycles the balloon's guard acts on a guest for two reasons only: an
// inflation in its rollback window that hurt, or use that has eaten into its headroom by half
// (guardBalloon's urgentOnly raise). This says whether either could happen before the next
// policy cycle, so the loop can let a stats interval pass without collecting (Loop.mayRest).
// The projection is the guest's growth over its last sample interval carried forward: a guest
// ramping steadily at its floor is raised at each cycle and needs no look in between; one that
// jumps, or was just inflated, keeps the full cadence.
import { finite } from '../../numbers.js';
import type { BetweenCyclesInput } from '../control.js';
import { recentPeak } from '../peaks.js';
import { balloonBounds, fmtKiB, usedOf } from './guard.js';
import type { BalloonState } from './index.js';

/** Why this guest needs the guards' look before the next policy cycle, or null. */
export function balloonWatch(inp: BetweenCyclesInput<BalloonState>): string | null {
  const cfg = inp.safeguards;
  const st = inp.state;
  // Left alone while another manager holds it: the guard does nothing for it either way.
  if (st?.movedByOther && inp.now < st.movedByOther.until) return null;
  const inf = st?.guard.lastInflation;
  if (inf && cfg.rollbackWindow > 0 && inp.cycle - inf.cycle <= cfg.rollbackWindow) {
    return `inflated by ${fmtKiB(inf.step)} at cycle ${inf.cycle}: watched for a rollback`;
  }
  const h = inp.history;
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
