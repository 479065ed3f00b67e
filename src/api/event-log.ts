// The daemon's recent events for the API and the dashboard: a logger sink that keeps the
// newest records (at info and above by default) in a ring and tells subscribers about each.
// The log already carries every action, veto, rollback, error, alert and policy load with its
// reason, so the API shows exactly what the journal shows.
import { teeLogger, type LogLevel, type Logger } from '../log/logger.js';
import type { DaemonEvent } from './port.js';

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export class EventLog {
  private readonly ring: DaemonEvent[] = [];
  private head = 0;
  private seq = 0;
  private readonly listeners = new Set<(e: DaemonEvent) => void>();

  constructor(
    private readonly capacity = 1000,
    private readonly minLevel: LogLevel = 'info',
  ) {}

  /** A logger whose records land here (records below `minLevel` are dropped). */
  logger(base: Record<string, unknown> = {}): Logger {
    const log = (level: LogLevel, event: string, fields?: Record<string, unknown>) =>
      this.add({ ts: new Date().toISOString(), level, event, ...base, ...fields });
    return {
      log,
      debug: (e, f) => log('debug', e, f),
      info: (e, f) => log('info', e, f),
      warn: (e, f) => log('warn', e, f),
      error: (e, f) => log('error', e, f),
      child: (fields) => this.logger({ ...base, ...fields }),
    };
  }

  /** `base` plus this log. */
  tee(base: Logger): Logger {
    return teeLogger(base, this.logger());
  }

  add(rec: { ts: string; level: LogLevel; event: string; [k: string]: unknown }): void {
    if (RANK[rec.level] < RANK[this.minLevel]) return;
    const { ts, level, event, ...fields } = rec;
    const e: DaemonEvent = { seq: ++this.seq, ts, level, event, fields };
    if (this.ring.length < this.capacity) this.ring.push(e);
    else {
      this.ring[this.head] = e;
      this.head = (this.head + 1) % this.capacity;
    }
    for (const l of this.listeners) {
      try {
        l(e);
      } catch {
        // A subscriber's failure (a closed SSE stream) must not reach the logger's caller.
      }
    }
  }

  /** Events with seq > since, oldest first. */
  since(since = 0): DaemonEvent[] {
    const all = this.head === 0 ? this.ring : [...this.ring.slice(this.head), ...this.ring.slice(0, this.head)];
    return since > 0 ? all.filter((e) => e.seq > since) : [...all];
  }

  subscribe(listener: (e: DaemonEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
