// The control loop's state and its two steps, read top to bottom:
//   collect:        host sources and all guests in one batch -> per-entity history
//   evaluateAndAct: evaluate the policy -> plan and guard (cycle.ts, pure) -> actuate ->
//                   commit each module's state by the outcome -> record
// Nothing here throws out of a step: policy, controller, driver and source errors are
// counted and logged, and the loop goes on. The engine names no control: each mechanism is a
// module of the registry (src/controls), set up here with what the driver offers.
import type { HostSource, Hypervisor, Props, Stats } from '../types.js';
import { errorMessage, failureKind } from '../errors.js';
import type { ControlEnv, ControlInstance, ControlModule, Controller } from '../controls/control.js';
import { defaultSafeguards, type SafeguardConfig } from '../controls/floor.js';
import { CONTROLS } from '../controls/registry.js';
import { nullLogger, type Logger } from '../log/logger.js';
import { ActionLog } from './action-log.js';
import { CALM_AFTER_CYCLES, hostMoved, hostStalls } from './calm.js';
import { Actuator, commitStates } from './actuate.js';
import { ControlFields } from './control-fields.js';
import { planCycle, plannedControls, type HostEntity, type PlannedControl, type PlanOptions } from './cycle.js';
import { GuestRegistry } from './guests.js';
import { History } from './history.js';
import { Listeners } from './listeners.js';
import type { EntityInput, EvaluateFn, EvaluateOptions, PolicyOutput } from './policy-port.js';
import { evaluatePolicy, type CompiledPolicy } from './policy-adapter.js';
import { SourceHealth } from './source-health.js';

export { fmtPolicyError, SUMMARY_OVER } from './action-log.js';
export type { ActionRecord, CollectReport, Counters, CycleReport, EngineSnapshot, EvaluationRecord, GuestView } from './reports.js';
import type { CollectReport, Counters, CycleReport, EngineSnapshot, EvaluationRecord, GuestView } from './reports.js';

/** The hypervisor's entry among the failing sources (no host source has this name). */
const HYPERVISOR_KEY = '\0hypervisor';

export interface EngineOptions<P = CompiledPolicy> {
  hypervisor: Hypervisor;
  hostSources: HostSource[];
  /** The compiled policy; null runs the loop without one (collect, safeguards only). */
  policy: P | null;
  /** How to evaluate `policy`. Default: src/policy's evaluate (P must then be its CompiledPolicy). */
  evaluate?: EvaluateFn<P>;
  evaluateOptions?: EvaluateOptions;
  historyLength?: number;
  safeguards?: Partial<SafeguardConfig>;
  /** The control modules (default: the registry, src/controls/registry.ts). */
  controls?: readonly ControlModule[];
  /** The config's tables by name: each module is given its own section (defaults when absent). */
  sections?: Readonly<Record<string, unknown>>;
  /** Set when the driver's connection is read-only (observe only): the reason. */
  readOnly?: string;
  /** Where a module may keep what must outlive a crash (the daemon's runtime directory). */
  stateDir?: string;
  logger?: Logger;
  /** Seconds; the simulator passes its simulated clock. Default: wall clock. */
  now?: () => number;
  /** Action records kept for views and the API. */
  recentActions?: number;
  /** Receives each evaluation's exact input and output (replay, `ballast policy eval`).
   *  Called synchronously; the arrays it gets are not copied, so serialize them at once. */
  recorder?: (rec: EvaluationRecord) => void;
}

export class Engine<P = CompiledPolicy> {
  private policyValue: P | null;
  private readonly evaluateFn: EvaluateFn<P>;
  private readonly hypervisor: Hypervisor;
  private readonly sources: HostSource[];
  private sg: SafeguardConfig;
  private readonly log: Logger;
  private readonly clock: () => number;
  private readonly host: HostEntity;
  private hostStale?: string;
  private readonly sourceStats = new Map<string, Stats>();
  private readonly health: SourceHealth;
  private readonly guests: GuestRegistry;
  private readonly fields: ControlFields;
  /** The control modules at work (setup succeeded), in registry order. */
  readonly controlInstances: { module: ControlModule; instance: ControlInstance }[] = [];
  private readonly planning: Pick<PlanOptions, 'controls' | 'guestPlanners'>;
  private readonly readOnly?: string;
  private readonly actuator: Actuator;
  private readonly actions: ActionLog;
  private cycleNo = 0;
  /** Policy cycles in a row that changed nothing (calm()). */
  private quietCycles = 0;
  private unsubscribe?: () => void;
  private readonly cycleListeners: Listeners<CycleReport>;
  private readonly collectListeners: Listeners<CollectReport>;
  private readonly recorder?: (rec: EvaluationRecord) => void;
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
    calmSkips: 0,
  };
  private readonly evalOpts?: EvaluateOptions;

  /** Observe only (collect, evaluate, guard; apply nothing) while set: the reason; undefined resumes. */
  pausedReason?: string;

  constructor(opts: EngineOptions<P>) {
    this.hypervisor = opts.hypervisor;
    this.sources = opts.hostSources;
    this.policyValue = opts.policy;
    this.evaluateFn = opts.evaluate ?? (evaluatePolicy as unknown as EvaluateFn<P>);
    this.evalOpts = opts.evaluateOptions;
    this.sg = { ...defaultSafeguards, ...opts.safeguards };
    this.log = opts.logger ?? nullLogger;
    this.clock = opts.now ?? (() => Date.now() / 1000);
    this.readOnly = opts.readOnly;
    this.recorder = opts.recorder;
    this.health = new SourceHealth(this.log);
    this.actions = new ActionLog(this.log, this.counters, opts.recentActions ?? 200);
    this.cycleListeners = new Listeners(this.log);
    this.collectListeners = new Listeners(this.log);
    const historyLength = opts.historyLength ?? 10;
    this.host = { props: { name: 'host' }, history: new History(historyLength), vars: {} };
    const modules = opts.controls ?? CONTROLS;
    const controllers = new Map<string, Controller>();
    this.guests = new GuestRegistry(
      historyLength,
      modules.filter((m) => m.observe),
      () => this.sg,
      this.counters,
      this.log,
      (g) => {
        this.actions.forgetEntity(g.name);
        this.actuator.forget(g.name);
        this.fields.forget(g.id);
        for (const { instance } of this.controlInstances) instance.controller.forget?.(g.id);
      },
    );
    // Every module sets itself up with its own config section and what this host offers; one
    // that cannot (no backend, no driver support) or that its section turns off still plans,
    // as vetoes.
    const env: ControlEnv = {
      hypervisor: this.hypervisor,
      readOnly: opts.readOnly,
      stateDir: opts.stateDir,
      lookup: (id) => this.guests.lookup(id),
      log: this.log,
    };
    const planned: PlannedControl[] = [];
    const byControl = new Map<string, ControlModule>();
    for (const module of modules) {
      const section = module.section ? module.section.schema.parse(opts.sections?.[module.section.key]) : undefined;
      const made = module.setup(env, section);
      const on = typeof made !== 'string' && module.enabled?.(section) !== false;
      planned.push({ module, on });
      for (const c of module.controls) byControl.set(c, module);
      if (typeof made === 'string') continue;
      this.controlInstances.push({ module, instance: made });
      for (const c of made.controller.controls) controllers.set(c, made.controller);
    }
    this.planning = plannedControls(planned);
    this.actuator = new Actuator(controllers, byControl);
    this.fields = new ControlFields(this.controlInstances, this.log, this.clock);
    if (this.hypervisor.onEvent)
      this.unsubscribe = this.hypervisor.onEvent((e) => {
        this.quietCycles = 0;
        this.guests.onLifecycle(e);
      });
  }

  get policy(): P | null {
    return this.policyValue;
  }

  setPolicy(p: P | null): void {
    this.policyValue = p;
    this.quietCycles = 0;
    this.actions.policyChanged();
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
    this.quietCycles = 0;
  }

  /** Stop listening to the driver's events. The engine owns no timers or connections. */
  dispose(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  /** One batch: every host source and the hypervisor's guests, concurrently. */
  async collect(): Promise<CollectReport> {
    const time = this.clock();
    const report: CollectReport = { time, guests: 0, appeared: [], vanished: [], errors: [] };
    this.guests.startCollect();
    const [guestRes, ...sourceRes] = await Promise.allSettled([this.hypervisor.collect(), ...this.sources.map((s) => s.collect())]);
    this.counters.collections++;
    this.mergeHost(sourceRes, time, report);
    if (guestRes!.status === 'rejected') {
      this.counters.driverErrors++;
      const error = errorMessage(guestRes!.reason);
      const msg = `hypervisor ${this.hypervisor.name}: ${error}`;
      report.errors.push(msg);
      if (this.health.failed(HYPERVISOR_KEY, error, time)) {
        this.log.error('collect_error', {
          hypervisor: this.hypervisor.name,
          error,
          kind: failureKind(guestRes!.reason),
          reason: 'guests are stale (nothing inflates) until it answers; logged again when it recovers or the error changes',
        });
      }
      this.guests.markStale(msg);
    } else {
      this.health.recovered(HYPERVISOR_KEY, 'collect_recovered', { hypervisor: this.hypervisor.name });
      const samples = this.guests.beginCollect(guestRes!.value);
      try {
        await this.fields.add(samples);
      } finally {
        this.guests.endCollect(samples, time, report);
      }
    }
    report.guests = this.guests.byId.size;
    if (report.appeared.length || report.vanished.length || report.errors.length) this.quietCycles = 0;
    this.collectListeners.emit(report);
    return report;
  }

  /** Host: every source's fields merged; a failing source keeps its last good values and marks the host sample stale with the reason. */
  private mergeHost(results: PromiseSettledResult<Stats>[], time: number, report: CollectReport): void {
    const staleReasons: string[] = [];
    const merged: Stats = {};
    this.sources.forEach((src, i) => {
      const r = results[i]!;
      if (r.status === 'fulfilled') {
        this.sourceStats.set(src.name, r.value);
        this.health.recovered(src.name, 'source_recovered', { source: src.name });
      } else {
        this.counters.sourceErrors++;
        const error = errorMessage(r.reason);
        const msg = `host source ${src.name}: ${error}`;
        staleReasons.push(msg);
        report.errors.push(msg);
        if (this.health.failed(src.name, error, time)) {
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
  }

  /** Evaluate the policy, plan and guard, actuate, commit, record. */
  async evaluateAndAct(): Promise<CycleReport> {
    const t0 = performance.now();
    const cycle = ++this.cycleNo;
    const time = this.clock();
    const guests = this.guests.evaluable();
    const output = this.runPolicy(guests, cycle, time);
    const evalMs = performance.now() - t0;
    const plan = planCycle(cycle, time, this.host, guests, output, {
      ...this.planning,
      safeguards: this.sg,
      readOnly: this.readOnly,
      paused: this.pausedReason,
    });
    this.counters.cycles++;
    this.actions.policyOutcome(plan, output !== null);
    if (plan.hostVars) this.host.vars = plan.hostVars;
    for (const [id, vars] of plan.guestVars) {
      const g = this.guests.byId.get(id);
      if (g) g.vars = vars;
    }
    const outcomes = await this.actuator.run(plan, (id) => this.guests.isGone(id));
    commitStates(plan, outcomes, this.guests.byId);
    this.actions.record(plan, outcomes);
    // A host knob set as asked (KSM's) is not watched afterwards as a guest's memory is (no
    // rollback window): it leaves the loop calm.
    const changed =
      plan.aborted || plan.errors.length > 0 || outcomes.some((o) => o.result !== 'unchanged' && (o.action.guestId !== undefined || o.result !== 'applied'));
    this.quietCycles = changed ? 0 : this.quietCycles + 1;
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
    this.cycleListeners.emit(report);
    return report;
  }

  /**
   * The guards alone, after a collection between two policy cycles: no policy is evaluated and
   * no request is made, so only what a module does unasked can happen (the balloon raises a
   * guest that fell below its floor and rolls back an inflation that hurt). A guest whose use
   * jumps is raised within one stats interval instead of waiting up to a policy interval for
   * it: in the lab a late-starting guest at its floor took 64 MiB in 6 s and was OOM-killed a
   * second before the next policy cycle would have raised it. It keeps the cycle number
   * (rollback windows count policy cycles) and says nothing unless it acted.
   */
  async guardPass(): Promise<CycleReport | null> {
    if (this.pausedReason !== undefined || this.readOnly !== undefined) return null;
    const t0 = performance.now();
    const time = this.clock();
    const plan = planCycle(this.cycleNo, time, this.host, this.guests.evaluable(), null, { ...this.planning, safeguards: this.sg, guardPass: true });
    if (plan.actions.length === 0) return null;
    this.quietCycles = 0;
    // Its notes (a veto while another manager holds a balloon ...) are the policy cycle's to say.
    plan.notes.length = 0;
    const outcomes = await this.actuator.run(plan, (id) => this.guests.isGone(id));
    commitStates(plan, outcomes, this.guests.byId);
    this.actions.record(plan, outcomes);
    const report: CycleReport = {
      cycle: this.cycleNo,
      time,
      evaluated: false,
      guardPass: true,
      aborted: false,
      errors: [],
      outcomes,
      notes: plan.notes,
      evalMs: 0,
      totalMs: performance.now() - t0,
    };
    this.cycleListeners.emit(report);
    return report;
  }

  /**
   * Whether the loop may slow down (src/engine/calm.ts): the last CALM_AFTER_CYCLES policy
   * cycles changed nothing, every sample is fresh, the host does not stall on memory, and no
   * module holds a guest below what it could have.
   */
  calm(): boolean {
    if (this.quietCycles < CALM_AFTER_CYCLES || this.hostStale !== undefined) return false;
    if (hostStalls(this.host.history.latest() ?? {})) return false;
    for (const g of this.guests.byId.values()) {
      const s = g.history.latest();
      if (g.stale || !s) return false;
      for (const { instance } of this.controlInstances) if (instance.holds?.(g.id, s)) return false;
    }
    return true;
  }

  /**
   * Between two collections of a calm loop: reads only the cheap host sources (`watch`) and
   * says why the host moved since the last full sample (free memory fell, a stall, a source
   * failed), or null: the loop lets this interval pass (counted in calmSkips). Records no
   * sample. Without such sources (the simulator) nothing wakes the loop but its stride.
   */
  async peek(): Promise<string | null> {
    const last = this.host.history.latest();
    const watch = this.sources.filter((src) => src.watch);
    let moved: string | null = null;
    if (last && watch.length > 0) {
      const read = await Promise.allSettled(watch.map((src) => src.collect()));
      const now: Stats = {};
      for (const [i, r] of read.entries()) {
        if (r.status === 'rejected') moved ??= `host source ${watch[i]!.name}: ${errorMessage(r.reason)}`;
        else Object.assign(now, r.value);
      }
      moved ??= hostMoved(last, now);
    }
    if (moved === null) this.counters.calmSkips++;
    return moved;
  }

  private runPolicy(guests: readonly { props: Props; history: History; vars: Record<string, unknown> }[], cycle: number, time: number): PolicyOutput | null {
    if (this.policyValue === null) return null;
    const hostIn: EntityInput = { props: this.host.props, stats: this.host.history.toArray(), vars: this.host.vars };
    const guestIn: EntityInput[] = guests.map((g) => ({ props: g.props, stats: g.history.toArray(), vars: g.vars as EntityInput['vars'] }));
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

  /** Called after every collection with its report (API, metrics, alerts). Returns the unsubscribe. */
  onCollect(listener: (r: CollectReport) => void): () => void {
    return this.collectListeners.add(listener);
  }

  /** Called after every policy cycle with its report (views, API, metrics). Returns the unsubscribe. */
  onCycle(listener: (r: CycleReport) => void): () => void {
    return this.cycleListeners.add(listener);
  }

  // ---- read views (API, metrics, alerts, tests) ----

  /** An entity's samples with their times, oldest first: 'host' or a guest's name. */
  timedHistory(entity: string): { time: number; stats: Stats }[] | undefined {
    const h = entity === 'host' ? this.host.history : this.guests.byName(entity)?.history;
    if (!h) return undefined;
    const out: { time: number; stats: Stats }[] = [];
    for (let i = h.length - 1; i >= 0; i--) out.push({ time: h.timeAt(i)!, stats: h.at(i)! });
    return out;
  }

  /** Recent action records, oldest first. */
  recentActions() {
    return this.actions.recentActions();
  }

  /** Properties of every current guest (cheap: no copies of stats or history). */
  guestProps(): Props[] {
    const out: Props[] = [];
    for (const g of this.guests.byId.values()) out.push(g.props);
    return out;
  }

  /** Every entity's sample history, oldest first, guests by name (alerts, views). The arrays
   *  are the engine's own cached views: read them, do not keep or change them. */
  histories(): { host: readonly Stats[]; guests: Map<string, readonly Stats[]> } {
    const guests = new Map<string, readonly Stats[]>();
    for (const g of this.guests.byId.values()) if (!g.stale) guests.set(g.name, g.history.toArray());
    return { host: this.host.history.toArray(), guests };
  }

  guestIds(): string[] {
    return [...this.guests.byId.keys()];
  }

  /** Each guest's latest sample and each module's state for it: what a module restores on stop from. */
  guestsAtStop(module: string): { id: string; name: string; stats: Stats; state: unknown }[] {
    return [...this.guests.byId.values()].map((g) => ({ id: g.id, name: g.name, stats: g.history.latest() ?? {}, state: g.state[module] }));
  }

  snapshot(): EngineSnapshot {
    return {
      time: this.clock(),
      cycle: this.cycleNo,
      policyLoaded: this.policyValue !== null,
      host: { stats: this.host.history.latest() ?? {}, vars: this.host.vars, stale: this.hostStale },
      guests: [...this.guests.byId.values()].map((g) => {
        const v: GuestView = { id: g.id, name: g.name, props: g.props, stats: g.history.latest() ?? {}, vars: g.vars, stale: g.stale };
        // What each module shows of its state (the balloon: hold, last target, returns).
        for (const { module } of this.controlInstances) {
          const st = g.state[module.name];
          if (st !== undefined && module.view) Object.assign(v, module.view(st));
        }
        return v;
      }),
      recent: this.actions.recentActions(),
      counters: { ...this.counters },
    };
  }
}
