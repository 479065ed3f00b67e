// KSM, a host control: the policy's ksm_run, ksm_pages_to_scan, ksm_sleep_millisecs and
// ksm_merge_across_nodes, range-checked, written to the kernel's /sys/kernel/mm/ksm (or to the
// KSM a driver owns itself: the simulated host's), and put back as found when the daemon stops.
import type { KsmBackend, KsmSettings } from '../../types.js';
import type { ControlModule } from '../control.js';
import { type KsmSection, ksmSection } from './config.js';
import { KsmController, KSM_CONTROLS } from './controller.js';
import { guardKsm } from './guard.js';

export const ksm = {
  name: 'ksm',
  scope: 'host',
  controls: KSM_CONTROLS,
  section: { key: 'ksm' as const, schema: ksmSection },
  enabled: (s) => s.enabled,
  offReason: 'KSM control disabled (config ksm.enabled)',
  guard: (control, requested) => guardKsm(control, requested),
  setup(env, section) {
    if (!section.enabled) return 'KSM control disabled (config ksm.enabled)';
    // The driver says where its guests' KSM is (the host's sysfs, the simulator's); a driver that
    // offers none (a test's wrapper) gets no KSM control rather than the real host's.
    const backend: (KsmBackend & { restore?: () => Promise<void> }) | undefined = env.hypervisor.capabilities?.ksm;
    if (!backend) return `no KSM: the ${env.hypervisor.name} driver offers none`;
    const controller = new KsmController(backend);
    let atStart: Partial<KsmSettings> | undefined;
    return {
      controller,
      learnHost: (host) => controller.learn(host),
      remember: async () => {
        // Observe only: nothing is written, so there is nothing to put back.
        if (!section.restore_on_exit || env.readOnly !== undefined) return;
        atStart = await controller.readSettings();
      },
      restore: async () => {
        if (!section.restore_on_exit || env.readOnly !== undefined) return undefined;
        // sysfs remembers what it changed (restore); another backend is set back to what was read at start.
        if (backend.restore) await backend.restore();
        else if (atStart) await controller.restore(atStart);
        else return undefined;
        return `KSM settings put back (ksm.restore_on_exit): ${JSON.stringify(atStart ?? {})}`;
      },
    };
  },
} satisfies ControlModule<KsmSection>;
