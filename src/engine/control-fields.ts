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

  /** A guest that is gone: what was said and the backoffs go with it. */
  forget(guestId: string): void {
    this.errors.forgetPrefix(`${guestId}\0`);
    this.retry.forgetPrefix(`${guestId}\0`);
  }

  async add(samples: readonly GuestSample[]): Promise<void> {
    for (const { module, instance } of this.instances) {
      const known = instance.guestFields;
      const read = instance.readGuestFields;
      if (!known && !read) continue;
      // One key per guest and module, for what was said and for the backoff.
      const keyOf = (sample: GuestSample) => `${sample.id}\0${module.name}`;
      const ok = (sample: GuestSample, fields: Stats) => {
        Object.assign(sample.stats, fields);
        if (this.errors.size > 0) this.errors.forget(keyOf(sample));
      };
      const unknown: GuestSample[] = [];
      const now = this.now();
      for (const sample of samples) {
        if (sample.stale) continue;
        const f = known?.call(instance, sample);
        if (f) ok(sample, f);
        else if (read && !this.retry.waiting(keyOf(sample), now)) unknown.push(sample);
      }
      await mapLimited(unknown, 16, async (sample) => {
        const key = keyOf(sample);
        try {
          ok(sample, await read!.call(instance, sample));
          this.retry.ok(key);
        } catch (err) {
          const error = errorMessage(err);
          this.retry.failed(key, failureKind(err), error, now);
          if (this.errors.first(key, error))
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
