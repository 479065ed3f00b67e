// The pure half of a control cycle: from the entities' histories, the policy's output and the
// guard state, decide every action and why. No I/O, no clock, no randomness: the same inputs
// give the same plan, which is what makes replay and the simulator exact. The engine then
// hands the plan's actions to the controllers and commits the state that goes with them.
import type { BalloonReturn } from './balloon-return.js';
import type { Props, Stats } from '../types.js';
import type { Action, ControlModule } from '../controls/control.js';
import type { History } from './history.js';
import type { Controls, PolicyErrorInfo, PolicyOutput, Vars } from './policy-port.js';
import { guardBalloon, type GuestGuardState, type SafeguardConfig } from './safeguards.js';

export interface GuestEntity {
  id: string;
  name: string;
  props: Props;
  history: History;
  vars: Vars;
  stale?: string;
  guard: GuestGuardState;
  /** The last balloon target ballast set (the balloon may still be moving toward it). */
  lastTarget?: number;
  /** What inflations took from the guest and gave back to the host (balloon-return.ts). */
  returns?: BalloonReturn;
  /** balloon_ineffective was logged for it. */
  warnedIneffective?: boolean;
}

export interface HostEntity {
  props: Props;
  history: History;
  vars: Vars;
}

/** A decision that did not become an action (skipped, vetoed, ignored), kept for the log. */
export interface Note {
  entity: string;
  control: string;
  requested: unknown;
  verdict: 'skip' | 'veto' | 'ignored';
  reasons: string[];
  /** Expected every cycle (a controller turned off by config): logged at debug only. */
  quiet?: boolean;
}

/** Guard state to commit for one guest: `applied` if its balloon action succeeds, else `otherwise`. */
export interface GuardCommit {
  applied: GuestGuardState;
  otherwise: GuestGuardState;
}

export interface CyclePlan {
  cycle: number;
  now: number;
  aborted: boolean;
  errors: PolicyErrorInfo[];
  actions: Action[];
  notes: Note[];
  /** Variables to keep (absent: keep the old ones). */
  hostVars?: Vars;
  guestVars: Map<string, Vars>;
  guard: Map<string, GuardCommit>;
}

/** A control module as the planner sees it: whether its actions may be applied. */
export interface PlannedControl {
  module: ControlModule;
  /** False when the config turns it off or the host has no backend for it. */
  on: boolean;
}

export interface PlanOptions {
  safeguards: SafeguardConfig;
  /** The control modules (registry), by control name. */
  controls: ReadonlyMap<string, PlannedControl>;
  /** Set when balloons must not be touched (read-only hypervisor connection): the reason. */
  balloonsOff?: string;
  /** Set while control is paused (observe only): no control is applied; the reason. */
  paused?: string;
}

/** The controls of `modules` by name, for PlanOptions. */
export function plannedControls(modules: readonly PlannedControl[]): Map<string, PlannedControl> {
  const m = new Map<string, PlannedControl>();
  for (const p of modules) for (const c of p.module.controls) m.set(c, p);
  return m;
}

const NO_CONTROLS: Controls = Object.freeze({}) as Controls;

/** One control of a registry module: ignored, vetoed or an action. */
function planKnob(
  entity: string,
  guestId: string | undefined,
  scope: 'host' | 'guest',
  control: string,
  requested: unknown,
  latest: Stats,
  opts: PlanOptions,
  plan: { actions: Action[]; notes: Note[] },
): void {
  const p = opts.controls.get(control);
  if (!p || p.module.scope !== scope) {
    plan.notes.push({ entity, control, requested, verdict: 'ignored', reasons: [`no controller for this ${scope} control`] });
    return;
  }
  if (opts.paused !== undefined) {
    plan.notes.push({ entity, control, requested, verdict: 'veto', reasons: [`not applied: ${opts.paused}`] });
    return;
  }
  if (!p.on) {
    plan.notes.push({ entity, control, requested, verdict: 'veto', reasons: [p.module.offReason], quiet: true });
    return;
  }
  const d = p.module.guard(control, requested, latest, opts.safeguards);
  if (d.verdict === 'veto') plan.notes.push({ entity, control, requested, verdict: 'veto', reasons: d.reasons });
  else {
    const cur = latest[control];
    plan.actions.push({ entity, guestId, control, from: typeof cur === 'number' ? cur : null, to: d.value, reasons: d.reasons });
  }
}

function hostPlan(controls: Controls, host: HostEntity, opts: PlanOptions, plan: CyclePlan): void {
  const latest = host.history.latest() ?? {};
  for (const [control, requested] of Object.entries(controls)) {
    if (requested === null || requested === undefined) {
      if (!opts.controls.has(control))
        plan.notes.push({ entity: 'host', control, requested, verdict: 'ignored', reasons: ['no controller for this host control'] });
      continue;
    }
    planKnob('host', undefined, 'host', control, requested, latest, opts, plan);
  }
}

function guestPlan(
  g: GuestEntity,
  controls: Controls | undefined,
  errored: string | undefined,
  cycle: number,
  now: number,
  opts: PlanOptions,
  plan: CyclePlan,
): void {
  // A guest whose part of the policy failed gets no policy controls this cycle; the guard
  // still runs for it so that a due rollback happens anyway.
  const own: Controls = errored !== undefined || !controls ? NO_CONTROLS : controls;
  if (errored !== undefined && controls) {
    for (const [control, requested] of Object.entries(controls)) {
      // Quiet: the error itself is logged (once per policy) as policy_error.
      plan.notes.push({ entity: g.name, control, requested, verdict: 'veto', reasons: [`policy error in this guest's part: ${errored}`], quiet: true });
    }
  }
  const d = guardBalloon(
    {
      history: g.history,
      requested: own.balloon_target ?? undefined,
      stale: g.stale,
      state: g.guard,
      cycle,
      now,
      reportsFreePages: g.props.free_page_reporting === 1,
    },
    opts.safeguards,
  );
  const balloonsOff = opts.paused ?? opts.balloonsOff;
  if (balloonsOff !== undefined && (d.verdict === 'apply' || d.verdict === 'rollback')) {
    plan.notes.push({
      entity: g.name,
      control: 'balloon_target',
      requested: own.balloon_target ?? d.target,
      verdict: 'veto',
      reasons: [...d.reasons, `not applied: ${balloonsOff}`],
    });
  } else if (d.verdict === 'apply' || d.verdict === 'rollback') {
    plan.actions.push({ entity: g.name, guestId: g.id, control: 'balloon_target', from: d.from, to: d.target, reasons: d.reasons });
    plan.guard.set(g.id, { applied: d.next, otherwise: d.verdict === 'rollback' ? { ...g.guard, holdUntil: d.next.holdUntil } : g.guard });
  } else {
    if (own.balloon_target !== undefined && own.balloon_target !== null) {
      plan.notes.push({ entity: g.name, control: 'balloon_target', requested: own.balloon_target, verdict: d.verdict, reasons: d.reasons });
    }
    if (d.next !== g.guard) plan.guard.set(g.id, { applied: d.next, otherwise: d.next });
  }
  const latest = g.history.latest() ?? {};
  for (const control in own) {
    const requested = own[control];
    if (control === 'balloon_target' || requested === null || requested === undefined) continue;
    planKnob(g.name, g.id, 'guest', control, requested, latest, opts, plan);
  }
}

/**
 * Plan one cycle. `output` is the policy's result over exactly `guests` (null: no policy
 * loaded, or the evaluator threw). An aborted evaluation applies no policy control; the
 * safeguards' own rollbacks still happen.
 */
export function planCycle(
  cycle: number,
  now: number,
  host: HostEntity,
  guests: readonly GuestEntity[],
  output: PolicyOutput | null,
  opts: PlanOptions,
): CyclePlan {
  const plan: CyclePlan = {
    cycle,
    now,
    aborted: output?.aborted ?? false,
    errors: output?.errors ?? [],
    actions: [],
    notes: [],
    guestVars: new Map(),
    guard: new Map(),
  };
  const usable = output !== null && !output.aborted;
  if (usable) {
    plan.hostVars = output.host.vars;
    hostPlan(output.host.controls, host, opts, plan);
  }
  const errorsByGuest = new Map<string, string>();
  for (const e of plan.errors) {
    if (e.guest !== undefined && !errorsByGuest.has(e.guest)) {
      errorsByGuest.set(e.guest, e.line !== undefined ? `${e.line}:${e.col ?? 0}: ${e.message}` : e.message);
    }
  }
  // Results are matched to guests by name; the evaluator returns them in input order, which
  // makes the index a fast first guess.
  const results = usable ? output.guests : [];
  for (let i = 0; i < guests.length; i++) {
    const g = guests[i]!;
    let r: (typeof results)[number] | undefined = results[i];
    if (r && r.name !== g.name) r = results.find((x) => x.name === g.name);
    const errored = errorsByGuest.get(g.name);
    if (r && errored === undefined) plan.guestVars.set(g.id, r.vars);
    guestPlan(g, r?.controls, errored, cycle, now, opts, plan);
  }
  return plan;
}
