// Failed controls back off: a control that failed (EPERM on a read-only sysfs, a cgroup file
// that went away, a driver refusing a guest) is not tried again every cycle. It waits 30 s,
// doubling up to 10 min, or an hour when the host or guest does not support it; success clears
// it. Giving memory back (deflating, lifting a limit: each module says which of its actions
// do) is never held back: it relieves a guest.
import type { Action, ActionOutcome } from '../controls/control.js';

const FIRST_S = 30;
const MAX_S = 600;
/** A control the host or guest does not support is tried again after an hour (it may be upgraded). */
const UNSUPPORTED_RETRY_S = 3600;
/** Entries kept at most (a flood of distinct failures must not grow memory without bound). */
const MAX_ENTRIES = 10_000;

const keyOf = (a: Action) => `${a.entity}\0${a.control}`;

/** When something that failed may be tried again, by key: 30 s doubling up to 10 min, an hour
 *  for what the host or guest does not support; success forgets it. */
export class FailureRetry {
  private readonly entries = new Map<string, { retryAt: number; delayS: number; error: string }>();

  /** What `key` waits after, or undefined when it may be tried at `now`. */
  waiting(key: string, now: number): { retryAt: number; error: string } | undefined {
    const b = this.entries.get(key);
    return b && now < b.retryAt ? b : undefined;
  }

  failed(key: string, kind: string | undefined, error: string, now: number): void {
    const prev = this.entries.get(key);
    const delayS = kind === 'unsupported' ? UNSUPPORTED_RETRY_S : prev ? Math.min(prev.delayS * 2, MAX_S) : FIRST_S;
    if (prev || this.entries.size < MAX_ENTRIES) this.entries.set(key, { retryAt: now + delayS, delayS, error });
  }

  ok(key: string): void {
    this.entries.delete(key);
  }

  forgetPrefix(prefix: string): void {
    for (const k of this.entries.keys()) if (k.startsWith(prefix)) this.entries.delete(k);
  }
}

export class Backoff {
  private readonly retry = new FailureRetry();

  constructor(private readonly givesBack: (a: Action) => boolean = () => false) {}

  /** The outcome to report instead of trying `a` now, or undefined to try it. */
  defer(a: Action, now: number): ActionOutcome | undefined {
    const b = this.retry.waiting(keyOf(a), now);
    if (!b || this.givesBack(a)) return undefined;
    return { action: a, result: 'deferred', error: `retrying at t=${Math.round(b.retryAt)} after: ${b.error}` };
  }

  update(o: ActionOutcome, now: number): void {
    const key = keyOf(o.action);
    if (o.result === 'applied' || o.result === 'unchanged') this.retry.ok(key);
    else if (o.result === 'failed') this.retry.failed(key, o.kind, o.error ?? 'failed', now);
  }

  /** A guest that is gone: its entries go with it. */
  forget(entity: string): void {
    this.retry.forgetPrefix(`${entity}\0`);
  }
}
