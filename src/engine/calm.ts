// When the loop may slow down. A host where the policy has changed nothing for a while, no
// guest is held below what it could have and nothing stalls gains nothing from being sampled
// every stats interval: the loop then collects every `engine.calm_stride`-th interval, and in
// between reads only the cheap host sources (free memory, pressure) to see whether the host
// moved. Any move, any action on a guest, any new or vanished guest, any error brings back the
// full cadence at once. A host knob set as asked (KSM's) does not: no guard watches what it
// does over the next cycles, and ksmd toggled as a lab domain filled and emptied kept the loop
// at full cadence for most of a window. MOM samples at a fixed rate; this is where most of
// ballast's idle CPU goes.
import { finite } from '../numbers.js';
import { hostMemoryStall } from '../psi.js';
import type { Stats } from '../types.js';

/** Policy cycles in a row that changed nothing before the loop counts as calm. */
export const CALM_AFTER_CYCLES = 3;

/** PSI some avg10 (percent) at which the host is not calm: tasks waited on memory. */
export const CALM_MAX_PSI = 1;

/** PSI io some avg10 (percent) at which the host is not calm: cold pages read back from swap
 *  wait on I/O (the guard's cache rule looks at it, safeguards.cache_io_percent). */
export const CALM_MAX_IO_PSI = 5;

/** A fall of free memory (MOM's mem_free, KiB) that wakes the loop: 64 MiB, or 2% of the
 *  host's (or domain's) memory if more, since the last full collection. */
const WAKE_MIN_KIB = 64 * 1024;
const WAKE_SHARE = 0.02;

/** Why the host is not calm in this host sample (stalling on memory or on I/O), or null. */
export function hostStalls(s: Stats): string | null {
  const psi = hostMemoryStall(s, 'avg10');
  if (psi !== null && psi >= CALM_MAX_PSI) return `memory stall: psi some avg10 ${psi}% >= ${CALM_MAX_PSI}%`;
  const io = finite(s.psi_io_some_avg10);
  return io !== null && io >= CALM_MAX_IO_PSI ? `I/O stall: psi io some avg10 ${io}% >= ${CALM_MAX_IO_PSI}%` : null;
}

/** Why the cheap reading `now` says the host moved since the full sample `last`, or null. */
export function hostMoved(last: Stats, now: Stats): string | null {
  const stall = hostStalls(now);
  if (stall) return stall;
  const before = finite(last.mem_free);
  const after = finite(now.mem_free);
  if (before === null || after === null) return null;
  const total = finite(now.mem_available) ?? 0;
  const wake = Math.max(WAKE_MIN_KIB, total * WAKE_SHARE);
  const fell = before - after;
  return fell >= wake ? `free memory fell ${Math.round(fell / 1024)} MiB (wakes at ${Math.round(wake / 1024)} MiB)` : null;
}
