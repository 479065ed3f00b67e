// The DaemonPort over a running Daemon: reads come from the engine's state, events from the
// daemon's log (EventLog), updates from the engine's collect and cycle hooks.
import { errorMessage } from '../errors.js';
import type { Daemon } from './daemon.js';
import type { EventLog } from '../api/event-log.js';
import { PolicyRejectedError, type DaemonPort, type GuestState, type HealthState, type HostState, type PolicyInfo, type TimedStats } from '../api/port.js';
import type { LogLevel, Logger } from '../log/logger.js';

const VERSION = '0.1.0';

export class DaemonApiPort implements DaemonPort {
  private readonly startedAt = Date.now() / 1000;

  /** `logger`: the daemon's logger, whose level setLogLevel changes. */
  private lastTimes?: { totalMs: number; evalMs: number };

  constructor(
    private readonly daemon: Daemon,
    private readonly eventLog: EventLog,
    private readonly logger: Logger,
  ) {
    daemon.engine.onCycle((r) => {
      if (!r.guardPass) this.lastTimes = { totalMs: r.totalMs, evalMs: r.evalMs };
    });
  }

  connection() {
    return this.daemon.backends.hypervisor.connection?.();
  }

  lastCycleTimes() {
    return this.lastTimes;
  }

  health(): HealthState {
    const s = this.daemon.engine.snapshot();
    const problems: string[] = [];
    if (s.host.stale) problems.push(s.host.stale);
    const stale = s.guests.filter((g) => g.stale);
    if (stale.length) problems.push(`${stale.length} guest(s) stale: ${stale[0]!.stale}`);
    return {
      status: problems.length ? 'degraded' : 'ok',
      version: VERSION,
      hypervisor: this.daemon.backends.describe,
      startedAt: this.startedAt,
      time: s.time,
      cycle: s.cycle,
      paused: this.daemon.engine.pausedReason !== undefined,
      policyLoaded: s.policyLoaded,
      calm: this.daemon.loop.calm,
      problems,
    };
  }

  host(): HostState {
    const h = this.daemon.engine.snapshot().host;
    return { stats: h.stats, vars: h.vars, stale: h.stale };
  }

  hostHistory(): TimedStats[] {
    return this.daemon.engine.timedHistory('host') ?? [];
  }

  guests(): GuestState[] {
    return this.daemon.engine.snapshot().guests;
  }

  guest(name: string): GuestState | undefined {
    return this.guests().find((g) => g.name === name);
  }

  guestHistory(name: string): TimedStats[] | undefined {
    return this.daemon.engine.timedHistory(name);
  }

  actions() {
    return this.daemon.engine.recentActions();
  }

  events(since?: number) {
    return this.eventLog.since(since);
  }

  alerts() {
    return this.daemon.alerts?.active() ?? [];
  }

  counters() {
    return { ...this.daemon.engine.counters };
  }

  onEvent(listener: Parameters<DaemonPort['onEvent']>[0]) {
    return this.eventLog.subscribe(listener);
  }

  onUpdate(listener: (kind: 'collect' | 'cycle') => void) {
    const a = this.daemon.engine.onCollect(() => listener('collect'));
    const b = this.daemon.engine.onCycle(() => listener('cycle'));
    return () => {
      a();
      b();
    };
  }

  policies(): PolicyInfo[] {
    return this.daemon.policies.entries().map((e) => ({ name: e.name, source: e.source, path: e.path, loadedAt: e.loadedAt, text: e.text }));
  }

  setPolicy(name: string, text: string): PolicyInfo {
    const e = rejecting(() => this.daemon.setNamedPolicy(name, text));
    return { name: e.name, source: e.source, loadedAt: e.loadedAt, text: e.text };
  }

  deletePolicy(name: string): boolean {
    return rejecting(() => this.daemon.deleteNamedPolicy(name));
  }

  replacePolicies(text: string): void {
    rejecting(() => this.daemon.replacePolicies(text));
  }

  resetPolicies(): void {
    this.daemon.resetPolicies();
  }

  pause(reason: string): void {
    this.daemon.pause(reason);
  }

  resume(): void {
    this.daemon.resume();
  }

  setLogLevel(level: LogLevel): void {
    this.logger.setLevel?.(level);
    this.logger.info('log_level', { level });
  }
}

/** A compile error of a policy set becomes a PolicyRejectedError (its message keeps FILE:LINE:COL). */
function rejecting<T>(f: () => T): T {
  try {
    return f();
  } catch (err) {
    throw new PolicyRejectedError(errorMessage(err));
  }
}
