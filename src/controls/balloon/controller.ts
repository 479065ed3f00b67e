// The balloon controller: sets each guest's balloon target through the hypervisor driver.
// Targets arrive already guarded (clamped, rate-limited); this only carries them out.
import type { Hypervisor } from '../../types.js';
import { failedOutcome, mapLimited, type Action, type ActionOutcome, type ActuationContext, type Controller } from '../control.js';

export class BalloonController implements Controller {
  readonly name = 'balloon';
  readonly controls = ['balloon_target'] as const;

  constructor(
    private readonly hypervisor: Hypervisor,
    private readonly concurrency = 16,
  ) {}

  async apply(actions: readonly Action[], ctx: ActuationContext): Promise<ActionOutcome[]> {
    return mapLimited(actions, this.concurrency, async (action): Promise<ActionOutcome> => {
      const id = action.guestId;
      if (id === undefined || action.to === null) return { action, result: 'failed', error: 'balloon action without guest or target' };
      if (ctx.isGone(id)) return { action, result: 'dropped', error: 'guest vanished before actuation' };
      try {
        await this.hypervisor.setBalloon(id, action.to);
        return { action, result: 'applied' };
      } catch (err) {
        // The guest may have vanished between the plan and the call: report it as such.
        return failedOutcome(action, err, ctx.isGone(id));
      }
    });
  }
}
