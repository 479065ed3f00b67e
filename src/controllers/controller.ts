// One interface for everything that changes the world: balloon, KSM, cgroup limits.
// The engine hands each controller the actions the guard let through; the controller carries
// them out and reports one outcome per action. A controller never throws: a failure is an
// outcome with its error, so one bad guest or a read-only sysfs cannot stop the loop.

/** 'deferred': not tried, because the same control failed recently and is backing off. */
export type ActionResult = 'applied' | 'unchanged' | 'failed' | 'dropped' | 'deferred';

export interface Action {
  /** 'host' or the guest's name. */
  entity: string;
  /** The driver's key for the guest (absent for host actions). */
  guestId?: string;
  control: string;
  /** Value before (when known). */
  from: number | null;
  /** Value to set; null removes a limit (cgroup). */
  to: number | null;
  /** Why: the policy's request and everything the guard did to it. */
  reasons: string[];
}

export interface ActionOutcome {
  action: Action;
  result: ActionResult;
  error?: string;
}

export interface ActuationContext {
  /** True when the guest vanished after the plan was made (lifecycle event or failed lookup). */
  isGone(guestId: string): boolean;
}

export interface Controller {
  readonly name: string;
  /** The controls this controller carries out. */
  readonly controls: readonly string[];
  apply(actions: readonly Action[], ctx: ActuationContext): Promise<ActionOutcome[]>;
  /** Called when a guest is gone for good: forget what was cached about it. */
  forget?(guestId: string): void;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Run `fn` over `items` with at most `limit` in flight (drivers pipeline requests; a
 *  thousand concurrent RPCs would only queue in the socket). */
export async function mapLimited<T, R>(items: readonly T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
