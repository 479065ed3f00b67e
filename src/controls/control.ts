// What every control shares: the actions the guard lets through, the controllers that carry
// them out (one outcome per action; a controller never throws, so one bad guest or a
// read-only sysfs cannot stop the loop), and the ControlModule each control's folder exports.
import type { Config } from '../config/schema.js';
import { failureKind, type FailureKind } from '../errors.js';
import type { SafeguardConfig } from './balloon/floor.js';
import type { Logger } from '../log/logger.js';
import type { CgroupBackend, GuestSample, Hypervisor, KsmBackend, Stats } from '../types.js';

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

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
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

/** What a control module may use to build its actuator. */
export interface ControlEnv {
  hypervisor: Hypervisor;
  ksm?: KsmBackend;
  cgroup?: CgroupBackend;
  /** The simulated world, on the simulated host. */
  simWorld?: unknown;
  /** The latest sample of a guest, by driver id. */
  lookup(guestId: string): GuestSample | undefined;
  log: Logger;
}

/** A control module at work: its actuator and the hooks the loop calls. */
export interface ControlInstance {
  controller: Controller;
  /** Every host sample (a host control learns the values in force). */
  learnHost?(host: Stats): void;
  /** Fields this control adds to a guest's sample (what is in force), when it knows them
   *  (synchronous: a thousand guests a collection, no promise each); undefined: read them. */
  guestFields?(guest: GuestSample): Stats | undefined;
  /** Reads the fields guestFields did not know (at most 16 guests at a time). */
  readGuestFields?(guest: GuestSample): Promise<Stats>;
  /** At daemon start: note what `restore` will put back. */
  remember?(): Promise<void>;
  /** At daemon stop: put back what it changed (when its config asks). */
  restore?(): Promise<string | undefined>;
}

/**
 * One kind of control (KSM knobs, cgroup limits, CPU tuning ...): the policy controls it
 * reads, its config section, its safeguard, its actuator and its restore. The registry
 * (registry.ts) lists them; the loop, the daemon and the config iterate it. balloon_target is
 * not one of them: its guard keeps state across cycles (floors, steps, rollbacks) and is the
 * engine's own (src/engine/safeguards.ts); its actuator is src/controls/balloon/.
 */
export interface ControlModule {
  readonly name: string;
  /** Host controls (`Host.Control`) or guest controls (`guest.Control`). */
  readonly scope: 'host' | 'guest';
  /** The policy control names it carries out. */
  readonly controls: readonly string[];
  /** Whether the config lets policies drive it (the daemon asks; default: on). */
  enabled?(config: Config): boolean;
  /** Said (quietly) when a policy sets one of its controls while it is off. */
  readonly offReason: string;
  /** Its actuator with these backends, or why it cannot run here. */
  setup(env: ControlEnv, config?: Config): ControlInstance | string;
  /** Check one requested value against the entity's latest sample. */
  guard(control: string, requested: unknown, latest: Stats, safeguards: SafeguardConfig): KnobDecision;
}
