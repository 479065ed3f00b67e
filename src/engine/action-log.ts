// The record step: every action's outcome, veto and policy error goes to the structured log
// (said once while it repeats: log-once.ts) and to a ring of recent records for the API and
// views, and into the counters. On a big host a line per action is megabytes a minute: past
// SUMMARY_OVER applied actions in a cycle they go to debug and one cycle_summary says what
// happened.
import type { ActionOutcome } from '../controls/control.js';
import type { Logger } from '../log/logger.js';
import type { CyclePlan } from './cycle.js';
import { LogOnce } from './log-once.js';
import type { PolicyErrorInfo } from './policy-port.js';
import type { ActionRecord, Counters } from './reports.js';

/** Applied actions in one cycle above which each is logged at debug and the cycle summarized at info. */
export const SUMMARY_OVER = 16;

export function fmtPolicyError(e: PolicyErrorInfo): string {
  const where = e.line !== undefined ? `${e.line}:${e.col ?? 0}: ` : '';
  return `${where}${e.guest ? `[${e.guest}] ` : ''}${e.message}`;
}

const keyOf = (entity: string, control: string) => `${entity}\0${control}`;

export class ActionLog {
  private readonly recent: ActionRecord[] = [];
  private recentHead = 0;
  /** entity+control -> the error its last action failed with. */
  private readonly failing = new LogOnce();
  /** entity+control -> the reasons of its last veto. */
  private readonly vetoed = new LogOnce();
  /** Policy errors said since the policy was set. */
  private readonly policyErrors = new LogOnce();

  constructor(
    private readonly log: Logger,
    private readonly counters: Counters,
    private readonly recentMax: number,
  ) {}

  /** A new policy: its errors are said again. */
  policyChanged(): void {
    this.policyErrors.clear();
  }

  /** A guest that left: what was said about it may be said again if it comes back. */
  forgetEntity(name: string): void {
    this.failing.forgetPrefix(`${name}\0`);
    this.vetoed.forgetPrefix(`${name}\0`);
  }

  /** The policy's errors of this cycle: an abort at error once, each error at warn once per policy and guest. */
  policyOutcome(plan: CyclePlan, evaluated: boolean): void {
    if (!evaluated) return;
    if (plan.aborted) {
      this.counters.abortedEvaluations++;
      const errors = plan.errors.map(fmtPolicyError);
      const first = this.policyErrors.first(`\0aborted\0${errors.join('\0')}`);
      this.log.log(first ? 'error' : 'debug', 'policy_aborted', {
        cycle: plan.cycle,
        reason: 'evaluation aborted: nothing from the policy is applied',
        errors,
        repeated: first ? undefined : true,
      });
    }
    for (const e of plan.errors) {
      this.counters.policyErrors++;
      if (plan.aborted) continue;
      const first = this.policyErrors.first(`${e.guest ?? ''}\0${e.line}:${e.col}\0${e.message}`);
      this.log.log(first ? 'warn' : 'debug', 'policy_error', {
        cycle: plan.cycle,
        guest: e.guest,
        line: e.line,
        col: e.col,
        error: e.message,
        repeated: first ? undefined : true,
      });
    }
  }

  /** Every outcome and note of a cycle. */
  record(plan: CyclePlan, outcomes: readonly ActionOutcome[]): void {
    const applied = outcomes.filter((o) => o.result === 'applied').length;
    const summarize = applied > SUMMARY_OVER;
    for (const o of outcomes) this.outcome(plan, o, summarize);
    if (summarize) this.summarize(plan, outcomes);
    for (const n of plan.notes) {
      if (n.verdict === 'veto' && !n.quiet) {
        this.counters.vetoes++;
        this.remember({
          cycle: plan.cycle,
          time: plan.now,
          entity: n.entity,
          control: n.control,
          requested: n.requested,
          from: null,
          to: null,
          result: 'veto',
          reasons: n.reasons,
        });
        // The same veto for the same reason every cycle is said once (again when it changes).
        const repeated = !this.vetoed.first(keyOf(n.entity, n.control), n.reasons.join('; '));
        this.log.log(repeated ? 'debug' : 'info', 'veto', {
          cycle: plan.cycle,
          entity: n.entity,
          control: n.control,
          requested: n.requested,
          reason: n.reasons,
          repeated: repeated || undefined,
        });
      } else {
        this.log.debug(n.verdict, { cycle: plan.cycle, entity: n.entity, control: n.control, requested: n.requested, reason: n.reasons });
      }
    }
  }

  private outcome(plan: CyclePlan, o: ActionOutcome, summarize: boolean): void {
    const a = o.action;
    if (o.result === 'unchanged') return;
    if (o.result === 'deferred') {
      // Counted, not kept: a control backing off would fill the recent actions every cycle.
      this.counters.deferred++;
      this.log.debug('action_deferred', { cycle: plan.cycle, entity: a.entity, control: a.control, to: a.to, error: o.error });
      return;
    }
    this.remember({
      cycle: plan.cycle,
      time: plan.now,
      entity: a.entity,
      control: a.control,
      from: a.from,
      to: a.to,
      result: o.result,
      reasons: a.reasons,
      error: o.error,
      guardPass: plan.guardPass,
    });
    const fields = {
      cycle: plan.cycle,
      // Taken by the guards between policy cycles, on a newer sample than cycle `cycle` saw.
      guard_pass: plan.guardPass,
      entity: a.entity,
      control: a.control,
      from: a.from,
      to: a.to,
      result: o.result,
      error: o.error,
      kind: o.kind,
      reason: a.reasons,
    };
    const key = keyOf(a.entity, a.control);
    if (o.result === 'applied') {
      this.failing.forget(key);
      this.vetoed.forget(key);
      this.counters.actionsApplied++;
      if (a.reasons[0]?.startsWith('rollback')) {
        this.counters.rollbacks++;
        this.log.warn('rollback', fields);
      } else this.log.log(summarize ? 'debug' : 'info', 'action', fields);
    } else if (o.result === 'dropped') {
      this.counters.dropped++;
      this.log.info('action_dropped', fields);
    } else {
      this.counters.controllerErrors++;
      // A control that keeps failing the same way (EBUSY every cycle, a driver refusing a
      // guest) is logged at error once, then at debug until it succeeds or fails otherwise.
      const again = !this.failing.first(key, o.error ?? '');
      this.log.log(again ? 'debug' : 'error', 'action_failed', again ? { ...fields, repeated: true } : fields);
    }
  }

  private summarize(plan: CyclePlan, outcomes: readonly ActionOutcome[]): void {
    const counts: Record<string, number> = {};
    for (const o of outcomes) if (o.result !== 'unchanged') counts[`${o.action.control}:${o.result}`] = (counts[`${o.action.control}:${o.result}`] ?? 0) + 1;
    const moves = outcomes
      .filter((o) => o.result === 'applied' && typeof o.action.from === 'number' && typeof o.action.to === 'number')
      .sort((x, y) => Math.abs((y.action.to as number) - (y.action.from as number)) - Math.abs((x.action.to as number) - (x.action.from as number)))
      .slice(0, 5)
      .map((o) => ({ entity: o.action.entity, control: o.action.control, from: o.action.from, to: o.action.to }));
    this.log.info('cycle_summary', {
      cycle: plan.cycle,
      actions: counts,
      biggest: moves,
      vetoes: plan.notes.filter((n) => n.verdict === 'veto' && !n.quiet).length,
      reason: `more than ${SUMMARY_OVER} actions: each is logged at debug`,
    });
  }

  private remember(rec: ActionRecord): void {
    // A ring: at 1,000 guests a cycle can add hundreds of records.
    if (this.recent.length < this.recentMax) this.recent.push(rec);
    else {
      this.recent[this.recentHead] = rec;
      this.recentHead = (this.recentHead + 1) % this.recentMax;
    }
  }

  /** Recent action records, oldest first. */
  recentActions(): ActionRecord[] {
    return this.recentHead === 0 ? [...this.recent] : [...this.recent.slice(this.recentHead), ...this.recent.slice(0, this.recentHead)];
  }
}
