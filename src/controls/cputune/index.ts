// CPU tuning, a guest control: MOM's CpuTune. oVirt's 04-cputune.policy sets each guest's
// vcpu_quota and vcpu_period (µs); this module guards them, writes them through the driver's
// way of holding them (libvirt scheduler parameters, the QEMU process's cgroup cpu.max, or the
// simulator: each driver's `cpuTune` capability), and reports the values in force as the
// guest fields vcpu_quota / vcpu_period.
import type { CpuTune } from '../../types.js';
import { failedOutcome, type ActionOutcome, type ControlModule } from '../control.js';
import { type CputuneSection, cputuneSection } from './config.js';
import { CPUTUNE_CONTROLS, guardCpuTune } from './guard.js';

/** Collections between re-reads of a guest's values (someone else may change them). */
const REREAD_EVERY = 12;

export const cputune = {
  name: 'cputune',
  scope: 'guest',
  controls: CPUTUNE_CONTROLS,
  section: { key: 'cputune' as const, schema: cputuneSection },
  enabled: (s) => s.enabled,
  offReason: 'CPU tuning disabled (config cputune.enabled)',
  guard: (control, requested) => guardCpuTune(control, requested),
  setup(env) {
    const backend = env.hypervisor.capabilities?.cpuTune;
    // Said once at setup rather than as a failed read per guest.
    if (!backend)
      return `no CPU tuning for the ${env.hypervisor.name} driver${env.hypervisor.name === 'qmp' ? ': it sets cpu.max, and cgroup v2 is not mounted at /sys/fs/cgroup' : ''}`;
    // What is in force per guest, and how many collections ago it was read.
    const known = new Map<string, { tune: CpuTune; age: number }>();
    return {
      controller: {
        name: 'cputune',
        controls: CPUTUNE_CONTROLS,
        async apply(actions, ctx) {
          const byGuest = new Map<string, (typeof actions)[number][]>();
          const out: ActionOutcome[] = [];
          for (const a of actions) {
            if (!a.guestId || a.to === null) out.push({ action: a, result: 'failed', error: 'CPU tuning action without guest or value' });
            else if (ctx.isGone(a.guestId)) out.push({ action: a, result: 'dropped', error: 'guest vanished before actuation' });
            else if (known.get(a.guestId)?.tune[a.control === 'vcpu_quota' ? 'quota' : 'period'] === a.to) out.push({ action: a, result: 'unchanged' });
            else byGuest.set(a.guestId, [...(byGuest.get(a.guestId) ?? []), a]);
          }
          for (const [id, list] of byGuest) {
            const tune: Partial<CpuTune> = {};
            for (const a of list) tune[a.control === 'vcpu_quota' ? 'quota' : 'period'] = a.to;
            try {
              await backend.write(id, tune);
              const k = known.get(id);
              if (k) Object.assign(k.tune, tune);
              for (const a of list) out.push({ action: a, result: 'applied' });
            } catch (err) {
              known.delete(id);
              for (const a of list) out.push(failedOutcome(a, err, ctx.isGone(id)));
            }
          }
          return out;
        },
        forget: (id) => known.delete(id),
      },
      guestFields(g) {
        const k = known.get(g.id);
        return k && ++k.age < REREAD_EVERY ? { vcpu_quota: k.tune.quota, vcpu_period: k.tune.period } : undefined;
      },
      async readGuestFields(g) {
        const tune = await backend.read(g.id);
        known.set(g.id, { tune, age: 0 });
        return { vcpu_quota: tune.quota, vcpu_period: tune.period };
      },
    };
  },
} satisfies ControlModule<CputuneSection>;
