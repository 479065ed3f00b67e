// Which collection sources (host sources, and the hypervisor) are failing now: since when, how
// many collections, with what error. A failure is logged when it starts or its error changes,
// and a recovery once, with how long it lasted; not every collection in between.
import type { Logger } from '../log/logger.js';

export class SourceHealth {
  private readonly failing = new Map<string, { since: number; count: number; error: string }>();

  constructor(private readonly log: Logger) {}

  /** Counts a failed collection of `key`; true when it should be logged (it starts failing, or its error changed). */
  failed(key: string, error: string, time: number): boolean {
    const f = this.failing.get(key);
    if (f && f.error === error) {
      f.count++;
      return false;
    }
    this.failing.set(key, { since: f?.since ?? time, count: (f?.count ?? 0) + 1, error });
    return true;
  }

  /** A collection of `key` worked: if it was failing, say so once, with how long and how often. */
  recovered(key: string, event: string, fields: Record<string, unknown>): void {
    const f = this.failing.get(key);
    if (!f) return;
    this.failing.delete(key);
    this.log.info(event, { ...fields, failed_collections: f.count, reason: `failing since t=${Math.round(f.since)}: ${f.error}` });
  }
}
