// Fields the control modules add to fresh guest samples (the values in force, e.g. vcpu_quota):
// most are known without I/O; the rest are read, 16 guests at a time. A module that cannot read
// a guest's fields says so once per guest until it can again; the fields stay unknown.
import { errorMessage } from '../errors.js';
import { mapLimited, type ControlInstance, type ControlModule } from '../controls/control.js';
import type { Logger } from '../log/logger.js';
import type { GuestSample, Stats } from '../types.js';
import { LogOnce } from './log-once.js';

export class ControlFields {
  private readonly errors = new LogOnce();

  constructor(
    private readonly instances: readonly { module: ControlModule; instance: ControlInstance }[],
    private readonly log: Logger,
  ) {}

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
      for (const sample of samples) {
        if (sample.stale) continue;
        const f = known?.call(instance, sample);
        if (f) ok(sample, f);
        else if (read) unknown.push(sample);
      }
      await mapLimited(unknown, 16, async (sample) => {
        try {
          ok(sample, await read!.call(instance, sample));
        } catch (err) {
          const error = errorMessage(err);
          if (this.errors.first(`${module.name}\0${sample.id}`, error))
            this.log.warn('control_fields_failed', { control: module.name, guest: sample.name, error });
        }
      });
    }
  }
}
