// cgroup memory limits, a guest control: the policy's mem_high / mem_max (KiB; -1 or "max"
// removes the limit) written to each guest's cgroup memory.high / memory.max, never below the
// guest's balloon floor. Off unless host.cgroup_limits is set.
import type { ControlModule } from '../control.js';
import { CgroupController } from './controller.js';
import { CGROUP_CONTROLS, guardCgroup } from './guard.js';

export const cgroup: ControlModule = {
  name: 'cgroup',
  scope: 'guest',
  controls: CGROUP_CONTROLS,
  enabled: (config) => config.host.cgroup_limits,
  offReason: 'cgroup limits disabled (config host.cgroup_limits or no cgroup backend)',
  guard: guardCgroup,
  setup(env) {
    if (!env.cgroup) return 'no cgroup backend on this host';
    return { controller: new CgroupController(env.cgroup, env.lookup) };
  },
};
