// KSM, a host control: the policy's ksm_run, ksm_pages_to_scan, ksm_sleep_millisecs and
// ksm_merge_across_nodes, written through a KsmBackend (sysfs on a real host, the simulator's
// KSM otherwise), range-checked, and put back as found when the daemon stops.
import type { KsmSettings } from '../../types.js';
import type { ControlModule } from '../control.js';
import { KsmController, KSM_CONTROLS } from './controller.js';
import { guardKsm } from './guard.js';

export const ksm: ControlModule = {
  name: 'ksm',
  scope: 'host',
  controls: KSM_CONTROLS,
  enabled: (config) => config.ksm.enabled,
  offReason: 'KSM control disabled (config ksm.enabled or no KSM backend)',
  guard: (control, requested) => guardKsm(control, requested),
  setup(env, config) {
    const backend = env.ksm;
    if (!backend) return 'no KSM backend on this host';
    const controller = new KsmController(backend);
    let atStart: Partial<KsmSettings> | undefined;
    return {
      controller,
      learnHost: (host) => controller.learn(host),
      remember: async () => {
        if (config?.ksm.restore_on_exit === false) return;
        atStart = await controller.readSettings();
      },
      restore: async () => {
        if (config?.ksm.restore_on_exit === false) return undefined;
        const own = (backend as { restore?: () => Promise<void> }).restore;
        if (own) await own.call(backend);
        else if (atStart) await controller.restore(atStart);
        else return undefined;
        return `KSM settings put back (ksm.restore_on_exit): ${JSON.stringify(atStart ?? {})}`;
      },
    };
  },
};
