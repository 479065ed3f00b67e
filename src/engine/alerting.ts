// Turns the pure alert rules (src/host/alerts.ts) into log records: one `alert` when an alert
// starts, one `alert_cleared` when it ends, never one per cycle. Runs after each collection,
// so alerts follow the statistics interval, not the policy's.
import { AlertTracker, evaluateAlerts, guestUsed, LeakLows, type AlertEvent, type AlertThresholds } from '../host/alerts.js';
import type { Logger } from '../log/logger.js';
import type { Stats } from '../types.js';

export interface AlertSource {
  histories(): { host: readonly Stats[]; guests: ReadonlyMap<string, readonly Stats[]> };
}

export class AlertMonitor {
  private readonly tracker: AlertTracker;
  private readonly leakLows: LeakLows;
  private activeNow: AlertEvent[] = [];
  /** Alerts started since the daemon started, by kind. */
  readonly raisedTotal: Record<AlertEvent['kind'], number> = { low_available: 0, high_usage: 0, paging: 0, guest_leak: 0, map_count: 0 };

  /** `clearAfter`: collections in a row without an alert before it counts as cleared. */
  constructor(
    private readonly source: AlertSource,
    private readonly thresholds: AlertThresholds,
    private readonly log: Logger,
    clearAfter = 1,
  ) {
    this.tracker = new AlertTracker(clearAfter);
    this.leakLows = new LeakLows(thresholds);
  }

  check(): { raised: AlertEvent[]; cleared: AlertEvent[] } {
    const h = this.source.histories();
    // A guest that vanished (or has only stale statistics) takes its alerts with it at once:
    // say so rather than pretend it recovered.
    const unseen = this.tracker.dropEntities((e) => e === 'host' || h.guests.has(e));
    for (const a of unseen) this.log.info('alert_cleared', { ...fields(a), reason: 'no current statistics for the guest (gone or stale)' });
    this.leakLows.retain((name) => h.guests.has(name));
    const lows = new Map<string, readonly number[]>();
    for (const [name, hist] of h.guests) {
      const latest = hist[hist.length - 1];
      this.leakLows.observe(name, latest ? guestUsed(latest) : null);
      lows.set(name, this.leakLows.lows(name));
    }
    const { raised, cleared, active } = this.tracker.update(evaluateAlerts(h.host, lows, this.thresholds));
    this.activeNow = active;
    for (const a of raised) {
      this.raisedTotal[a.kind]++;
      this.log.log(a.severity === 'critical' ? 'error' : 'warn', 'alert', fields(a));
    }
    for (const a of cleared) this.log.info('alert_cleared', { ...fields(a), reason: 'back within the threshold' });
    return { raised, cleared: [...unseen, ...cleared] };
  }

  active(): readonly AlertEvent[] {
    return this.activeNow;
  }
}

function fields(a: AlertEvent) {
  return { kind: a.kind, severity: a.severity, entity: a.entity, value: Number(a.value.toPrecision(4)), threshold: a.threshold, msg: a.message };
}
