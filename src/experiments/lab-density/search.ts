// The density search, as pure functions: a run at a domain limit passes when the guests keep
// their throughput (within a tolerance of the unconstrained run's) and nobody is OOM-killed;
// bisection on the limit finds the smallest that passes; memory saved is measured against
// what the unconstrained guests actually held at their peak.
import { ratio, spread } from '../lab-memknobs/metrics.js';

export interface Probe {
  /** Domain limit as a share of what the guests could hold (guest memory + QEMU overhead). */
  ratio: number;
  limitMiB: number;
  /** Pages/s, summed: what must stay within the tolerance. The guests run on a clock (a step
   *  starts at its second whatever the previous one did), so a guest that waits for memory
   *  touches fewer pages in its windows. (Run it with huge pages off: a TCG guest touches
   *  huge-page-backed RAM ~2.5x faster, more than memory pressure moves it.) */
  throughput: number;
  /** The guests' seconds in their touch steps, summed (reported only: a step that stalls runs
   *  past its window, so waiting for memory can raise it as well as lower it). */
  work: number;
  oomKills: number;
  pass: boolean;
  /** A confirmation run at a limit the bisection found. */
  confirm: boolean;
}

export function passes(throughput: number, oomKills: number, baseline: number, tolerance: number): boolean {
  return oomKills === 0 && throughput >= (1 - tolerance) * baseline;
}

/** The next limit to try between the largest failing (lo) and the smallest passing (hi) ratio. */
export function nextRatio(lo: number, hi: number): number {
  return Math.round(((lo + hi) / 2) * 1000) / 1000;
}

/**
 * The smallest ratio that passed, given every probe of one manager (bisection and
 * confirmations): a ratio counts only when no run at it, or at a larger ratio below it in the
 * search, failed — a confirmation that fails disqualifies its ratio, and the search falls back
 * to the next larger ratio that passed. `ceiling`: the unconstrained ratio, passing by definition.
 */
export function smallestPassing(probes: readonly Probe[], ceiling: number): number {
  const failed = new Set(probes.filter((p) => !p.pass).map((p) => p.ratio));
  const ok = probes.filter((p) => p.pass && !failed.has(p.ratio)).map((p) => p.ratio);
  return Math.min(ceiling, ...ok);
}

export interface DensityRow {
  config: string;
  limitMiB: number;
  /** 1 - limit / the unconstrained run's peak domain usage. */
  saved: number;
  /** Throughput at that limit (median of the runs there) over the unconstrained median: the criterion. */
  throughputVsUnconstrained: number | null;
  /** Work time at that limit (median) over the unconstrained median (reported). */
  workVsUnconstrained: number | null;
  oomKills: number;
  /** Runs at that limit (bisection + confirmations). */
  runsAtLimit: number;
}

const round3 = (v: number | null): number | null => (v === null ? null : Math.round(v * 1000) / 1000);

export function densityRow(
  config: string,
  probes: readonly Probe[],
  ceiling: number,
  ceilingLimitMiB: number,
  baseline: { throughput: number; work: number },
  peakMiB: number,
): DensityRow {
  const best = smallestPassing(probes, ceiling);
  const at = probes.filter((p) => p.ratio === best);
  const limitMiB = at[0]?.limitMiB ?? ceilingLimitMiB;
  const t = spread(at.map((p) => p.throughput))?.median ?? null;
  const w = spread(at.map((p) => p.work))?.median ?? null;
  return {
    config,
    limitMiB,
    saved: Math.round((1 - limitMiB / peakMiB) * 1000) / 1000,
    throughputVsUnconstrained: round3(ratio(t, baseline.throughput)),
    workVsUnconstrained: round3(ratio(w, baseline.work)),
    oomKills: at.reduce((s, p) => s + p.oomKills, 0),
    runsAtLimit: at.length,
  };
}
