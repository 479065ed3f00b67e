// Guest fields oVirt's MOM collectors report that ballast does not collect, filled in as an
// oVirt guest without CPU or I/O limits has them, so vdsm's policies (04-cputune, 05-iotune)
// evaluate instead of failing on an unknown field, which would veto every guest's part,
// balloon included: io_tune is nil (vdsm's GuestIoTuneOptional without data) and
// vcpu_user_limit is 100 (no CPU limit: the cputune policy then resets, never reads quota).
import type { Stats } from '../types.js';

export function withMomDefaults(stats: Stats): Stats {
  if (!('io_tune' in stats)) stats.io_tune = null;
  if (!('vcpu_user_limit' in stats)) stats.vcpu_user_limit = 100;
  return stats;
}
