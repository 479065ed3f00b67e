// The virtio-mem guard: what a policy's vmem_target may become. A device gives memory back in
// whole blocks (2 MiB or more, so the host's huge pages stay whole), but only blocks the guest
// can empty: it migrates the pages out first, and a block it cannot empty stays plugged. So:
// - an unplug takes at most the guest's free memory above its headroom (never its used memory
//   or page cache: that is the balloon's job), at most one step a cycle, in whole blocks;
// - and never what the guest used at its peak of the last safeguards.peak_window (page cache
//   counted): virtio-mem is for long-lived reductions, memory the guest has not needed for the
//   whole window; plugging back waits for a policy cycle and onlines memory, too slow for a
//   guest that grows back into its peak (the lab's guests were OOM-killed so, twice in a run,
//   when repeated unplugs of what was free between peaks left them their base memory), and
//   none before the guest has been watched for a whole window (a lab guest whose work had not
//   started yet lost its device so, and its first ramp was OOM-killed);
// - no unplug while the guest's use is unknown, its sample is stale, it stalls on memory, or it
//   backs off after a rollback; a swap-in, fault or stall spike after an unplug plugs it back;
// - a guest whose free memory fell under its headroom is plugged back, asked or not;
// - an unplug that stops short (plugged above requested for several cycles) is reported and
//   not chased: the request is set to what is plugged, and the guest is left alone a while.
// Pure: the same inputs give the same decision. Sizes in KiB; `requested` is the device's size.
import type { Stats } from '../../types.js';
import { finite } from '../../numbers.js';
import type { History } from '../../engine/history.js';
import type { GuardDecision } from '../control.js';
import { fmtKiB, type RecentPeak, type SafeguardConfig } from '../floor.js';
import type { PeakBucket } from '../peaks.js';
import { expireGuard, type GuestGuardState, rollbackReason } from '../balloon/guard.js';

/** Cycles a device may stay above its request before the unplug counts as stopped short. */
export const SHORT_AFTER_CYCLES = 3;

export interface VmemState {
  guard: GuestGuardState;
  /** First cycle at which the device was seen above its request (unplug still going). */
  shortSince?: number;
  /** The guest's use (of its own total, mem_available) in the recent past (peaks.ts). */
  peaks?: PeakBucket[];
  /** When its use was first watched (seconds). */
  since?: number;
}

export type VmemDecision = GuardDecision<VmemState>;

export interface VmemDevice {
  size: number;
  requested: number;
  block: number;
  max: number;
}

/** The device in a guest's sample (vmem_* fields), or null when it has none. */
export function deviceOf(s: Stats): VmemDevice | null {
  const size = finite(s.vmem_size);
  const requested = finite(s.vmem_requested);
  const block = finite(s.vmem_block);
  const max = finite(s.vmem_max);
  if (size === null || requested === null || block === null || max === null || block <= 0) return null;
  return { size, requested, block, max };
}

const up = (k: number, b: number) => Math.ceil(k / b - 1e-9) * b;
const down = (k: number, b: number) => Math.floor(k / b + 1e-9) * b;

export interface VmemGuardInput {
  history: History;
  requested: unknown;
  stale?: string;
  state: VmemState;
  cycle: number;
  now: number;
  /** Its peak use (mem_available - mem_unused, page cache counted) in the peak window. */
  recent?: RecentPeak;
  /** Seconds its use has been watched; undefined: not tracked (no such rule). */
  watchedS?: number;
}

export function guardVmem(inp: VmemGuardInput, cfg: SafeguardConfig): VmemDecision {
  const s = inp.history.latest() ?? {};
  let st = expire(inp.state, inp.cycle, inp.now, cfg);
  const dev = deviceOf(s);
  if (!dev) {
    return { verdict: inp.requested === undefined ? 'skip' : 'veto', from: null, to: null, reasons: ['no virtio-mem device'], next: st };
  }
  const { size, requested: req, block, max } = dev;
  const free = finite(s.mem_unused);

  // A device still above its request: the guest has not emptied the blocks yet. Past a few
  // cycles it will not; ask for what is plugged and leave the guest alone for a while.
  if (size > req) {
    const since = st.shortSince ?? inp.cycle;
    if (inp.cycle - since >= SHORT_AFTER_CYCLES) {
      const to = up(size, block);
      const hold = { ...st.guard, holdUntil: inp.now + cfg.rollbackBackoffS };
      return {
        verdict: 'apply',
        from: req,
        to,
        reasons: [
          `unplug stopped short: ${fmtKiB(size)} plugged, ${fmtKiB(req)} requested for ${inp.cycle - since} cycles (the guest cannot empty more blocks)`,
          `asking for what is plugged; no unplug for ${cfg.rollbackBackoffS} s`,
        ],
        next: { guard: hold },
        otherwise: { guard: hold, shortSince: since },
      };
    }
    if (st.shortSince === undefined) st = { ...st, shortSince: since };
  } else if (st.shortSince !== undefined) st = { guard: st.guard };

  // An unplug followed by swapping, faults or a stall: plug the step back and hold.
  const rb = rollbackReason(inp.history, st.guard, inp.cycle, cfg);
  if (rb !== null) {
    const to = Math.min(max, up(req + st.guard.lastInflation!.step, block));
    const next: VmemState = { guard: { holdUntil: inp.now + cfg.rollbackBackoffS } };
    const reasons = [rb.replace('after inflating', 'after unplugging'), `no unplug for ${cfg.rollbackBackoffS} s`];
    return to === req ? { verdict: 'skip', from: req, to: null, reasons, next } : { verdict: 'apply', from: req, to, reasons, next, otherwise: next };
  }
  return decideRequest(inp, cfg, st, dev, free);
}

function decideRequest(inp: VmemGuardInput, cfg: SafeguardConfig, st: VmemState, dev: VmemDevice, free: number | null): VmemDecision {
  const { requested: req, block, max } = dev;
  // Under its headroom a guest gets blocks back whatever the policy says (its floor).
  const short = free !== null && !inp.stale && free < cfg.headroomKiB && req < max;
  const raise = short ? Math.min(max, up(req + (cfg.headroomKiB - (free as number)), block)) : null;
  if (inp.requested === undefined) {
    if (raise !== null) return apply(req, raise, [`guest free ${fmtKiB(free as number)} under headroom ${fmtKiB(cfg.headroomKiB)}: plugged back at once`], st);
    return { verdict: 'skip', from: req, to: null, reasons: ['no vmem_target'], next: st };
  }
  const asked = finite(inp.requested);
  if (asked === null)
    return { verdict: 'veto', from: req, to: null, reasons: [`vmem_target is not a finite number: ${JSON.stringify(inp.requested)}`], next: st };
  const reasons: string[] = [];
  let t = Math.max(0, Math.min(max, asked));
  if (t !== asked) reasons.push(`clamped to the device's 0..${fmtKiB(max)}`);
  if (t < req) {
    const stall = cfg.psiStopPercent === null ? null : finite(inp.history.latest()?.psi_some_avg10);
    const why =
      dev.size > req
        ? `the last unplug is still going (${fmtKiB(dev.size)} plugged, ${fmtKiB(req)} requested)`
        : inp.stale
          ? `sample stale (${inp.stale})`
          : free === null
            ? 'guest free memory unknown (no mem_unused)'
            : inp.watchedS !== undefined && cfg.peakWindowS > 0 && inp.watchedS < cfg.peakWindowS
              ? `its use has been watched ${Math.round(inp.watchedS)} s of the ${cfg.peakWindowS} s peak window: an unplug waits for a whole window`
              : st.guard.holdUntil !== undefined
                ? `backing off until t=${Math.round(st.guard.holdUntil)} s`
                : stall !== null && stall > (cfg.psiStopPercent as number)
                  ? `guest memory stall ${stall}% (psi some avg10) above ${cfg.psiStopPercent}%`
                  : null;
    if (why) {
      if (raise !== null) return apply(req, raise, [`unplug refused: ${why}`, 'guest under its headroom: plugged back'], st);
      return { verdict: 'veto', from: req, to: null, reasons: [`unplug refused: ${why}`], next: st };
    }
    // Whole blocks, only from what the guest has free above its headroom, one step a cycle.
    const spare = down(Math.max(0, (free as number) - cfg.headroomKiB), block);
    const step = Math.max(block, down(cfg.maxStepFraction * max, block));
    t = up(t, block);
    if (t < req - spare) {
      t = req - spare;
      reasons.push(`limited to the guest's free memory above headroom (${fmtKiB(spare)})`);
    }
    const total = finite(inp.history.latest()?.mem_available);
    const peak = inp.recent?.used ?? null;
    if (total !== null && peak !== null) {
      const unusedAtPeak = down(Math.max(0, total - peak - cfg.headroomKiB), block);
      if (t < req - unusedAtPeak) {
        t = req - unusedAtPeak;
        reasons.push(
          `limited to what the guest left unused at its peak of the last ${Math.round(cfg.peakWindowS / 60)} min (used ${fmtKiB(peak)} of ${fmtKiB(total)}, headroom ${fmtKiB(cfg.headroomKiB)}): ${fmtKiB(unusedAtPeak)}`,
        );
      }
    }
    if (t < req - step) {
      t = req - step;
      reasons.push(`rate-limited to -${fmtKiB(step)} per cycle`);
    }
    if (raise !== null && t < raise) t = raise;
  } else t = up(t, block) > max ? down(max, block) : up(t, block);
  if (t === req) return { verdict: 'skip', from: req, to: null, reasons: [...reasons, 'already requested'], next: st };
  reasons.unshift(t < req ? 'policy asked to unplug' : 'policy asked to plug');
  if (t < req) return apply(req, t, reasons, { guard: { lastInflation: { cycle: inp.cycle, at: inp.now, step: req - t }, holdUntil: st.guard.holdUntil } }, st);
  return apply(req, t, reasons, { guard: { holdUntil: st.guard.holdUntil } }, st);
}

function apply(from: number, to: number, reasons: string[], next: VmemState, otherwise: VmemState = next): VmemDecision {
  return { verdict: 'apply', from, to, reasons, next, otherwise };
}

/** The balloon's expiry of a watched step and a hold, on the device's state. */
function expire(st: VmemState, cycle: number, now: number, cfg: SafeguardConfig): VmemState {
  const guard = expireGuard(st.guard, cycle, now, cfg);
  return guard === st.guard ? st : { ...st, guard };
}
