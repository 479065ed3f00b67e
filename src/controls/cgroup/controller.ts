// The cgroup controller: per-guest memory.high / memory.max (ballast's own controls mem_high,
// mem_max, KiB; null removes the limit) through a CgroupBackend. Writes only changed limits.
import type { CgroupBackend, GuestSample, MemLimits } from '../../types.js';
import { failedOutcome, type Action, type ActionOutcome, type ActuationContext, type Controller } from '../control.js';

export class CgroupController implements Controller {
  readonly name = 'cgroup';
  readonly controls = ['mem_high', 'mem_max'] as const;
  private readonly written = new Map<string, { mem_high?: number | null; mem_max?: number | null }>();

  constructor(
    private readonly backend: CgroupBackend,
    private readonly lookup: (guestId: string) => GuestSample | undefined,
  ) {}

  async apply(actions: readonly Action[], ctx: ActuationContext): Promise<ActionOutcome[]> {
    const outcomes: ActionOutcome[] = [];
    const byGuest = new Map<string, Action[]>();
    for (const a of actions) {
      if (!a.guestId) {
        outcomes.push({ action: a, result: 'failed', error: 'cgroup action without guest' });
        continue;
      }
      const prev = this.written.get(a.guestId)?.[a.control as 'mem_high' | 'mem_max'];
      if (prev !== undefined && prev === a.to) {
        outcomes.push({ action: a, result: 'unchanged' });
        continue;
      }
      const list = byGuest.get(a.guestId) ?? [];
      list.push(a);
      byGuest.set(a.guestId, list);
    }
    for (const [id, list] of byGuest) {
      const guest = this.lookup(id);
      if (!guest || ctx.isGone(id)) {
        for (const a of list) outcomes.push({ action: a, result: 'dropped', error: 'guest vanished before actuation' });
        continue;
      }
      const limits: MemLimits = {};
      for (const a of list) {
        if (a.control === 'mem_high') limits.high = a.to;
        else limits.max = a.to;
      }
      try {
        await this.backend.setLimits(guest, limits);
        const w = this.written.get(id) ?? {};
        for (const a of list) w[a.control as 'mem_high' | 'mem_max'] = a.to;
        this.written.set(id, w);
        for (const a of list) outcomes.push({ action: a, result: 'applied' });
      } catch (err) {
        for (const a of list) outcomes.push(failedOutcome(a, err, ctx.isGone(id)));
      }
    }
    return outcomes;
  }

  /** Whether a limit ballast wrote is in force on the guest. */
  limits(guestId: string): boolean {
    const w = this.written.get(guestId);
    return w !== undefined && ((w.mem_high ?? null) !== null || (w.mem_max ?? null) !== null);
  }

  forget(guestId: string): void {
    this.written.delete(guestId);
  }
}
