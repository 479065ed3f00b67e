// Page cache reclaimed inside the guest, a guest control: the policy's cache_target (KiB) is the
// page cache a guest should hold at most. The guest's own kernel reclaims the difference (its
// coldest pages first: memory.reclaim through its agent, the driver's `guestReclaim`
// capability) and free page reporting hands what it freed back to the host in whole 2 MiB+
// blocks, where a balloon taking the same cache splits the host's huge pages. Opt-in
// ([reclaim] enabled); guarded by guard.ts.
import { type ActionOutcome, type ControlModule, failedOutcome, type GuestModulePlan, type GuestPlanInput, mapLimited, planFromGuard } from '../control.js';
import { type ReclaimSection, reclaimSection } from './config.js';
import { guardReclaim, type ReclaimState } from './guard.js';

export const RECLAIM_CONTROLS = ['cache_target'] as const;

const NO_STATE: ReclaimState = Object.freeze({});

export function planReclaim(inp: GuestPlanInput<ReclaimState>): GuestModulePlan<ReclaimState> {
  const st = inp.state ?? NO_STATE;
  const requested = inp.requested.cache_target;
  // Between policy cycles nothing here is urgent: cache comes back to the guest by itself.
  if (inp.guardPass) return { actions: [], notes: [] };
  const d = guardReclaim(
    { history: inp.history, requested, stale: inp.stale, state: st, cycle: inp.cycle, now: inp.now, reportsFreePages: inp.props.free_page_reporting === 1 },
    inp.safeguards,
  );
  return planFromGuard(inp, 'cache_target', requested, st, d);
}

export const reclaim = {
  name: 'reclaim',
  scope: 'guest',
  controls: RECLAIM_CONTROLS,
  section: { key: 'reclaim' as const, schema: reclaimSection },
  enabled: (s) => s.enabled,
  offReason: 'reclaim inside guests disabled (config reclaim.enabled)',
  planGuest: planReclaim,
  view: (st) => ({ reclaimHoldUntil: st.holdUntil }),
  setup(env) {
    const backend = env.hypervisor.capabilities?.guestReclaim;
    if (!backend) return `no reclaim inside guests: the ${env.hypervisor.name} driver cannot reach guest agents`;
    return {
      controller: {
        name: 'reclaim',
        controls: RECLAIM_CONTROLS,
        apply(actions, ctx) {
          return mapLimited(actions, 16, async (a): Promise<ActionOutcome> => {
            if (!a.guestId || a.from === null || a.to === null) return { action: a, result: 'failed', error: 'reclaim action without guest or amount' };
            if (ctx.isGone(a.guestId)) return { action: a, result: 'dropped', error: 'guest vanished before actuation' };
            try {
              const r = await backend.reclaim(a.guestId, a.from - a.to);
              // Short: the guest freed what it could; its cache figure will say how much.
              return r === 'done' ? { action: a, result: 'applied' } : { action: a, result: 'unchanged', error: 'the guest found less to reclaim than asked' };
            } catch (err) {
              return failedOutcome(a, err, ctx.isGone(a.guestId));
            }
          });
        },
      },
    };
  },
} satisfies ControlModule<ReclaimSection, ReclaimState>;
