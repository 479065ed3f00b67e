// The pure half of a control cycle: from the entities' histories, the policy's output and the
// guard state, decide every action and why. No I/O, no clock, no randomness: the same inputs
// give the same plan, which is what makes replay and the simulator exact. The engine then
// hands the plan's actions to the controllers and commits the state that goes with them.
import type { Props, Stats } from '../types.js';
import type { Action, ControlModule, GuestModulePlan, PlanNote } from '../controls/control.js';
import type { SafeguardConfig } from '../controls/floor.js';
import type { History } from './history.js';
import type { Controls, PolicyErrorInfo, PolicyOutput, Vars } from './policy-port.js';

export interface GuestEntity {
  id: string;
  name: string;
  props: Props;
  history: History;
  vars: Vars;
  stale?: string;
  /** Each guest-planned module's state for this guest, by module name. */
  state: Record<string, unknown>;
}

export interface HostEntity {
  props: Props;
  history: History;
  vars: Vars;
}

export type Note = PlanNote;

/** A module's state for one guest, to keep once its actions' outcome is known. */
export interface StateCommit {
  guestId: string;
  module: string;
  /** The controls whose actions must all be applied for `applied` to be kept. */
  controls: readonly string[];
  commit: NonNullable<GuestModulePlan<unknown>['commit']>;
}

export interface CyclePlan {
  cycle: number;
  now: number;
  /** Planned by a guard pass between policy cycles (no policy evaluated). */
  guardPass?: boolean;
  aborted: boolean;
  errors: PolicyErrorInfo[];
  actions: Action[];
  notes: Note[];
  /** Variables to keep (absent: keep the old ones). */
  hostVars?: Vars;
  guestVars: Map<string, Vars>;
  commits: StateCommit[];
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
  /** The modules that plan guest by guest, in registry order. */
  guestPlanners: readonly PlannedControl[];
  /** Set when the driver must not be written to (read-only connection): the reason. */
  readOnly?: string;
  /** Set while control is paused (observe only): no control is applied; the reason. */
  paused?: string;
  /** A guard pass between policy cycles: modules do only what cannot wait. */
  guardPass?: boolean;
}

/** The controls of `modules` by name, and the guest-by-guest planners, for PlanOptions. */
export function plannedControls(modules: readonly PlannedControl[]): Pick<PlanOptions, 'controls' | 'guestPlanners'> {
  const controls = new Map<string, PlannedControl>();
  for (const p of modules) for (const c of p.module.controls) controls.set(c, p);
  return { controls, guestPlanners: modules.filter((p) => p.module.planGuest !== undefined && p.module.scope === 'guest') };
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
  // Planned guest by guest (planGuest), with its own notes.
  if (!p.module.guard) return;
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
  // Observe only means nothing is written, the host's knobs (KSM, cgroup limits) included.
  else if (opts.readOnly !== undefined)
    plan.notes.push({ entity, control, requested, verdict: 'veto', reasons: [...d.reasons, `not applied: ${opts.readOnly}`] });
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
  host: Stats,
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
  const off = opts.paused ?? opts.readOnly;
  for (const p of opts.guestPlanners) {
    const m = p.module;
    const r = m.planGuest!({
      id: g.id,
      name: g.name,
      props: g.props,
      history: g.history,
      stale: g.stale,
      requested: own,
      state: g.state[m.name],
      cycle,
      now,
      off: p.on ? off : m.offReason,
      safeguards: opts.safeguards,
      guardPass: opts.guardPass,
      host,
    });
    for (const a of r.actions) plan.actions.push(a);
    // A module its config turns off says so quietly, as a knob's does (planKnob): a shipped
    // policy may ask every cycle for a control the operator has not turned on.
    for (const n of r.notes) plan.notes.push(p.on ? n : { ...n, quiet: true });
    if (r.commit) plan.commits.push({ guestId: g.id, module: m.name, controls: m.controls, commit: r.commit });
  }
  const latest = g.history.latest() ?? {};
  for (const control in own) {
    const requested = own[control];
    if (requested === null || requested === undefined) continue;
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
    guardPass: opts.guardPass,
    aborted: output?.aborted ?? false,
    errors: output?.errors ?? [],
    actions: [],
    notes: [],
    guestVars: new Map(),
    commits: [],
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
  const hostLatest = host.history.latest() ?? {};
  for (let i = 0; i < guests.length; i++) {
    const g = guests[i]!;
    let r: (typeof results)[number] | undefined = results[i];
    if (r && r.name !== g.name) r = results.find((x) => x.name === g.name);
    const errored = errorsByGuest.get(g.name);
    if (r && errored === undefined) plan.guestVars.set(g.id, r.vars);
    guestPlan(g, hostLatest, r?.controls, errored, cycle, now, opts, plan);
  }
  return plan;
}
