// The control loop's state and its two steps: collect (host sources and all guests in one
// batch, into per-entity history) and evaluateAndAct (evaluate the policy, guard, actuate,
// record). Nothing here throws out of a step: policy, controller, driver and source errors are
// counted and logged, and the loop goes on.
import { addReturn, ineffective, inflationStep, type BalloonReturn } from './balloon-return.js';
import type { CgroupBackend, GuestSample, HostSource, Hypervisor, KsmBackend, LifecycleEvent, Props, Stats } from '../types.js';
import { BalloonController } from '../controls/balloon/controller.js';
import { failureKind } from '../errors.js';
import {
  errorMessage,
  mapLimited,
  type Action,
  type ActionOutcome,
  type ControlEnv,
  type ControlInstance,
  type ControlModule,
  type Controller,
} from '../controls/control.js';
import { CONTROLS } from '../controls/registry.js';
import type { Config } from '../config/schema.js';
import { nullLogger, type Logger } from '../log/logger.js';
import { Backoff } from './backoff.js';
import { History } from './history.js';
import { planCycle, plannedControls, type CyclePlan, type GuestEntity, type HostEntity, type PlannedControl } from './cycle.js';
import type { EntityInput, EvaluateFn, EvaluateOptions, PolicyErrorInfo, PolicyOutput } from './policy-port.js';
import { defaultSafeguards, type SafeguardConfig } from './safeguards.js';
import { evaluatePolicy, type CompiledPolicy } from './policy-adapter.js';

/** Applied actions in one cycle above which each is logged at debug and the cycle summarized at info. */
export const SUMMARY_OVER = 16;

/** The hypervisor's entry among the failing sources (no host source has this name). */
const HYPERVISOR_KEY = '\0hypervisor';

export interface EngineOptions<P = CompiledPolicy> {
  hypervisor: Hypervisor;
  hostSources: HostSource[];
  ksm?: KsmBackend;
  cgroup?: CgroupBackend;
  /** The compiled policy; null runs the loop without one (collect, safeguards only). */
  policy: P | null;
  /** How to evaluate `policy`. Default: src/policy's evaluate (P must then be its CompiledPolicy). */
  evaluate?: EvaluateFn<P>;
  evaluateOptions?: EvaluateOptions;
  historyLength?: number;
  safeguards?: Partial<SafeguardConfig>;
  /** The control modules (default: the registry, src/controls/registry.ts). */
  controls?: readonly ControlModule[];
  /** Modules turned off by name (the daemon fills it from each module's config section). */
  disabled?: ReadonlySet<string>;
  /** The simulated world, for modules with a simulated counterpart. */
  simWorld?: unknown;
  /** The daemon's config, for what modules read of their own sections (restore on exit). */
  config?: Config;
  /** Never set balloons (observe only); the reason is logged with every vetoed target. */
  balloonsOff?: string;
  logger?: Logger;
  /** Seconds; the simulator passes its simulated clock. Default: wall clock. */
  now?: () => number;
  /** Action records kept for views and the API. */
  recentActions?: number;
  /** Receives each evaluation's exact input and output (replay, `ballast policy eval`).
   *  Called synchronously; the arrays it gets are not copied, so serialize them at once. */
  recorder?: (rec: EvaluationRecord) => void;
}

export type { ActionRecord, CollectReport, Counters, CycleReport, EngineSnapshot, EvaluationRecord, GuestView } from './reports.js';
import type { ActionRecord, CollectReport, Counters, CycleReport, EngineSnapshot, EvaluationRecord } from './reports.js';

const GONE_EVENTS = new Set(['stopped', 'destroyed', 'crashed', 'undefined']);

export class Engine<P = CompiledPolicy> {
  private policyValue: P | null;
  private readonly evaluateFn: EvaluateFn<P>;
  private readonly hypervisor: Hypervisor;
  private readonly sources: HostSource[];
  private sg: SafeguardConfig;
  private readonly historyLength: number;
  private readonly log: Logger;
  private readonly clock: () => number;
  private readonly host: HostEntity;
  private hostStale?: string;
  private readonly sourceStats = new Map<string, Stats>();
  private readonly guests = new Map<string, GuestEntity>();
  private readonly samples = new Map<string, GuestSample>();
  /** The samples of the collection being merged (see the control env's lookup). */
  private collecting: Map<string, GuestSample> | null = null;
  /** Guests reported gone by a lifecycle event since the last collection. */
  private readonly gone = new Set<string>();
  private readonly balloon: BalloonController;
  /** The control modules at work (setup succeeded), in registry order. */
  readonly controlInstances: { module: ControlModule; instance: ControlInstance }[] = [];
  private readonly planned: Map<string, PlannedControl>;
  private readonly controllerByControl = new Map<string, Controller>();
  private readonly recent: ActionRecord[] = [];
  private readonly recentMax: number;
  private recentHead = 0;
  private cycleNo = 0;
  private unsubscribe?: () => void;
  private readonly cycleListeners = new Set<(r: CycleReport) => void>();
  private readonly collectListeners = new Set<(r: CollectReport) => void>();
  private readonly recorder?: (rec: EvaluationRecord) => void;
  /** entity+control -> the error its last action failed with (repeats go to debug). */
  private readonly failing = new Map<string, string | undefined>();
  /** Controls backing off after a failure. */
  private readonly backoff = new Backoff();
  /** Policy errors already logged at warn since the policy was set (repeats go to debug). */
  private readonly seenPolicyErrors = new Set<string>();
  readonly counters: Counters = {
    collections: 0,
    cycles: 0,
    policyErrors: 0,
    abortedEvaluations: 0,
    controllerErrors: 0,
    driverErrors: 0,
    sourceErrors: 0,
    actionsApplied: 0,
    vetoes: 0,
    rollbacks: 0,
    dropped: 0,
    deferred: 0,
    guestsAppeared: 0,
    guestsVanished: 0,
  };
  private readonly evalOpts?: EvaluateOptions;
  private readonly balloonsOff?: string;

  constructor(opts: EngineOptions<P>) {
    this.hypervisor = opts.hypervisor;
    this.sources = opts.hostSources;
    this.policyValue = opts.policy;
    this.evaluateFn = opts.evaluate ?? (evaluatePolicy as unknown as EvaluateFn<P>);
    this.evalOpts = opts.evaluateOptions;
    this.sg = { ...defaultSafeguards, ...opts.safeguards };
    this.historyLength = opts.historyLength ?? 10;
    this.log = opts.logger ?? nullLogger;
    this.clock = opts.now ?? (() => Date.now() / 1000);
    this.recentMax = opts.recentActions ?? 200;
    this.host = { props: { name: 'host' }, history: new History(this.historyLength), vars: {} };
    this.balloon = new BalloonController(this.hypervisor);
    for (const c of this.balloon.controls) this.controllerByControl.set(c, this.balloon);
    // Every registry module sets itself up with what this host has; one that cannot (no
    // backend, no driver support) or that the config turns off still plans, as vetoes.
    const env: ControlEnv = {
      hypervisor: this.hypervisor,
      ksm: opts.ksm,
      cgroup: opts.cgroup,
      simWorld: opts.simWorld,
      // The collection in progress first: modules read their fields (e.g. cputune's cpu.max
      // through QEMU's pid) before its samples replace the last ones, and a new guest has none.
      lookup: (id) => this.collecting?.get(id) ?? this.samples.get(id),
      log: this.log,
    };
    const planned: PlannedControl[] = [];
    for (const module of opts.controls ?? CONTROLS) {
      const made = module.setup(env, opts.config);
      const on = typeof made !== 'string' && !opts.disabled?.has(module.name);
      planned.push({ module, on });
      if (typeof made === 'string') continue;
      this.controlInstances.push({ module, instance: made });
      for (const c of made.controller.controls) this.controllerByControl.set(c, made.controller);
    }
    this.planned = plannedControls(planned);
    this.balloonsOff = opts.balloonsOff;
    this.recorder = opts.recorder;
    if (this.hypervisor.onEvent) this.unsubscribe = this.hypervisor.onEvent((e) => this.onLifecycle(e));
  }

  get policy(): P | null {
    return this.policyValue;
  }

  /** Observe only (collect, evaluate, guard; apply nothing) while set: the reason; undefined resumes. */
  pausedReason?: string;

  setPolicy(p: P | null): void {
    this.policyValue = p;
    this.seenPolicyErrors.clear();
  }

  get cycle(): number {
    return this.cycleNo;
  }

  get safeguards(): Readonly<SafeguardConfig> {
    return this.sg;
  }

  /** New safeguards (a reloaded config), in force from the next cycle. */
  setSafeguards(sg: SafeguardConfig): void {
    this.sg = { ...sg };
  }

  /** Stop listening to the driver's events. The engine owns no timers or connections. */
  dispose(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  private onLifecycle(e: LifecycleEvent): void {
    if (!GONE_EVENTS.has(e.kind)) return;
    const g = this.guests.get(e.id);
    this.gone.add(e.id);
    if (g) this.dropGuest(g, `lifecycle event: ${e.kind}`);
  }

  private dropGuest(g: GuestEntity, why: string): void {
    for (const k of this.failing.keys()) if (k.startsWith(`${g.name}\0`)) this.failing.delete(k);
    for (const k of this.vetoed.keys()) if (k.startsWith(`${g.name}\0`)) this.vetoed.delete(k);
    this.backoff.forget(g.name);
    this.guests.delete(g.id);
    this.samples.delete(g.id);
    for (const { instance } of this.controlInstances) instance.controller.forget?.(g.id);
    this.counters.guestsVanished++;
    this.log.info('guest_vanished', { guest: g.name, id: g.id, reason: why });
  }

  /** One batch: every host source and the hypervisor's guests, concurrently. */
  async collect(): Promise<CollectReport> {
    const time = this.clock();
    const report: CollectReport = { time, guests: 0, appeared: [], vanished: [], errors: [] };
    const [guestRes, ...sourceRes] = await Promise.allSettled([this.hypervisor.collect(), ...this.sources.map((s) => s.collect())]);
    this.counters.collections++;

    // Host: merge every source's fields; a failing source keeps its last good values and
    // marks the host sample stale with the reason.
    const staleReasons: string[] = [];
    const merged: Stats = {};
    this.sources.forEach((src, i) => {
      const r = sourceRes[i]!;
      if (r.status === 'fulfilled') {
        this.sourceStats.set(src.name, r.value);
        this.noteRecovered(src.name, 'source_recovered', { source: src.name });
      } else {
        this.counters.sourceErrors++;
        const error = errorMessage(r.reason);
        const msg = `host source ${src.name}: ${error}`;
        staleReasons.push(msg);
        report.errors.push(msg);
        if (this.noteFailing(src.name, error, time)) {
          this.log.warn('source_error', {
            source: src.name,
            error,
            reason: 'its last good values stay in the host sample; logged again when it recovers or the error changes',
          });
        }
      }
      const s = this.sourceStats.get(src.name);
      if (s) Object.assign(merged, s);
    });
    this.hostStale = staleReasons.length ? staleReasons.join('; ') : undefined;
    if (this.sources.length > 0) {
      this.host.history.push(merged, time);
      for (const { instance } of this.controlInstances) instance.learnHost?.(merged);
    }

    if (guestRes!.status === 'rejected') {
      // Keep every guest and its history; mark them stale so nothing inflates on old data.
      this.counters.driverErrors++;
      const error = errorMessage(guestRes!.reason);
      const msg = `hypervisor ${this.hypervisor.name}: ${error}`;
      report.errors.push(msg);
      if (this.noteFailing(HYPERVISOR_KEY, error, time)) {
        this.log.error('collect_error', {
          hypervisor: this.hypervisor.name,
          error,
          kind: failureKind(guestRes!.reason),
          reason: 'guests are stale (nothing inflates) until it answers; logged again when it recovers or the error changes',
        });
      }
      for (const g of this.guests.values()) g.stale = msg;
      report.guests = this.guests.size;
      this.notifyCollect(report);
      return report;
    }
    this.noteRecovered(HYPERVISOR_KEY, 'collect_recovered', { hypervisor: this.hypervisor.name });
    this.gone.clear();
    this.collecting = new Map(guestRes!.value.map((s) => [s.id, s]));
    try {
      await this.addControlFields(guestRes!.value);
    } finally {
      this.collecting = null;
    }
    const seen = new Set<string>();
    for (const sample of guestRes!.value) {
      seen.add(sample.id);
      let g = this.guests.get(sample.id);
      if (!g) {
        g = { id: sample.id, name: sample.name, props: {}, history: new History(this.historyLength), vars: {}, guard: {} };
        this.guests.set(sample.id, g);
        this.counters.guestsAppeared++;
        report.appeared.push(sample.name);
        this.log.info('guest_appeared', { guest: sample.name, id: sample.id });
      }
      g.name = sample.name;
      // The policy's `(guest.Prop "name")` must work whatever props the driver filled.
      g.props = sample.props.name === sample.name ? sample.props : { ...sample.props, name: sample.name };
      g.stale = sample.stale;
      this.samples.set(sample.id, sample);
      // A stale sample would skew averages with old numbers; it only marks the guest.
      if (!sample.stale) {
        const step = inflationStep(g.history.latest(), sample.stats);
        g.history.push(sample.stats, time);
        if (step) this.noteReturn(g, step);
      }
    }
    for (const g of [...this.guests.values()]) {
      if (!seen.has(g.id)) {
        report.vanished.push(g.name);
        this.dropGuest(g, 'not in the latest collection');
      }
    }
    report.guests = this.guests.size;
    this.notifyCollect(report);
    return report;
  }

  /** Fields the control modules read themselves (e.g. vcpu_quota), merged into fresh samples. */
  private async addControlFields(samples: GuestSample[]): Promise<void> {
    for (const { module, instance } of this.controlInstances) {
      const known = instance.guestFields;
      const read = instance.readGuestFields;
      if (!known && !read) continue;
      const failed = (sample: GuestSample, err: unknown) => {
        // Said once per guest and module until it works again; the fields stay unknown.
        const key = `${module.name}\0${sample.id}`;
        const error = errorMessage(err);
        if (this.fieldErrors.get(key) !== error) this.log.warn('control_fields_failed', { control: module.name, guest: sample.name, error });
        if (this.fieldErrors.size < 10_000 || this.fieldErrors.has(key)) this.fieldErrors.set(key, error);
      };
      const ok = (sample: GuestSample, fields: Stats) => {
        Object.assign(sample.stats, fields);
        if (this.fieldErrors.size > 0) this.fieldErrors.delete(`${module.name}\0${sample.id}`);
      };
      // Most guests' fields are known (synchronous); only the rest are read, 16 at a time.
      const unknown: GuestSample[] = [];
      for (const sample of samples) {
        if (sample.stale) continue;
        const f = known?.call(instance, sample);
        if (f) ok(sample, f);
        else if (read) unknown.push(sample);
      }
      await mapLimited(unknown, 16, async (sample) => {
        try {
          ok(sample, await read!.call(instance, sample));
        } catch (err) {
          failed(sample, err);
        }
      });
    }
  }

  private readonly fieldErrors = new Map<string, string>();

  private noteReturn(g: GuestEntity, step: BalloonReturn): void {
    g.returns = addReturn(g.returns, step);
    if (!g.warnedIneffective && ineffective(g.returns)) {
      g.warnedIneffective = true;
      const mib = (k: number) => Math.round(k / 1024);
      this.log.warn('balloon_ineffective', {
        guest: g.name,
        inflated_mib: mib(g.returns.inflatedKiB),
        expected_mib: mib(g.returns.expectedKiB),
        returned_mib: mib(g.returns.returnedKiB),
        reason:
          "the balloon took memory the host had backed, but QEMU's resident memory fell by under a quarter of it: huge pages likely hold it (see docs/host.md)",
      });
    }
  }

  /** Vetoes said already, by entity and control: the reasons (said again when they change). */
  private readonly vetoed = new Map<string, string>();

  /** Host sources (and the hypervisor, under HYPERVISOR_KEY) failing now: since when, how many collections, the error. */
  private readonly failingSources = new Map<string, { since: number; count: number; error: string }>();

  /** Counts a failed collection of `key`; true when it should be logged (it starts failing, or its error changed). */
  private noteFailing(key: string, error: string, time: number): boolean {
    const failing = this.failingSources.get(key);
    if (failing && failing.error === error) {
      failing.count++;
      return false;
    }
    this.failingSources.set(key, { since: failing?.since ?? time, count: (failing?.count ?? 0) + 1, error });
    return true;
  }

  /** A collection of `key` worked: if it was failing, say so once, with how long and how often. */
  private noteRecovered(key: string, event: string, fields: Record<string, unknown>): void {
    const failed = this.failingSources.get(key);
    if (!failed) return;
    this.failingSources.delete(key);
    this.log.info(event, { ...fields, failed_collections: failed.count, reason: `failing since t=${Math.round(failed.since)}: ${failed.error}` });
  }

  private notifyCollect(report: CollectReport): void {
    for (const l of this.collectListeners) {
      try {
        l(report);
      } catch (err) {
        this.log.error('listener_error', { error: errorMessage(err) });
      }
    }
  }

  /** Called after every collection with its report (API, metrics). Returns the unsubscribe. */
  onCollect(listener: (r: CollectReport) => void): () => void {
    this.collectListeners.add(listener);
    return () => this.collectListeners.delete(listener);
  }

  /** An entity's samples with their times, oldest first: 'host' or a guest's name. */
  timedHistory(entity: string): { time: number; stats: Stats }[] | undefined {
    let h: History | undefined;
    if (entity === 'host') h = this.host.history;
    else
      for (const g of this.guests.values())
        if (g.name === entity) {
          h = g.history;
          break;
        }
    if (!h) return undefined;
    const out: { time: number; stats: Stats }[] = [];
    for (let i = h.length - 1; i >= 0; i--) out.push({ time: h.timeAt(i)!, stats: h.at(i)! });
    return out;
  }

  /** Guests the policy sees: those with at least one sample, in a stable order. */
  private evaluable(): GuestEntity[] {
    const out: GuestEntity[] = [];
    for (const g of this.guests.values()) if (g.history.length > 0) out.push(g);
    return out;
  }

  private runPolicy(guests: GuestEntity[], cycle: number, time: number): PolicyOutput | null {
    if (this.policyValue === null) return null;
    const hostIn: EntityInput = { props: this.host.props, stats: this.host.history.toArray(), vars: this.host.vars };
    const guestIn: EntityInput[] = guests.map((g) => ({ props: g.props, stats: g.history.toArray(), vars: g.vars }));
    let out: PolicyOutput;
    try {
      out = this.evaluateFn(this.policyValue, hostIn, guestIn, this.evalOpts);
    } catch (err) {
      // The evaluator itself must not throw; if it does, treat it as an aborted evaluation.
      out = { host: { controls: {}, vars: this.host.vars }, guests: [], errors: [{ message: `evaluator failed: ${errorMessage(err)}` }], aborted: true };
    }
    if (this.recorder) {
      try {
        this.recorder({ cycle, time, host: hostIn, guests: guestIn, result: out });
      } catch (err) {
        this.log.error('record_failed', { error: errorMessage(err) });
      }
    }
    return out;
  }

  /** Evaluate the policy, guard, actuate, record. */
  async evaluateAndAct(): Promise<CycleReport> {
    const t0 = performance.now();
    const cycle = ++this.cycleNo;
    const time = this.clock();
    const guests = this.evaluable();
    const output = this.runPolicy(guests, cycle, time);
    const evalMs = performance.now() - t0;
    const plan = planCycle(cycle, time, this.host, guests, output, {
      safeguards: this.sg,
      controls: this.planned,
      balloonsOff: this.balloonsOff,
      paused: this.pausedReason,
    });
    this.counters.cycles++;
    this.recordPolicyOutcome(plan, output !== null);
    this.commitVars(plan);
    const outcomes = await this.actuate(plan);
    this.commitGuard(plan, outcomes);
    this.record(plan, outcomes);
    const report: CycleReport = {
      cycle,
      time,
      evaluated: output !== null,
      aborted: plan.aborted,
      errors: plan.errors,
      outcomes,
      notes: plan.notes,
      evalMs,
      totalMs: performance.now() - t0,
    };
    for (const l of this.cycleListeners) {
      try {
        l(report);
      } catch (err) {
        this.log.error('listener_error', { error: errorMessage(err) });
      }
    }
    return report;
  }

  /** Called after every policy cycle with its report (views, API, metrics). Returns the unsubscribe. */
  onCycle(listener: (r: CycleReport) => void): () => void {
    this.cycleListeners.add(listener);
    return () => this.cycleListeners.delete(listener);
  }

  private recordPolicyOutcome(plan: CyclePlan, evaluated: boolean): void {
    if (!evaluated) return;
    if (plan.aborted) {
      this.counters.abortedEvaluations++;
      // A policy that aborts the same way every cycle is said at error once, then at debug.
      const errors = plan.errors.map(fmtPolicyError);
      const key = `\0aborted\0${errors.join('\0')}`;
      const first = !this.seenPolicyErrors.has(key);
      if (first && this.seenPolicyErrors.size < 10_000) this.seenPolicyErrors.add(key);
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
      // The same error tends to come back every cycle (and for every guest): warn once per
      // policy and guest, then keep counting at debug level.
      const key = `${e.guest ?? ''}\0${e.line}:${e.col}\0${e.message}`;
      const first = !this.seenPolicyErrors.has(key);
      if (first && this.seenPolicyErrors.size < 10_000) this.seenPolicyErrors.add(key);
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

  private commitVars(plan: CyclePlan): void {
    if (plan.hostVars) this.host.vars = plan.hostVars;
    for (const [id, vars] of plan.guestVars) {
      const g = this.guests.get(id);
      if (g) g.vars = vars;
    }
  }

  private async actuate(plan: CyclePlan): Promise<ActionOutcome[]> {
    const byController = new Map<Controller, Action[]>();
    const outcomes: ActionOutcome[] = [];
    for (const a of plan.actions) {
      const deferred = this.backoff.defer(a, plan.now);
      if (deferred) {
        outcomes.push(deferred);
        continue;
      }
      const c = this.controllerByControl.get(a.control);
      if (!c) {
        outcomes.push({ action: a, result: 'failed', error: `no controller for ${a.control}` });
        continue;
      }
      const list = byController.get(c) ?? [];
      list.push(a);
      byController.set(c, list);
    }
    const ctx = { isGone: (id: string) => this.gone.has(id) || !this.guests.has(id) };
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

  private commitGuard(plan: CyclePlan, outcomes: ActionOutcome[]): void {
    const balloonOk = new Set<string>();
    for (const o of outcomes) {
      if (o.action.control === 'balloon_target' && o.result === 'applied' && o.action.guestId) {
        balloonOk.add(o.action.guestId);
        const g = this.guests.get(o.action.guestId);
        if (g && o.action.to !== null) g.lastTarget = o.action.to;
      }
    }
    for (const [id, commit] of plan.guard) {
      const g = this.guests.get(id);
      if (g) g.guard = balloonOk.has(id) ? commit.applied : commit.otherwise;
    }
  }

  private record(plan: CyclePlan, outcomes: ActionOutcome[]): void {
    // On a big host one line per action is megabytes a minute: past SUMMARY_OVER applied
    // actions in a cycle they go to debug and one cycle_summary line says what happened.
    const applied = outcomes.filter((o) => o.result === 'applied').length;
    const summarize = applied > SUMMARY_OVER;
    for (const o of outcomes) {
      const a = o.action;
      const isRollback = a.reasons[0]?.startsWith('rollback') ?? false;
      const rec: ActionRecord = {
        cycle: plan.cycle,
        time: plan.now,
        entity: a.entity,
        control: a.control,
        from: a.from,
        to: a.to,
        result: o.result,
        reasons: a.reasons,
        error: o.error,
      };
      if (o.result === 'unchanged') continue;
      if (o.result === 'deferred') {
        // Counted, not kept: a control backing off would fill the recent actions every cycle.
        this.counters.deferred++;
        this.log.debug('action_deferred', { cycle: plan.cycle, entity: a.entity, control: a.control, to: a.to, error: o.error });
        continue;
      }
      this.remember(rec);
      const fields = {
        cycle: plan.cycle,
        entity: a.entity,
        control: a.control,
        from: a.from,
        to: a.to,
        result: o.result,
        error: o.error,
        kind: o.kind,
        reason: a.reasons,
      };
      const failKey = `${a.entity}\0${a.control}`;
      if (o.result === 'applied') {
        this.failing.delete(failKey);
        this.counters.actionsApplied++;
        this.vetoed.delete(failKey);
        if (isRollback) {
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
        const again = this.failing.get(failKey) === o.error;
        if (!again && this.failing.size < 10_000) this.failing.set(failKey, o.error);
        this.log.log(again ? 'debug' : 'error', 'action_failed', again ? { ...fields, repeated: true } : fields);
      }
    }
    if (summarize) this.summarizeCycle(plan, outcomes);
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
        const key = `${n.entity}\0${n.control}`;
        const why = n.reasons.join('; ');
        const repeated = this.vetoed.get(key) === why;
        if (!repeated && this.vetoed.size < 10_000) this.vetoed.set(key, why);
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

  private summarizeCycle(plan: CyclePlan, outcomes: ActionOutcome[]): void {
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

  /** Properties of every current guest (cheap: no copies of stats or history). */
  guestProps(): Props[] {
    const out: Props[] = [];
    for (const g of this.guests.values()) out.push(g.props);
    return out;
  }

  /** Every entity's sample history, oldest first, guests by name (alerts, views). The arrays
   *  are the engine's own cached views: read them, do not keep or change them. */
  histories(): { host: readonly Stats[]; guests: Map<string, readonly Stats[]> } {
    const guests = new Map<string, readonly Stats[]>();
    for (const g of this.guests.values()) if (!g.stale) guests.set(g.name, g.history.toArray());
    return { host: this.host.history.toArray(), guests };
  }

  guestIds(): string[] {
    return [...this.guests.keys()];
  }

  /** The guard state of a guest (tests and views). */
  guardState(id: string) {
    return this.guests.get(id)?.guard;
  }

  /** The latest sample the driver gave for a guest. */
  sample(id: string): GuestSample | undefined {
    return this.samples.get(id);
  }

  snapshot(): EngineSnapshot {
    return {
      time: this.clock(),
      cycle: this.cycleNo,
      policyLoaded: this.policyValue !== null,
      host: { stats: this.host.history.latest() ?? {}, vars: this.host.vars, stale: this.hostStale },
      guests: [...this.guests.values()].map((g) => ({
        id: g.id,
        name: g.name,
        props: g.props,
        stats: g.history.latest() ?? {},
        vars: g.vars,
        stale: g.stale,
        holdUntil: g.guard.holdUntil,
        lastTarget: g.lastTarget,
        balloonReturn: g.returns,
      })),
      recent: this.recentActions(),
      counters: { ...this.counters },
    };
  }
}

export function fmtPolicyError(e: PolicyErrorInfo): string {
  const where = e.line !== undefined ? `${e.line}:${e.col ?? 0}: ` : '';
  return `${where}${e.guest ? `[${e.guest}] ` : ''}${e.message}`;
}
