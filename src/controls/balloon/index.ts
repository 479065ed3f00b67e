// The virtio balloon, a guest control: MOM's balloon_target. Unlike a knob it is planned guest
// by guest every cycle, asked or not: its guard (guard.ts) keeps state across cycles (the last
// inflation it watches for a rollback, a hold after one) and raises a guest below its floor
// whatever the policy says. The state is committed only when the balloon was really moved;
// each new sample adds to what the inflations returned to the host (returns.ts).
import { errorMessage } from '../../errors.js';
import { type ControlModule, type GuestModulePlan, type GuestPlanInput, raisesGuest } from '../control.js';
import { type BalloonSection, balloonSection } from './config.js';
import { BalloonController } from './controller.js';
import { fmtKiB, guardBalloon, type GuestGuardState } from './guard.js';
import { finite } from '../../numbers.js';
import type { Stats } from '../../types.js';
import { hostCanWait, type SafeguardConfig } from '../floor.js';
import { addPeak, type PeakBucket, recentPeak } from '../peaks.js';
import { addReturn, type BalloonReturn, ineffective, inflationStep } from './returns.js';

/** What the balloon remembers about one guest. */
export interface BalloonState {
  guard: GuestGuardState;
  /** The last target ballast set (the balloon may still be moving toward it). */
  lastTarget?: number;
  /** The targets ballast set before it, newest last (at most EARLIER_TARGETS): a balloon still
   *  on its way to one of them is converging, not moved by someone else. */
  earlierTargets?: number[];
  /** What inflations took from the guest and gave back to the host. */
  returns?: BalloonReturn;
  /** balloon_ineffective was said for it. */
  warnedIneffective?: boolean;
  /** Its use in the recent past, for a floor that remembers peaks. */
  peaks?: PeakBucket[];
  /** Until then (seconds) its floor keeps its recent peak: set by a rollback, when squeezing
   *  it below a peak it came back to has hurt it (safeguards.peak_hold after each one). */
  rememberUntil?: number;
  /** The balloon was moved by someone else: when, from and to what, ballast's own last target,
   *  and until when ballast leaves the guest alone. */
  movedByOther?: MovedByOther;
}

export interface MovedByOther {
  at: number;
  from: number;
  to: number;
  ours: number;
  until: number;
}

/** Targets before the last one that still count as where the balloon may be heading. */
const EARLIER_TARGETS = 2;

/** The balloon moved away from ballast's last target between two samples (by more than the
 *  smallest change): someone else set it. Moving toward it is the balloon converging. */
export function movedByOther(st: BalloonState | undefined, prev: Stats | undefined, cur: Stats, time: number, cfg: SafeguardConfig): MovedByOther | undefined {
  const ours = st?.lastTarget;
  const p = finite(prev?.balloon_cur);
  const c = finite(cur.balloon_cur);
  const max = finite(cur.balloon_max) ?? 0;
  if (ours === undefined || p === null || c === null || !(cfg.externalHoldS > 0)) return undefined;
  const tolerance = Math.max(cfg.minChangeKiB, cfg.minChangeFraction * max);
  if (Math.abs(c - ours) <= Math.abs(p - ours) + tolerance) return undefined;
  // A guest's driver works through the targets in the order it got them: a balloon that lands
  // between ballast's recent targets is still converging (a lab run saw one reach the previous
  // target a second after a new one was set, and held the guest for external_hold).
  const recent = [...(st?.earlierTargets ?? []), ours];
  if (c >= Math.min(...recent) - tolerance && c <= Math.max(...recent) + tolerance) return undefined;
  return { at: time, from: p, to: c, ours, until: time + cfg.externalHoldS };
}

// Every guest of a cycle sees the same host sample: its verdict is worked out once.
let lastHost: { host: Stats | undefined; cfg: SafeguardConfig; why: string | null } | undefined;
function canWait(host: Stats | undefined, cfg: SafeguardConfig): string | null {
  if (lastHost?.host !== host || lastHost?.cfg !== cfg) lastHost = { host, cfg, why: hostCanWait(host, cfg) };
  return lastHost.why;
}

const NO_GUARD: GuestGuardState = Object.freeze({}) as GuestGuardState;
const CONTROLS = ['balloon_target'] as const;

/** One guest's balloon for this cycle: the guard's decision as an action or a note, and the state to keep. */
export function planBalloon(inp: GuestPlanInput<BalloonState>): GuestModulePlan<BalloonState> {
  const st = inp.state;
  const guard = st?.guard ?? NO_GUARD;
  const requested = inp.requested.balloon_target ?? undefined;
  const other = st?.movedByOther;
  if (other) {
    if (inp.now < other.until) {
      const reasons = [
        `another manager set this balloon to ${fmtKiB(other.to)} at t=${Math.round(other.at)} (ballast had set ${fmtKiB(other.ours)}): left alone until t=${Math.round(other.until)}`,
      ];
      return { actions: [], notes: [{ entity: inp.name, control: 'balloon_target', requested: requested ?? null, verdict: 'veto', reasons }] };
    }
    // The hold is over: ballast manages the guest again, from where the other left it.
    const next = { ...st, movedByOther: undefined };
    const plan = planBalloon({ ...inp, state: next });
    plan.commit ??= { applied: next, otherwise: next };
    return plan;
  }
  const d = guardBalloon(
    {
      history: inp.history,
      requested,
      stale: inp.stale,
      state: guard,
      cycle: inp.cycle,
      now: inp.now,
      reportsFreePages: inp.props.free_page_reporting === 1,
      urgentOnly: inp.guardPass,
      hostCanWait: canWait(inp.host, inp.safeguards),
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
    const remember = rolled && inp.safeguards.peakWindowS > 0 ? inp.now + inp.safeguards.peakHoldS : st?.rememberUntil;
    const otherwise = rolled ? { ...st, guard: { ...guard, holdUntil: d.next.holdUntil }, rememberUntil: remember } : (st ?? { guard });
    const earlierTargets = st?.lastTarget === undefined ? st?.earlierTargets : [...(st.earlierTargets ?? []), st.lastTarget].slice(-EARLIER_TARGETS);
    out.commit = { applied: { ...st, guard: d.next, lastTarget: d.target ?? st?.lastTarget, earlierTargets, rememberUntil: remember }, otherwise };
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
    const other = state?.movedByOther ? undefined : movedByOther(state, prev, cur, time, safeguards);
    if (other) {
      // Ballast adopts what the other manager set: no last target of its own until it acts again.
      return {
        state: { ...state, guard: state?.guard ?? NO_GUARD, peaks, movedByOther: other, lastTarget: undefined, earlierTargets: undefined },
        warn: {
          event: 'balloon_moved_externally',
          fields: {
            guest,
            from_kib: other.from,
            to_kib: other.to,
            ballast_target_kib: other.ours,
            reason: `its balloon moved away from the target ballast set: another manager (or an admin) set it; left alone for ${safeguards.externalHoldS} s (safeguards.external_hold)`,
          },
        },
      };
    }
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
  view: (st) => ({ holdUntil: st.guard.holdUntil, lastTarget: st.lastTarget, balloonReturn: st.returns, movedByOther: st.movedByOther }),
  // Deflating relieves a guest: a failure's backoff never holds it back.
  givesBack: raisesGuest,
  setup(env, section) {
    const hv = env.hypervisor;
    return {
      controller: new BalloonController(hv),
      // Inflated by more than a MiB (drivers round): the guest may want it back any second.
      holds: (_id, s) => typeof s.balloon_cur === 'number' && typeof s.balloon_max === 'number' && s.balloon_cur < s.balloon_max - 1024,
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
