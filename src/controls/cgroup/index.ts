// cgroup memory limits, a guest control: the policy's mem_high / mem_max (KiB; -1 or "max"
// removes the limit) written to each guest's cgroup memory.high / memory.max, never below the
// guest's balloon floor. Off unless [cgroup] enabled (or host.cgroup_limits) is set.
import { type ControlModule, raisesGuest } from '../control.js';
import { type CgroupSection, cgroupSection } from './config.js';
import { CgroupController } from './controller.js';
import { CGROUP_CONTROLS, guardCgroup } from './guard.js';

export const cgroup = {
  name: 'cgroup',
  scope: 'guest',
  controls: CGROUP_CONTROLS,
  section: { key: 'cgroup' as const, schema: cgroupSection },
  enabled: (s) => s.enabled,
  offReason: 'cgroup limits disabled (config cgroup.enabled)',
  guard: guardCgroup,
  // Lifting or raising a limit relieves the guest: never held back by a failure's backoff.
  givesBack: raisesGuest,
  setup(env, section) {
    if (!section.enabled) return 'cgroup limits disabled (config cgroup.enabled)';
    const limits = env.hypervisor.capabilities?.cgroupLimits;
    if (!limits) return `no cgroup limits: the ${env.hypervisor.name} driver offers none`;
    const controller = new CgroupController(limits, env.lookup);
    return { controller, holds: (id) => controller.limits(id) };
  },
} satisfies ControlModule<CgroupSection>;
