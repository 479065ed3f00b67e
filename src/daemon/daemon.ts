// The composition root of `ballast run` and `ballast demo`: backends from the config, the
// control modules given their config sections, the policy directory watched, the engine driven
// by real timers, and a clean stop (timers cleared, in-flight cycle finished, each module's
// restore — balloons left or deflated, KSM settings put back — connections closed).
import { errorMessage } from '../errors.js';
import type { Config } from '../config/schema.js';
import { toAlertThresholds, toSafeguardConfig } from './convert.js';
import { CONTROLS } from '../controls/registry.js';
import type { Logger } from '../log/logger.js';

import { AlertMonitor } from '../engine/alerting.js';
import { buildBackends, type Backends } from './backends.js';
import { closeSync, fstatSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { Engine, type EvaluationRecord } from '../engine/engine.js';
import { compilePolicyFiles, type CompiledPolicy } from '../engine/policy-adapter.js';
import { PolicyWatcher } from '../engine/policy-dir.js';
import { PolicySet, type PolicyEntry } from '../engine/policy-set.js';
import { Loop } from '../engine/loop.js';

export interface DaemonOptions {
  config: Config;
  logger: Logger;
  /** Already built backends (tests, demo); default: from the config. */
  backends?: Backends;
  /** Seconds between policy directory checks. */
  policyPollS?: number;
  /** Policy files to use (in this order) instead of the config's policy_dir. */
  policyFiles?: string[];
  /** Called after every policy cycle (views). */
  onCycle?: (engine: Engine) => void;
  /** The runtime directory: modules keep there what must outlive a crash (KSM's journal). */
  stateDir?: string;
}

export class Daemon {
  readonly engine: Engine;
  readonly loop: Loop;
  readonly watcher: PolicyWatcher<CompiledPolicy>;
  /** The named policies in force: the watcher's files plus those set through the API / MOM's RPC. */
  readonly policies = new PolicySet<CompiledPolicy>(compilePolicyFiles);
  readonly alerts?: AlertMonitor;
  private recordFd?: number;
  private recordFailing?: { error: string; lost: number };
  private stopping?: Promise<void>;

  private constructor(
    readonly config: Config,
    readonly backends: Backends,
    private readonly log: Logger,
    private readonly opts: DaemonOptions,
  ) {
    const c = config.engine;
    this.engine = new Engine<CompiledPolicy>({
      hypervisor: backends.hypervisor,
      hostSources: backends.hostSources,
      controls: CONTROLS,
      sections: config,
      readOnly: config.hypervisor.readonly ? 'hypervisor.readonly = true (observe only)' : undefined,
      stateDir: opts.stateDir,
      policy: null,
      evaluateOptions: { stepBudget: c.step_budget },
      historyLength: c.history_length,
      safeguards: toSafeguardConfig(config),
      logger: log,
      now: backends.sim?.now,
      recorder: config.engine.record_file ? (rec) => this.record(rec) : undefined,
    });
    if (config.alerts.enabled) this.alerts = new AlertMonitor(this.engine, toAlertThresholds(config), log, config.alerts.clear_after);
    this.watcher = new PolicyWatcher({
      source: opts.policyFiles ? { files: opts.policyFiles } : { dir: c.policy_dir },
      compile: this.policies.compileFiles,
      logger: log,
      pollS: opts.policyPollS,
      onPolicy: (p) => this.engine.setPolicy(p),
    });
    // A simulated host runs its intervals in simulated seconds: real timers fire time_scale
    // times more often, and each collection first moves the world by one stats interval.
    const scale = backends.sim?.timeScale ?? 1;
    const sim = backends.sim;
    this.loop = new Loop(this.engine, {
      statsIntervalS: c.stats_interval,
      policyIntervalS: c.policy_interval,
      calmStride: c.calm_stride,
      advance: sim ? (s) => sim.advance(s) : undefined,
      timeScale: scale,
      onError: (task, err) => log.error('task_error', { task, error: errorMessage(err) }),
    });
    this.loop.onCollect(() => this.alerts?.check());
    this.loop.onCycle(() => this.opts.onCycle?.(this.engine));
  }

  /** Set (create or replace) a named policy at run time; throws (compile error) and changes nothing when the set would not compile. */
  setNamedPolicy(name: string, text: string): PolicyEntry {
    const { policy, entry } = this.policies.set(name, text);
    this.engine.setPolicy(policy);
    this.log.info('policy_set', { name, source: 'api', bytes: text.length, policies: this.policies.entries().map((e) => e.name) });
    return entry;
  }

  /** Delete a named policy set at run time; false when there was none. */
  deleteNamedPolicy(name: string): boolean {
    const r = this.policies.delete(name);
    if (!r) return false;
    this.engine.setPolicy(r.policy);
    this.log.info('policy_deleted', { name, policies: this.policies.entries().map((e) => e.name) });
    return true;
  }

  /** MOM's setPolicy: this text alone is the policy until resetPolicies. */
  replacePolicies(text: string): void {
    this.engine.setPolicy(this.policies.replace(text));
    this.log.info('policy_replaced', { bytes: text.length, reason: 'setPolicy: the policy files are set aside until resetPolicies' });
  }

  /** MOM's resetPolicies: forget what was set at run time and load the files again. */
  resetPolicies(): void {
    this.policies.reset();
    if (!this.watcher.reload()) {
      this.engine.setPolicy(null);
      this.log.warn('policy_reset_empty', { reason: `no usable policy files: ${this.watcher.lastError ?? 'none'}; running without a policy` });
    } else this.log.info('policy_reset', { policies: this.policies.entries().map((e) => e.name) });
  }

  /** Observe only: collect and evaluate, apply nothing, until resume(). */
  pause(reason: string): void {
    this.engine.pausedReason = `paused: ${reason}`;
    this.log.warn('paused', { reason });
  }

  resume(): void {
    if (this.engine.pausedReason === undefined) return;
    this.engine.pausedReason = undefined;
    this.log.info('resumed', {});
  }

  /** One JSON line per evaluation, written synchronously: the arrays are live views. */
  /**
   * One JSON line per evaluation. A line is written whole or not at all: a write that fails
   * part-way (disk full) is cut back, so a reader never meets half a record. Failing is
   * logged when it starts (and when the error changes) and when it recovers; the loop goes on.
   */
  private record(rec: EvaluationRecord): void {
    const file = this.config.engine.record_file;
    const line = Buffer.from(`${JSON.stringify(rec)}\n`);
    try {
      if (this.recordFd === undefined) this.recordFd = openSync(file, 'a', 0o640);
      const fd = this.recordFd;
      const start = fstatSync(fd).size;
      let done = 0;
      try {
        while (done < line.length) done += writeSync(fd, line, done);
      } catch (err) {
        if (done > 0) {
          try {
            ftruncateSync(fd, start);
          } catch {
            // a device (or a file gone read-only) that cannot be cut: nothing more to do
          }
        }
        throw err;
      }
      if (this.recordFailing) {
        this.log.info('record_recovered', { file, lost_records: this.recordFailing.lost });
        this.recordFailing = undefined;
      }
    } catch (err) {
      const error = errorMessage(err);
      if (this.recordFailing?.error !== error)
        this.log.error('record_failed', { file, error, reason: 'the loop goes on; evaluations are not recorded until the file can be written again' });
      this.recordFailing = { error, lost: (this.recordFailing?.lost ?? 0) + 1 };
    }
  }

  /**
   * A reloaded config (SIGHUP): what can change in a running daemon changes now (safeguards
   * and the log level, which the caller sets); the rest is listed as needing a restart and
   * left as it is.
   */
  applyConfig(next: Config): { applied: string[]; restartNeeded: string[] } {
    const applied: string[] = [];
    const restartNeeded: string[] = [];
    for (const key of changedKeys(this.config, next)) {
      if (key.startsWith('safeguards.') || key === 'log.level') applied.push(key);
      else restartNeeded.push(key);
    }
    if (applied.some((k) => k.startsWith('safeguards.'))) {
      this.config.safeguards = next.safeguards;
      this.engine.setSafeguards(toSafeguardConfig(next));
    }
    if (applied.includes('log.level')) this.config.log.level = next.log.level;
    return { applied, restartNeeded };
  }

  static async create(opts: DaemonOptions): Promise<Daemon> {
    const { config, logger } = opts;
    let engineRef: Engine | undefined;
    const backends =
      opts.backends ??
      (await buildBackends(config, logger, {
        guestPids: () => (engineRef?.guestProps() ?? []).map((p) => Number(p.pid)).filter((p) => Number.isInteger(p) && p > 0),
      }));
    const d = new Daemon(config, backends, logger, opts);
    engineRef = d.engine;
    return d;
  }

  async start(): Promise<void> {
    const c = this.config;
    this.log.info('starting', {
      hypervisor: this.backends.describe,
      policies: this.opts.policyFiles ?? c.engine.policy_dir,
      stats_interval: c.engine.stats_interval,
      policy_interval: c.engine.policy_interval,
    });
    try {
      await this.backends.hypervisor.connect();
    } catch (err) {
      // The driver keeps reconnecting in the background; the loop runs on stale data meanwhile.
      if (!this.stopping)
        this.log.error('connect_failed', {
          hypervisor: this.backends.hypervisor.name,
          error: errorMessage(err),
          reason: 'will keep trying; guests are stale until connected',
        });
    }
    // A stop that came while connecting wins: nothing may start after it.
    if (this.stopping) {
      this.log.info('start_abandoned', { reason: 'stopped while starting' });
      return;
    }
    // Each control notes what it will put back on stop.
    for (const { module, instance } of this.engine.controlInstances) {
      try {
        await instance.remember?.();
      } catch (err) {
        this.log.warn(`${module.name}_read_failed`, { error: errorMessage(err), reason: `${module.name} settings cannot be restored on exit` });
      }
    }
    if (!this.watcher.start()) {
      this.log.warn('no_policy', {
        policies: this.opts.policyFiles ?? c.engine.policy_dir,
        reason: 'running without a policy until a good one appears: statistics are collected, safeguards (rollback) still act',
      });
    }
    if (this.stopping) return;
    this.loop.start();
    this.log.info('started', {});
  }

  /** Stop once; later calls wait for the same stop. */
  stop(reason: string): Promise<void> {
    this.stopping ??= this.doStop(reason);
    return this.stopping;
  }

  private async doStop(reason: string): Promise<void> {
    this.log.info('stopping', { reason });
    this.watcher.stop();
    // A driver call can hang up to its own timeout; do not let it hold the stop forever.
    const STOP_WAIT_MS = 10_000;
    let timer: NodeJS.Timeout | undefined;
    const waited = await Promise.race([
      this.loop.stop().then(() => true),
      new Promise<false>((r) => {
        timer = setTimeout(() => r(false), STOP_WAIT_MS);
      }),
    ]);
    clearTimeout(timer);
    if (!waited) this.log.warn('stop_timeout', { reason: `the cycle in flight did not finish within ${STOP_WAIT_MS / 1000} s; stopping anyway` });
    await this.restoreControls();
    this.engine.dispose();
    if (this.recordFd !== undefined) closeSync(this.recordFd);
    this.recordFd = undefined;
    // close() also ends a connect still pending (a hung libvirtd); it must not hold the stop.
    const CLOSE_WAIT_MS = 3000;
    let closeTimer: NodeJS.Timeout | undefined;
    try {
      const closed = await Promise.race([
        this.backends.hypervisor.close().then(() => true),
        new Promise<false>((r) => {
          closeTimer = setTimeout(() => r(false), CLOSE_WAIT_MS);
        }),
      ]);
      if (!closed) this.log.warn('close_timeout', { reason: `the hypervisor connection did not close within ${CLOSE_WAIT_MS / 1000} s; stopping anyway` });
    } catch (err) {
      this.log.warn('close_failed', { error: errorMessage(err) });
    } finally {
      clearTimeout(closeTimer);
    }
    const n = this.engine.counters;
    this.log.info('stopped', {
      collections: n.collections,
      calm_skips: n.calmSkips,
      cycles: n.cycles,
      actions: n.actionsApplied,
      rollbacks: n.rollbacks,
      vetoes: n.vetoes,
      policy_errors: n.policyErrors,
      controller_errors: n.controllerErrors,
      driver_errors: n.driverErrors,
      alerts: this.alerts?.raisedTotal,
    });
  }

  private async restoreControls(): Promise<void> {
    for (const { module, instance } of this.engine.controlInstances) {
      try {
        const what = await instance.restore?.(this.engine.guestsAtStop(module.name));
        if (what) this.log.info(`${module.name}_restored`, { reason: what });
      } catch (err) {
        this.log.warn(`${module.name}_restore_failed`, { error: errorMessage(err) });
      }
    }
  }
}

/** Dotted keys whose values differ between two configs. */
function changedKeys(a: unknown, b: unknown, prefix = ''): string[] {
  if (typeof a === 'object' && a !== null && typeof b === 'object' && b !== null && !Array.isArray(a) && !Array.isArray(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    return [...keys].sort().flatMap((k) => changedKeys((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], prefix ? `${prefix}.${k}` : k));
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [prefix];
}
