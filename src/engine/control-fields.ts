// Fields the control modules add to fresh guest samples (the values in force, e.g. vcpu_quota):
// most are known without I/O; the rest are read, 16 guests at a time. A module that cannot read
// a guest's fields says so once per guest until it can again; the fields stay unknown, and the
// read backs off as a failed action does (30 s doubling to 10 min, an hour when unsupported:
// libvirt's session mode refused CPU tuning for every guest at every collection).
import { errorMessage, failureKind } from '../errors.js';
import { FailureRetry } from './backoff.js';
import { mapLimited, type ControlInstance, type ControlModule } from '../controls/control.js';
import type { Logger } from '../log/logger.js';
import type { GuestSample, Stats } from '../types.js';
import { LogOnce } from './log-once.js';

export class ControlFields {
  private readonly errors = new LogOnce();
  private readonly retry = new FailureRetry();

  constructor(
    private readonly instances: readonly { module: ControlModule; instance: ControlInstance }[],
    private readonly log: Logger,
    /** Seconds (the engine's clock). */
    private readonly now: () => number,
  ) {}

  /** A guest that is gone: its backoffs go with it. */
  forget(guestId: string): void {
    this.retry.forgetPrefix(`${guestId}\0`);
  }

  async add(samples: readonly GuestSample[]): Promise<void> {
    for (const { module, instance } of this.instances) {
      const known = instance.guestFields;
      const read = instance.readGuestFields;
      if (!known && !read) continue;
      const ok = (sample: GuestSample, fields: Stats) => {
        Object.assign(sample.stats, fields);
        if (this.errors.size > 0) this.errors.forget(`${module.name}\0${sample.id}`);
      };
      const unknown: GuestSample[] = [];
      const now = this.now();
      for (const sample of samples) {
        if (sample.stale) continue;
        const f = known?.call(instance, sample);
        if (f) ok(sample, f);
        else if (read && !this.retry.waiting(`${sample.id}\0${module.name}`, now)) unknown.push(sample);
      }
      await mapLimited(unknown, 16, async (sample) => {
        const key = `${sample.id}\0${module.name}`;
        try {
          ok(sample, await read!.call(instance, sample));
          this.retry.ok(key);
        } catch (err) {
          const error = errorMessage(err);
          this.retry.failed(key, failureKind(err), error, now);
          if (this.errors.first(`${module.name}\0${sample.id}`, error))
            this.log.warn('control_fields_failed', {
              control: module.name,
              guest: sample.name,
              error,
              reason: 'read again after a back-off (30 s doubling to 10 min, an hour when unsupported)',
            });
        }
      });
    }
  }
}
