// The virtio balloon, a guest control: MOM's balloon_target. Unlike a knob it is planned guest
// by guest every cycle, asked or not: its guard (guard.ts) keeps state across cycles (the last
// inflation it watches for a rollback, a hold after one) and raises a guest below its floor
// whatever the policy says. The state is committed only when the balloon was really moved;
// each new sample adds to what the inflations returned to the host (returns.ts).
import { errorMessage } from '../../errors.js';
import type { Action, ControlModule, GuestModulePlan, GuestPlanInput } from '../control.js';
import { type BalloonSection, balloonSection } from './config.js';
import { BalloonController } from './controller.js';
import { guardBalloon, type GuestGuardState } from './guard.js';
import { addPeak, type PeakBucket, recentPeak } from './peaks.js';
import { addReturn, type BalloonReturn, ineffective, inflationStep } from './returns.js';

/** What the balloon remembers about one guest. */
export interface BalloonState {
  guard: GuestGuardState;
  /** The last target ballast set (the balloon may still be moving toward it). */
  lastTarget?: number;
  /** What inflations took from the guest and gave back to the host. */
  returns?: BalloonReturn;
  /** balloon_ineffective was said for it. */
  warnedIneffective?: boolean;
  /** Its use in the recent past, for a floor that remembers peaks. */
  peaks?: readonly PeakBucket[];
  /** Until then (seconds) its floor keeps its recent peak: set by a rollback, when squeezing
   *  it below a peak it came back to has hurt it once. */
  rememberUntil?: number;
  /** Rollbacks so far: each one remembers the peak twice as long as the one before (at most 8 windows). */
  rollbacks?: number;
}

const NO_GUARD: GuestGuardState = Object.freeze({}) as GuestGuardState;
const CONTROLS = ['balloon_target'] as const;

/** One guest's balloon for this cycle: the guard's decision as an action or a note, and the state to keep. */
export function planBalloon(inp: GuestPlanInput<BalloonState>): GuestModulePlan<BalloonState> {
  const st = inp.state;
  const guard = st?.guard ?? NO_GUARD;
  const requested = inp.requested.balloon_target ?? undefined;
  const d = guardBalloon(
    {
      history: inp.history,
      requested,
      stale: inp.stale,
      state: guard,
      cycle: inp.cycle,
      now: inp.now,
      reportsFreePages: inp.props.free_page_reporting === 1,
      recent: st?.rememberUntil !== undefined && inp.now < st.rememberUntil ? recentPeak(st.peaks, inp.now, inp.safeguards.peakWindowS) : undefined,
    },
    inp.safeguards,
  );
  const out: GuestModulePlan<BalloonState> = { actions: [], notes: [] };
  if (inp.off !== undefined && (d.verdict === 'apply' || d.verdict === 'rollback')) {
    out.notes.push({
      entity: inp.name,
      control: 'balloon_target',
      requested: requested ?? d.target,
      verdict: 'veto',
      reasons: [...d.reasons, `not applied: ${inp.off}`],
    });
  } else if (d.verdict === 'apply' || d.verdict === 'rollback') {
    out.actions.push({ entity: inp.name, guestId: inp.id, control: 'balloon_target', from: d.from, to: d.target, reasons: d.reasons });
    // A rollback's hold stands even if the deflation fails: the guest is in trouble either way.
    // And its floor remembers its peak for a window: its peak comes back, so squeezing it in
    // the next idle phase would hurt it again (Senpai's shape: probe slowly, back off fast).
    const rolled = d.verdict === 'rollback';
    const rollbacks = (st?.rollbacks ?? 0) + (rolled ? 1 : 0);
    const remember = rolled && inp.safeguards.peakWindowS > 0 ? inp.now + inp.safeguards.peakWindowS * Math.min(8, 2 ** (rollbacks - 1)) : st?.rememberUntil;
    const otherwise = rolled ? { ...st, guard: { ...guard, holdUntil: d.next.holdUntil }, rememberUntil: remember, rollbacks } : (st ?? { guard });
    out.commit = { applied: { ...st, guard: d.next, lastTarget: d.target ?? st?.lastTarget, rememberUntil: remember, rollbacks }, otherwise };
  } else {
    if (requested !== undefined && requested !== null) {
      out.notes.push({ entity: inp.name, control: 'balloon_target', requested, verdict: d.verdict, reasons: d.reasons });
    }
    if (d.next !== guard || st === undefined) {
      const next = { ...st, guard: d.next };
      out.commit = { applied: next, otherwise: next };
    }
  }
  return out;
}

export const balloon = {
  name: 'balloon',
  scope: 'guest',
  controls: CONTROLS,
  section: { key: 'shutdown' as const, schema: balloonSection },
  offReason: 'balloon control off',
  planGuest: planBalloon,
  observe(state, prev, cur, { guest, time, safeguards }) {
    const peaks = addPeak(state?.peaks, cur, time, safeguards.peakWindowS);
    const step = inflationStep(prev, cur);
    if (!step) return peaks === state?.peaks ? undefined : { state: { ...state, guard: state?.guard ?? NO_GUARD, peaks } };
    const returns = addReturn(state?.returns, step);
    const next: BalloonState = { ...state, guard: state?.guard ?? NO_GUARD, returns, peaks };
    if (next.warnedIneffective || !ineffective(returns)) return { state: next };
    next.warnedIneffective = true;
    const mib = (k: number) => Math.round(k / 1024);
    return {
      state: next,
      warn: {
        event: 'balloon_ineffective',
        fields: {
          guest,
          inflated_mib: mib(returns.inflatedKiB),
          expected_mib: mib(returns.expectedKiB),
          returned_mib: mib(returns.returnedKiB),
          reason:
            "the balloon took memory the host had backed, but QEMU's resident memory fell by under a quarter of it: huge pages likely hold it (see docs/host.md)",
        },
      },
    };
  },
  view: (st) => ({ holdUntil: st.guard.holdUntil, lastTarget: st.lastTarget, balloonReturn: st.returns }),
  // Deflating relieves a guest: a failure's backoff never holds it back.
  givesBack: (a: Action) => a.to === null || (a.from !== null && a.to > a.from),
  setup(env, section) {
    const hv = env.hypervisor;
    return {
      controller: new BalloonController(hv),
      async restore(guests) {
        if (section.balloons === 'leave' || env.readOnly !== undefined) {
          env.log.info('balloons_left', {
            guests: guests.map((g) => ({ guest: g.name, balloon_cur: g.stats.balloon_cur ?? null })),
            reason: env.readOnly ?? 'shutdown.balloons = "leave"',
          });
          return undefined;
        }
        let restored = 0;
        for (const g of guests) {
          const max = g.stats.balloon_max;
          const last = g.state?.lastTarget;
          // The balloon may still be moving toward the last target: restore unless both are at max.
          if (typeof max !== 'number' || (g.stats.balloon_cur === max && (last === undefined || last === max))) continue;
          try {
            await hv.setBalloon(g.id, max);
            restored++;
            env.log.info('action', {
              entity: g.name,
              control: 'balloon_target',
              from: g.stats.balloon_cur,
              to: max,
              result: 'applied',
              reason: ['shutdown.balloons = "restore": back to balloon_max'],
            });
          } catch (err) {
            env.log.warn('action_failed', { entity: g.name, control: 'balloon_target', to: max, error: errorMessage(err), reason: ['shutdown restore'] });
          }
        }
        return restored > 0 ? `${restored} balloon(s) back to balloon_max (shutdown.balloons = "restore")` : undefined;
      },
    };
  },
} satisfies ControlModule<BalloonSection, BalloonState>;
