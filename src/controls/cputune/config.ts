// The [cputune] config section.
import { bool, section } from '../../config-fields.js';

export const cputuneSection = section({
  /** Let policies set each guest's vcpu_quota / vcpu_period (MOM's CpuTune, vdsm's 04-cputune.policy). */
  enabled: bool().default(true),
});

export interface CputuneSection {
  enabled: boolean;
}
