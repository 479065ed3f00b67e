// The [cgroup] config section. `host.cgroup_limits = true`, its older spelling, turns it on too.
import { bool, section } from '../../config-fields.js';

export const cgroupSection = section({
  /** Apply the mem_high / mem_max guest controls through each guest's cgroup (memory.high / memory.max). */
  enabled: bool().default(false),
});

export interface CgroupSection {
  enabled: boolean;
}
