// The DaemonPort over a running Daemon: reads come from the engine's state, events from the
// daemon's log (EventLog), updates from the engine's collect and cycle hooks.
import type { Daemon } from '../engine/daemon.js';
import type { EventLog } from './event-log.js';
import type { DaemonPort, GuestState, HealthState, HostState, PolicyInfo, TimedStats } from './port.js';
import type { LogLevel } from '../log/logger.js';

const VERSION = '0.1.0';

export class DaemonApiPort implements DaemonPort {
  private readonly startedAt = Date.now() / 1000;

  constructor(private readonly daemon: Daemon, private readonly eventLog: EventLog) {}

  health(): HealthState {
    const s = this.daemon.engine.snapshot();
    const problems: string[] = [];
    if (s.host.stale) problems.push(s.host.stale);
    const stale = s.guests.filter((g) => g.stale);
    if (stale.length) problems.push(`${stale.length} guest(s) stale: ${stale[0]!.stale}`);
    return {
      status: problems.length ? 'degraded' : 'ok', version: VERSION, hypervisor: this.daemon.backends.describe,
      startedAt: this.startedAt, time: s.time, cycle: s.cycle, paused: false, policyLoaded: s.policyLoaded, problems,
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
    return () => { a(); b(); };
  }

  // The write side (named policies, pause, log level) is built with the HTTP API.
  policies(): PolicyInfo[] {
    throw new Error('not implemented yet');
  }
  setPolicy(_name: string, _text: string): PolicyInfo {
    throw new Error('not implemented yet');
  }
  deletePolicy(_name: string): boolean {
    throw new Error('not implemented yet');
  }
  replacePolicies(_text: string): void {
    throw new Error('not implemented yet');
  }
  resetPolicies(): void {
    throw new Error('not implemented yet');
  }
  pause(_reason: string): void {
    throw new Error('not implemented yet');
  }
  resume(): void {
    throw new Error('not implemented yet');
  }
  setLogLevel(_level: LogLevel): void {
    throw new Error('not implemented yet');
  }
}
