// The actuate step: each planned action to the controller of its control, in one batch per
// controller; a control that failed recently waits (backoff.ts) unless its module says the
// action gives memory back. Then each module's per-guest state is committed by the outcome:
// what it planned to keep if its actions were applied, or what to keep otherwise.
import { errorMessage } from '../errors.js';
import type { Action, ActionOutcome, ControlModule, Controller } from '../controls/control.js';
import { Backoff } from './backoff.js';
import type { CyclePlan, GuestEntity } from './cycle.js';

export class Actuator {
  private readonly backoff: Backoff;

  constructor(
    private readonly controllers: ReadonlyMap<string, Controller>,
    modules: ReadonlyMap<string, ControlModule>,
  ) {
    this.backoff = new Backoff((a: Action) => modules.get(a.control)?.givesBack?.(a) ?? false);
  }

  async run(plan: CyclePlan, isGone: (guestId: string) => boolean): Promise<ActionOutcome[]> {
    const byController = new Map<Controller, Action[]>();
    const outcomes: ActionOutcome[] = [];
    for (const a of plan.actions) {
      const deferred = this.backoff.defer(a, plan.now);
      if (deferred) {
        outcomes.push(deferred);
        continue;
      }
      const c = this.controllers.get(a.control);
      if (!c) {
        outcomes.push({ action: a, result: 'failed', error: `no controller for ${a.control}` });
        continue;
      }
      const list = byController.get(c);
      if (list) list.push(a);
      else byController.set(c, [a]);
    }
    const ctx = { isGone };
    for (const [c, actions] of byController) {
      try {
        outcomes.push(...(await c.apply(actions, ctx)));
      } catch (err) {
        // Controllers report failures as outcomes; a throw is a bug, but still not fatal.
        for (const a of actions) outcomes.push({ action: a, result: 'failed', error: `${c.name} controller: ${errorMessage(err)}` });
      }
    }
    for (const o of outcomes) this.backoff.update(o, plan.now);
    return outcomes;
  }

  /** A guest that left: its backoffs go with it. */
  forget(entity: string): void {
    this.backoff.forget(entity);
  }
}

/** Keep each module's planned state for its guest: `applied` when all its actions for that guest were applied. */
export function commitStates(plan: CyclePlan, outcomes: readonly ActionOutcome[], guests: ReadonlyMap<string, GuestEntity>): void {
  if (plan.commits.length === 0) return;
  const failed = new Set<string>();
  const applied = new Set<string>();
  for (const o of outcomes) {
    if (!o.action.guestId) continue;
    const key = `${o.action.guestId}\0${o.action.control}`;
    if (o.result === 'applied') applied.add(key);
    else failed.add(key);
  }
  for (const c of plan.commits) {
    const g = guests.get(c.guestId);
    if (!g) continue;
    let ok = false;
    for (const control of c.controls) {
      const key = `${c.guestId}\0${control}`;
      if (failed.has(key)) {
        ok = false;
        break;
      }
      if (applied.has(key)) ok = true;
    }
    g.state[c.module] = ok ? c.commit.applied : c.commit.otherwise;
  }
}
