// How long a manager takes to give a growing guest its memory back: from the moment the
// guest's workload starts a ramp while its balloon holds memory back, to the moment the guest
// sees its memory grow. Pure, from the lines the guests already write on their consoles
// (docs/lab-experiment.md, "Reaction time").
import type { TimedLine } from './metrics.js';

/** Changes of MemTotal smaller than this are not a balloon holding or giving memory, KiB. */
export const REACTION_SLACK_KIB = 4 * 1024;

export interface GuestReactions {
  /** Seconds from each demand step to the guest's memory growing, for the steps answered. */
  times: number[];
  /** Demand steps after which the memory did not grow before the guest's next demand step. */
  unanswered: number;
  /** Demand steps still waiting when the lines end (the run stopped first). */
  pending: number;
}

/**
 * One guest's reaction times for the demand steps whose line arrived within [from, to).
 *
 * - The guest's memory is its MemTotal (`meminfo total_kib`): the balloon driver takes what it
 *   inflates out of it (the lab's balloons have no deflate-on-oom). Its full size is the
 *   largest MemTotal it reported.
 * - A demand step is the start of a ramp: an `alloc` phase that grows the working set (`arg`
 *   MiB above `ws_kib`) after one that did not, or the first of a workload (also one restarted
 *   after the OOM killer took it: a service starting over needs its memory again). It counts when
 *   the guest's last MemTotal before it is at least REACTION_SLACK_KIB below its full size.
 * - Its reaction is the first later MemTotal at least REACTION_SLACK_KIB above the one at the
 *   step; the time between is measured on the guest's clock (both lines' `t=`), else on the
 *   host's arrival times. No growth before the next demand step: unanswered. No growth before
 *   the lines end: pending (the run stopped first).
 */
export function guestReactions(lines: readonly TimedLine[], from: number, to: number): GuestReactions {
  let full = 0;
  for (const { line } of lines) {
    if (line.kind !== 'meminfo') continue;
    const total = Number(line.fields.total_kib);
    if (Number.isFinite(total) && total > full) full = total;
  }
  const out: GuestReactions = { times: [], unanswered: 0, pending: 0 };
  let lastTotal: number | null = null;
  let prevGrew = false;
  let open: { t: number | null; at: number; total: number } | null = null;
  for (const { at, line } of lines) {
    if (line.kind === 'meminfo') {
      const total = Number(line.fields.total_kib);
      if (!Number.isFinite(total)) continue;
      lastTotal = total;
      if (open && total >= open.total + REACTION_SLACK_KIB) {
        out.times.push(open.t !== null && line.t !== null ? line.t - open.t : at - open.at);
        open = null;
      }
    } else if (line.kind === 'workload-start' || line.kind === 'workload-exit') {
      prevGrew = false;
    } else if (line.kind === 'phase' && line.fields.op === 'alloc') {
      const grows = Number(line.fields.arg) * 1024 > Number(line.fields.ws_kib);
      if (grows && !prevGrew) {
        if (open) out.unanswered++;
        open = null;
        if (at >= from && at < to && lastTotal !== null && full - lastTotal >= REACTION_SLACK_KIB) open = { t: line.t, at, total: lastTotal };
      }
      prevGrew = grows;
    }
  }
  if (open) out.pending++;
  return out;
}

export interface ReactionSummary {
  /** Median and largest reaction over every guest's answered demand steps, seconds. */
  medianS: number | null;
  maxS: number | null;
  answered: number;
  unanswered: number;
  pending: number;
}

/** The run's reaction times: every guest's answered steps pooled. */
export function summarizeReactions(guests: readonly GuestReactions[]): ReactionSummary {
  const all = guests.flatMap((g) => g.times).sort((a, b) => a - b);
  const unanswered = guests.reduce((s, g) => s + g.unanswered, 0);
  const pending = guests.reduce((s, g) => s + g.pending, 0);
  if (all.length === 0) return { medianS: null, maxS: null, answered: 0, unanswered, pending };
  const mid = all.length >> 1;
  const median = all.length % 2 ? all[mid]! : (all[mid - 1]! + all[mid]!) / 2;
  const round = (v: number) => Math.round(v * 10) / 10;
  return { medianS: round(median), maxS: round(all[all.length - 1]!), answered: all.length, unanswered, pending };
}
