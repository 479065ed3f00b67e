// virtio-mem, a guest control: the policy's vmem_target (KiB) is the size a guest's virtio-mem
// device should have. Memory goes back to the host in whole blocks (2 MiB or more), so the
// host's huge pages stay whole where a 4 KiB balloon would split them. Needs the driver's
// `memoryDevices` capability (libvirt, QMP, the simulator); a guest without a device reports
// no vmem_* fields and its requests are vetoed. The guard (guard.ts) keeps the balloon's floor
// rules in blocks: free memory only, one step a cycle, rollback, and an unplug that stops short
// is reported rather than chased. With several devices, the first is the one managed.
import { errorMessage } from '../../errors.js';
import type { MemoryDevice, Stats } from '../../types.js';
import {
  type ActionOutcome,
  type ControlModule,
  failedOutcome,
  type GuestModulePlan,
  type GuestPlanInput,
  mapLimited,
  planFromGuard,
  raisesGuest,
} from '../control.js';
import { type VmemSection, vmemSection } from './config.js';
import { deviceOf, guardVmem, type VmemState } from './guard.js';
import { addPeakOf, recentPeak } from '../peaks.js';
import { finite } from '../../numbers.js';

export const VMEM_CONTROLS = ['vmem_target'] as const;

/** Collections between re-reads of a device that is not moving (someone else may resize it). */
const REREAD_EVERY = 12;
/** ... and of a guest that had no device (devices can be hot-added). */
const NONE_REREAD_EVERY = 60;

const NO_STATE: VmemState = Object.freeze({ guard: Object.freeze({}) }) as VmemState;

/** A guest without a device: one shared object, not four nulls per guest per collection. */
const NO_DEVICE: Stats = Object.freeze({ vmem_size: null, vmem_requested: null, vmem_block: null, vmem_max: null });

function fieldsOf(d: MemoryDevice | undefined): Stats {
  return d ? { vmem_size: d.size, vmem_requested: d.requested, vmem_block: d.block, vmem_max: d.max } : NO_DEVICE;
}

export function planVmem(inp: GuestPlanInput<VmemState>): GuestModulePlan<VmemState> {
  const st = inp.state ?? NO_STATE;
  const requested = inp.requested.vmem_target ?? undefined;
  const recent = recentPeak(st.peaks, inp.now, inp.safeguards.peakWindowS);
  const watchedS = st.since === undefined ? 0 : inp.now - st.since;
  const g = guardVmem({ history: inp.history, requested, stale: inp.stale, state: st, cycle: inp.cycle, now: inp.now, recent, watchedS }, inp.safeguards);
  // The guard's states carry no peaks: what observe keeps stays.
  const keep = (x: VmemState | undefined) =>
    x === undefined || st.peaks === undefined || (x.peaks === st.peaks && x.since === st.since) ? x : { ...x, peaks: st.peaks, since: st.since };
  return planFromGuard(inp, 'vmem_target', requested, st, { ...g, next: keep(g.next)!, otherwise: keep(g.otherwise) });
}

export const vmem = {
  name: 'vmem',
  scope: 'guest',
  controls: VMEM_CONTROLS,
  section: { key: 'vmem' as const, schema: vmemSection },
  enabled: (s) => s.enabled,
  offReason: 'virtio-mem control disabled (config vmem.enabled)',
  planGuest: planVmem,
  // Each sample of a guest with a device adds to its recent peak (page cache counted).
  observe(state, _prev, cur, { time, safeguards }) {
    if (deviceOf(cur) === null) return undefined;
    const st = state ?? NO_STATE;
    const peaks = addPeakOf(st.peaks, finite(cur.mem_available), cur, time, safeguards.peakWindowS);
    return peaks === st.peaks ? undefined : { state: { ...st, peaks, since: st.since ?? time } };
  },
  view: (st) => ({ vmemHoldUntil: st.guard.holdUntil }),
  // Plugging gives the guest memory: never held back by a failure's backoff.
  givesBack: raisesGuest,
  setup(env, section) {
    const devices = env.hypervisor.capabilities?.memoryDevices;
    if (!devices) return `no virtio-mem: the ${env.hypervisor.name} driver does not offer memory devices`;
    // Per guest: its first device as last read, and how many collections ago.
    const known = new Map<string, { dev: MemoryDevice | undefined; age: number }>();
    const shrunk = new Set<string>();
    return {
      controller: {
        name: 'vmem',
        controls: VMEM_CONTROLS,
        async apply(actions, ctx) {
          return mapLimited(actions, 16, async (a): Promise<ActionOutcome> => {
            if (!a.guestId || a.to === null) return { action: a, result: 'failed', error: 'virtio-mem action without guest or size' };
            if (ctx.isGone(a.guestId)) return { action: a, result: 'dropped', error: 'guest vanished before actuation' };
            const k = known.get(a.guestId);
            try {
              const dev = k?.dev ?? (await devices.list(a.guestId))[0];
              if (!dev) return { action: a, result: 'failed', error: 'the guest has no virtio-mem device', kind: 'unsupported' };
              await devices.resize(a.guestId, dev.id, a.to);
              if (a.to < dev.max) shrunk.add(a.guestId);
              else shrunk.delete(a.guestId);
              // Read it again next collection: it is moving now.
              known.delete(a.guestId);
              return { action: a, result: 'applied' };
            } catch (err) {
              known.delete(a.guestId);
              return failedOutcome(a, err, ctx.isGone(a.guestId));
            }
          });
        },
        forget: (id) => {
          known.delete(id);
          shrunk.delete(id);
        },
      },
      holds(_id, s) {
        const d = deviceOf(s);
        return d !== null && d.requested < d.max;
      },
      guestFields(g) {
        const k = known.get(g.id);
        if (!k) return undefined;
        const moving = k.dev !== undefined && k.dev.size !== k.dev.requested;
        return !moving && ++k.age < (k.dev ? REREAD_EVERY : NONE_REREAD_EVERY) ? fieldsOf(k.dev) : undefined;
      },
      async readGuestFields(g) {
        const dev = (await devices.list(g.id))[0];
        known.set(g.id, { dev, age: 0 });
        return fieldsOf(dev);
      },
      async restore(guests) {
        if (!section.restore_on_exit || env.readOnly !== undefined) return undefined;
        const done: string[] = [];
        for (const g of guests) {
          if (!shrunk.has(g.id)) continue;
          try {
            const dev = (await devices.list(g.id))[0];
            if (dev && dev.requested < dev.max) {
              await devices.resize(g.id, dev.id, dev.max);
              done.push(g.name);
            }
          } catch (err) {
            env.log.warn('action_failed', { entity: g.name, control: 'vmem_target', error: errorMessage(err), reason: ['vmem.restore_on_exit'] });
          }
        }
        return done.length ? `virtio-mem plugged back to the maximum (vmem.restore_on_exit): ${done.join(', ')}` : undefined;
      },
    };
  },
} satisfies ControlModule<VmemSection, VmemState>;
