// KSM, a host control: the policy's ksm_run, ksm_pages_to_scan, ksm_sleep_millisecs and
// ksm_merge_across_nodes, range-checked, written to the kernel's /sys/kernel/mm/ksm (or to the
// KSM a driver owns itself: the simulated host's), and put back as found when the daemon stops.
import { join } from 'node:path';
import type { KsmBackend, KsmSettings } from '../../types.js';
import type { ControlModule } from '../control.js';
import { type KsmSection, ksmSection } from './config.js';
import { KsmController, KSM_CONTROLS } from './controller.js';
import { guardKsm } from './guard.js';

/** The journal of the values KSM had before ballast changed them, in the daemon's runtime
 *  directory (src/host/ksm-sysfs.ts keeps it). */
export const KSM_JOURNAL = 'ksm-found.json';

/** What a backend that can put KSM back offers beyond KsmBackend (KsmSysfs does). */
interface KsmRestorable {
  restore?: () => Promise<void>;
  changed?: () => Record<string, string>;
  keepJournal?: (path: string) => Promise<Record<string, string>>;
}

export const ksm = {
  name: 'ksm',
  scope: 'host',
  controls: KSM_CONTROLS,
  section: { key: 'ksm' as const, schema: ksmSection },
  enabled: (s) => s.enabled,
  offReason: 'KSM control disabled (config ksm.enabled)',
  guard: (control, requested, latest, safeguards) => guardKsm(control, requested, latest, safeguards),
  setup(env, section) {
    if (!section.enabled) return 'KSM control disabled (config ksm.enabled)';
    // The driver says where its guests' KSM is (the host's sysfs, the simulator's); a driver that
    // offers none (a test's wrapper) gets no KSM control rather than the real host's.
    const backend: (KsmBackend & KsmRestorable) | undefined = env.hypervisor.capabilities?.ksm;
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
        // A daemon that died without its restore left the values it found in its journal:
        // they, not what it left behind, are what this one puts back.
        if (backend.keepJournal && env.stateDir) {
          const path = join(env.stateDir, KSM_JOURNAL);
          try {
            const taken = await backend.keepJournal(path);
            if (Object.keys(taken).length > 0)
              env.log.warn('ksm_journal_taken_over', {
                file: path,
                knobs: taken,
                reason: 'an earlier ballast stopped without putting KSM back: these values are put back on exit',
              });
          } catch (err) {
            env.log.warn('ksm_journal_failed', {
              file: path,
              error: (err as Error).message,
              reason: 'KSM is still put back on a clean stop, not after a crash',
            });
          }
        }
      },
      restore: async () => {
        if (!section.restore_on_exit || env.readOnly !== undefined) return undefined;
        // sysfs remembers what it changed (restore); another backend is set back to what was read at start.
        if (backend.restore) {
          const changed = backend.changed?.() ?? {};
          await backend.restore();
          return Object.keys(changed).length > 0 ? `KSM settings put back (ksm.restore_on_exit): ${JSON.stringify(changed)}` : undefined;
        }
        if (!atStart) return undefined;
        await controller.restore(atStart);
        return `KSM settings put back (ksm.restore_on_exit): ${JSON.stringify(atStart)}`;
      },
    };
  },
} satisfies ControlModule<KsmSection>;
