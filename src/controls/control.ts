// What every control shares: the actions the guard lets through, the controllers that carry
// them out (one outcome per action; a controller never throws, so one bad guest or a
// read-only sysfs cannot stop the loop), and the ControlModule each control's folder exports:
// everything about one mechanism (config section, backend, guard, per-guest state, restore)
// lives in its folder, and the loop reaches it only through this interface.
import type { ZodType } from 'zod';
import type { History } from '../engine/history.js';
import { errorMessage, failureKind, type FailureKind } from '../errors.js';
import type { SafeguardConfig } from './floor.js';
import type { Logger } from '../log/logger.js';
import type { GuestSample, Hypervisor, Props, Stats } from '../types.js';

/** 'deferred': not tried, because the same control failed recently and is backing off. */
export type ActionResult = 'applied' | 'unchanged' | 'failed' | 'dropped' | 'deferred';

export interface Action {
  /** 'host' or the guest's name. */
  entity: string;
  /** The driver's key for the guest (absent for host actions). */
  guestId?: string;
  control: string;
  /** Value before (when known). */
  from: number | null;
  /** Value to set; null removes a limit (cgroup). */
  to: number | null;
  /** Why: the policy's request and everything the guard did to it. */
  reasons: string[];
}

export interface ActionOutcome {
  action: Action;
  result: ActionResult;
  error?: string;
  /** How it failed (src/errors.ts): the loop retries, drops or stops asking by this. */
  kind?: FailureKind;
}

/** The outcome of an action whose call threw: dropped when the guest is gone, else failed, with the kind. */
export function failedOutcome(action: Action, err: unknown, gone = false): ActionOutcome {
  const kind = gone ? 'gone' : failureKind(err);
  return { action, result: kind === 'gone' ? 'dropped' : 'failed', error: kind === 'gone' ? `guest vanished: ${errorMessage(err)}` : errorMessage(err), kind };
}

export interface ActuationContext {
  /** True when the guest vanished after the plan was made (lifecycle event or failed lookup). */
  isGone(guestId: string): boolean;
}

export interface Controller {
  readonly name: string;
  /** The controls this controller carries out. */
  readonly controls: readonly string[];
  apply(actions: readonly Action[], ctx: ActuationContext): Promise<ActionOutcome[]>;
  /** Called when a guest is gone for good: forget what was cached about it. */
  forget?(guestId: string): void;
}

/** Run `fn` over `items` with at most `limit` in flight (drivers pipeline requests; a
 *  thousand concurrent RPCs would only queue in the socket). */
export async function mapLimited<T, R>(items: readonly T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** A guard's verdict on one requested control value. */
export interface KnobDecision {
  control: string;
  requested: unknown;
  verdict: 'apply' | 'veto';
  value: number | null;
  reasons: string[];
}

/** A decision that did not become an action (skipped, vetoed, ignored), kept for the log. */
export interface PlanNote {
  entity: string;
  control: string;
  requested: unknown;
  verdict: 'skip' | 'veto' | 'ignored';
  reasons: string[];
  /** Expected every cycle (a controller turned off by config): logged at debug only. */
  quiet?: boolean;
}

/** What a control module may use to build its actuator. */
export interface ControlEnv {
  /** The driver; what it can do beyond the balloon is in `hypervisor.capabilities`. */
  hypervisor: Hypervisor;
  /** Set when the driver's connection is read-only (observe only): the reason. */
  readOnly?: string;
  /** A directory for state that must outlive a crash of the daemon (its runtime directory,
   *  /run/ballast for root); unset: nothing is kept. */
  stateDir?: string;
  /** The latest sample of a guest, by driver id (the collection in progress first). */
  lookup(guestId: string): GuestSample | undefined;
  log: Logger;
}

/** One guest as a module's restore sees it at stop: its latest sample and the module's state. */
export interface GuestAtStop<S = unknown> {
  id: string;
  name: string;
  stats: Stats;
  state: S | undefined;
}

/** A control module at work: its actuator and the hooks the loop calls. */
export interface ControlInstance<S = unknown> {
  controller: Controller;
  /** Every host sample (a host control learns the values in force). */
  learnHost?(host: Stats): void;
  /** Fields this control adds to a guest's sample (what is in force), when it knows them
   *  (synchronous: a thousand guests a collection, no promise each); undefined: read them. */
  guestFields?(guest: GuestSample): Stats | undefined;
  /** Reads the fields guestFields did not know (at most 16 guests at a time). */
  readGuestFields?(guest: GuestSample): Promise<Stats>;
  /** Whether this control holds the guest below what it could have (a balloon inflated, a
   *  device unplugged, a limit set), from its latest sample: while any guest is held the loop
   *  keeps its full cadence, so a guest that needs its memory back gets it at once. */
  holds?(guestId: string, latest: Stats): boolean;
  /** At daemon start: note what `restore` will put back. */
  remember?(): Promise<void>;
  /** At daemon stop: put back what it changed (when its config asks); returns what it did. */
  restore?(guests: readonly GuestAtStop<S>[]): Promise<string | undefined>;
}

/** What a module's planner sees of one guest in one cycle. Pure data: no I/O. */
export interface GuestPlanInput<S> {
  id: string;
  name: string;
  props: Props;
  history: History;
  /** Set when the latest sample is not fresh: the reason. */
  stale?: string;
  /** The policy's requests for this module's controls (absent: not asked, or this guest's part
   *  of the policy failed). */
  requested: Readonly<Record<string, unknown>>;
  /** This module's state for the guest from earlier cycles (undefined: a new guest). */
  state: S | undefined;
  cycle: number;
  now: number;
  /** Set when nothing may be applied this cycle (paused, read-only driver): the reason. */
  off?: string;
  safeguards: SafeguardConfig;
  /** The host's (or its memory domain's) latest sample: what taking memory costs it. */
  host?: Stats;
  /** A guard pass between policy cycles (no policy evaluated): do only what cannot wait for
   *  the next cycle. */
  guardPass?: boolean;
}

/** A module's plan for one guest: actions, notes, and the state to keep. */
export interface GuestModulePlan<S> {
  actions: Action[];
  notes: PlanNote[];
  /** Keep `applied` when every action of this plan was applied, else `otherwise`; absent: keep the old state. */
  commit?: { applied: S; otherwise: S };
}

/** A guest module guard's decision on one control, as planFromGuard takes it. */
export interface GuardDecision<S> {
  verdict: 'apply' | 'skip' | 'veto';
  from: number | null;
  to: number | null;
  reasons: string[];
  /** State to keep when the action is applied (or at once, when there is none). */
  next: S;
  /** ... and when it is not; absent: the state before. */
  otherwise?: S;
}

/** A guard's decision as the module's plan for one guest: the action, with the state to keep by
 *  its outcome, when it applies and the cycle may act; otherwise a note of why (for a request,
 *  or a veto) and the guard's new state. */
export function planFromGuard<S>(inp: GuestPlanInput<S>, control: string, requested: unknown, st: S, d: GuardDecision<S>): GuestModulePlan<S> {
  const out: GuestModulePlan<S> = { actions: [], notes: [] };
  if (d.verdict === 'apply' && inp.off === undefined) {
    out.actions.push({ entity: inp.name, guestId: inp.id, control, from: d.from, to: d.to, reasons: d.reasons });
    out.commit = { applied: d.next, otherwise: d.otherwise ?? st };
  } else if (d.verdict === 'apply') {
    out.notes.push({ entity: inp.name, control, requested: requested ?? d.to, verdict: 'veto', reasons: [...d.reasons, `not applied: ${inp.off}`] });
  } else {
    if ((requested !== undefined && requested !== null) || d.verdict === 'veto')
      out.notes.push({ entity: inp.name, control, requested: requested ?? null, verdict: d.verdict, reasons: d.reasons });
    if (d.next !== st) out.commit = { applied: d.next, otherwise: d.next };
  }
  return out;
}

/** Where and when a sample was taken, and the safeguards in force. */
export interface ObserveContext {
  guest: string;
  time: number;
  safeguards: SafeguardConfig;
}

/** What observing a new sample gives: the module's new state and, once, something to say. */
export interface Observation<S> {
  state: S;
  warn?: { event: string; fields: Record<string, unknown> };
}

/** An action that gives the guest more (a larger size, a limit lifted): it relieves the guest,
 *  so a failure's backoff never holds it back. */
export function raisesGuest(a: Action): boolean {
  return a.to === null || (a.from !== null && a.to > a.from);
}

/** A zod schema for a module's top-level config table, and its name there. */
export interface ControlSection<T> {
  key: string;
  schema: ZodType<T>;
}

/**
 * One mechanism (balloon, KSM knobs, cgroup limits, CPU tuning ...): the policy controls it
 * carries out, its config section, how it plans and guards them, its actuator and its
 * restore. The registry (registry.ts) lists them; the loop, the daemon and the config iterate
 * it and never name one. A module plans its controls either knob by knob (`guard`: a
 * stateless check of one requested value) or guest by guest (`planGuest`: every cycle, asked
 * or not, with per-guest state that the loop commits according to the actions' outcome).
 */
export interface ControlModule<C = unknown, S = unknown> {
  readonly name: string;
  /** Host controls (`Host.Control`) or guest controls (`guest.Control`). */
  readonly scope: 'host' | 'guest';
  /** The policy control names it carries out. */
  readonly controls: readonly string[];
  /** Its config table (given to `enabled` and `setup`, and nothing else of the config). */
  readonly section?: ControlSection<C>;
  /** Whether its section lets policies drive it (default: on). */
  enabled?(section: C): boolean;
  /** Said (quietly) when a policy sets one of its controls while it is off. */
  readonly offReason: string;
  /** Its actuator on this host, built from what the driver offers, or why it cannot run here. */
  setup(env: ControlEnv, section: C): ControlInstance<S> | string;
  /** Check one requested value against the entity's latest sample (knob-by-knob modules). */
  guard?(control: string, requested: unknown, latest: Stats, safeguards: SafeguardConfig): KnobDecision;
  /** Plan this module's controls for one guest, every cycle (guest-by-guest modules). */
  planGuest?(input: GuestPlanInput<S>): GuestModulePlan<S>;
  /** A new fresh sample of a guest (the previous one, if any): the state it leads to. */
  observe?(state: S | undefined, prev: Stats | undefined, cur: Stats, ctx: ObserveContext): Observation<S> | undefined;
  /** What it shows of a guest's state in the views (API, metrics, dashboard). */
  view?(state: S): Record<string, unknown>;
  /** True when an action hands memory back to the guest: never held back by a failure's backoff. */
  givesBack?(action: Action): boolean;
}
