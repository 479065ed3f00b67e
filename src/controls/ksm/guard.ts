// The KSM control's safeguard: each knob range-checked, fractions rounded, and ksmd not started
// while the host can wait (it would split the host's huge pages for memory nobody needs yet).
import { finite } from '../../numbers.js';
import type { Stats } from '../../types.js';
import type { KnobDecision } from '../control.js';
import { hostCanWait, type SafeguardConfig } from '../floor.js';
import { KSM_KNOBS, knobOf } from './knobs.js';

/** Pages swapped out in one collection interval (4 MiB) that show the host short of memory now. */
export const SWAP_OUT_PAGES = 1024;

/** Free memory (mem_free of mem_available, MOM's names: page cache counts as free) below which
 *  the host is about to reclaim: KSM may start before the first page goes to swap. MOM's
 *  critical level (balloon.policy's balloon_pressure_critical); at 10% a lab domain on the
 *  plain workload, which never swapped, started KSM at a passing 8.4%. */
export const SHORT_FREE_SHARE = 0.05;

/** Free memory at or above which a running ksmd is stopped again while the host can wait: twice
 *  the level that starts it, so that a host hovering near it does not start and stop it every
 *  cycle. Stopping only ends the scanning: what ksmd merged stays merged. */
export const STOP_FREE_SHARE = 0.1;

/** Why the host is short of memory now, so that KSM may start though it could otherwise
 *  wait; null when it is not. */
function shortNow(host: Stats): string | null {
  const swappedOut = finite(host.swap_out);
  if (swappedOut !== null && swappedOut >= SWAP_OUT_PAGES)
    return `the host is swapping out (${swappedOut} pages in its last interval): KSM gives memory back without I/O`;
  const free = freeShare(host);
  if (free !== null && free < SHORT_FREE_SHARE)
    return `the host has ${(free * 100).toFixed(1)}% of its memory free (< ${SHORT_FREE_SHARE * 100}%): it reclaims next, and what KSM merges need not go to swap`;
  return null;
}

/** mem_free of mem_available, or null. */
function freeShare(host: Stats): number | null {
  const free = finite(host.mem_free);
  const total = finite(host.mem_available);
  return free !== null && total !== null && total > 0 ? free / total : null;
}

/** What the guard makes of a policy's ksm_run 1 given the host's latest sample: a stopped ksmd
 *  starts when the host is short now, else stays stopped while the host can wait; a running one
 *  stops once the host can wait with STOP_FREE_SHARE free. null: as the policy asks. */
function runDecision(host: Stats, sg: SafeguardConfig): { run: 0 | 1; why: string } | null {
  const running = finite(host.ksm_run);
  const short = shortNow(host);
  if (running === 0) {
    if (short) return { run: 1, why: short };
    const wait = hostCanWait(host, sg, 'KSM');
    return wait ? { run: 0, why: `not started: ${wait}` } : null;
  }
  const free = freeShare(host);
  if (running !== 1 || short || free === null || free < STOP_FREE_SHARE) return null;
  const wait = hostCanWait(host, sg, 'KSM');
  return wait
    ? {
        run: 0,
        why: `stopped: ${(free * 100).toFixed(1)}% of the host's memory is free (>= ${STOP_FREE_SHARE * 100}%) and ${wait}; what ksmd merged stays merged`,
      }
    : null;
}

/**
 * Range-check one KSM control (integers; fractional values are rounded, out of range refused).
 * With the host's latest sample and the safeguards: a policy that would start KSM (run 1 while
 * it is stopped) while the host can wait (floor.ts hostCanWait: no memory stall, a quarter of
 * its swap free, transparent huge pages in use) is held at 0. KSM merges 4 KiB pages, so it
 * splits the huge pages backing the guests, and ksmd spends host CPU: measured in the lab
 * (plain workload, ssd swap, free page reporting on), ballast's KSM policy kept 55% of the
 * QEMUs' memory in huge pages against 80% without it and 0.88x the throughput, for memory the
 * host did not need. Once the host stalls or its swap runs short the policy starts KSM as
 * asked. So does a host that swaps out (at least
 * SWAP_OUT_PAGES in its last interval): its memory is short now, and what KSM merges is
 * memory the host need not write to swap and read back. Lab, ssd, guests holding page cache:
 * KSM held until a stall that never came, ballast+fpr swapped in as many pages as KubeVirt's
 * default; started on swap-out, 18% fewer (0.93-1.20x its throughput, 3 runs); started by the
 * policy in the warm-up, before this rule, a quarter. The plain workload, which the hold is
 * for, never swaps. So a host with less than SHORT_FREE_SHARE of its memory free starts it
 * too, before the first swap-out: the cache workload's domain filled to 2% free before it
 * swapped, the plain workload's came down to 8% at its peaks. A running ksmd is stopped again
 * once the host can wait with STOP_FREE_SHARE of its memory free (runDecision): guests that
 * reclaimed their page cache (the reclaim control) left a lab domain 15-22% free for the whole
 * window with ksmd still scanning, merging 96 MiB nobody needed and leaving 48% of the QEMUs'
 * memory in huge pages.
 */
export function guardKsm(control: string, requested: unknown, host?: Stats, sg?: SafeguardConfig): KnobDecision {
  const knob = knobOf(control);
  const range = knob && KSM_KNOBS[knob];
  if (!range) return { control, requested, verdict: 'veto', value: null, reasons: [`unknown KSM control ${control}`] };
  const v = typeof requested === 'boolean' ? Number(requested) : finite(requested);
  if (v === null) return { control, requested, verdict: 'veto', value: null, reasons: [`not a finite number: ${JSON.stringify(requested)}`] };
  const r = Math.round(v);
  const reasons = r !== v ? [`rounded ${v} to ${r}`] : [];
  const ok = range.set ? range.set.includes(r) : r >= range.min && r <= range.max;
  if (!ok) {
    const allowed = range.set ? range.set.join(', ') : `${range.min}..${range.max}`;
    return { control, requested, verdict: 'veto', value: null, reasons: [`${r} out of range (${allowed})`] };
  }
  if (control === 'ksm_run' && r === 1 && host !== undefined && sg !== undefined) {
    const d = runDecision(host, sg);
    if (d) return { control, requested, verdict: 'apply', value: d.run, reasons: ['policy request', ...reasons, d.why] };
  }
  return { control, requested, verdict: 'apply', value: r, reasons: ['policy request', ...reasons] };
}
