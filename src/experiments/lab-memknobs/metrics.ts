// What a run measured, from what the guests wrote on their consoles (timed by the host when
// the line arrived) and from counter samples of the domain and the host. Pure functions.
import type { ConsoleLine } from '../../lab/console.js';

export interface TimedLine {
  /** Host wall clock (seconds) when the line was read. */
  at: number;
  line: ConsoleLine;
}

/** Pages the workload wrote (its `rate` lines) that arrived within [from, to). */
export function workloadPages(lines: readonly TimedLine[], from: number, to: number): number {
  let pages = 0;
  for (const { at, line } of lines) {
    if (line.kind !== 'rate' || at < from || at >= to) continue;
    const p = Number(line.fields.pages);
    if (Number.isFinite(p) && p > 0) pages += p;
  }
  return pages;
}

/**
 * Seconds the workload spent in its `touch` steps (its `rate` lines of op=touch) within
 * [from, to): the schedule's work time. A guest stalled on memory (an `alloc` waiting for
 * swap-ins) falls behind its schedule and touches for fewer seconds; unlike pages per second,
 * this does not depend on how fast a TCG guest touches a page, which varies ~2.5x with how the
 * host backs its RAM (huge pages or not).
 */
export function workloadTouchSeconds(lines: readonly TimedLine[], from: number, to: number): number {
  let secs = 0;
  for (const { at, line } of lines) {
    if (line.kind !== 'rate' || line.fields.op !== 'touch' || at < from || at >= to) continue;
    const s = Number(line.fields.secs);
    if (Number.isFinite(s) && s > 0) secs += s;
  }
  return secs;
}

/**
 * Pages written within [from, to) by workload processes the guest's OOM killer did not take:
 * the work an operator keeps. A killed process loses what it did (a batch job starts over, a
 * service drops what it held), and its restart begins with the schedule's small working set,
 * which a TCG guest touches fastest, so plain pages per second rewards a manager for killing.
 * Each process's pages are held back until it exits: kept on a normal exit or when it is still
 * running at the end, dropped when it exits with 137 (SIGKILL, the OOM killer in a lab guest).
 */
export function keptWorkloadPages(lines: readonly TimedLine[], from: number, to: number): number {
  let kept = 0;
  let pending = 0;
  for (const { at, line } of lines) {
    if (at >= to) break;
    if (line.kind === 'workload-exit') {
      if (line.fields.status !== '137') kept += pending;
      pending = 0;
    } else if (line.kind === 'rate' && at >= from) {
      const p = Number(line.fields.pages);
      if (Number.isFinite(p) && p > 0) pending += p;
    }
  }
  return kept + pending;
}

/**
 * Processes the guest's OOM killer took within [from, to): the init script reports every exit
 * of the workload (and of the guest agent) with its status, and 137 = killed by SIGKILL, which
 * nothing in a lab guest sends except the kernel's OOM killer.
 */
export function oomKills(lines: readonly TimedLine[], from: number, to: number): number {
  let n = 0;
  for (const { at, line } of lines) {
    if (at < from || at >= to) continue;
    if ((line.kind === 'workload-exit' || line.kind === 'qga-exit') && line.fields.status === '137') n++;
  }
  return n;
}

/** Times the workload reached its peak within [from, to): the start of a `touch` step with the
 *  working set at (within 1 MiB of) the peak — one finished ramp each. */
export function peaksReached(lines: readonly TimedLine[], from: number, to: number, peakKiB: number): number {
  let n = 0;
  for (const { at, line } of lines) {
    if (line.kind !== 'phase' || line.fields.op !== 'touch' || at < from || at >= to) continue;
    const ws = Number(line.fields.ws_kib);
    if (Number.isFinite(ws) && ws >= peakKiB - 1024) n++;
  }
  return n;
}

/** Workload exits of any kind (crashes, bad schedule) and failed allocations within the window. */
export function workloadTrouble(lines: readonly TimedLine[], from: number, to: number): { exits: number; allocFailed: number } {
  let exits = 0;
  let allocFailed = 0;
  for (const { at, line } of lines) {
    if (at < from || at >= to) continue;
    if (line.kind === 'workload-exit') exits++;
    if (line.kind === 'alloc-failed') allocFailed++;
  }
  return { exits, allocFailed };
}

/** The guest's smallest MemTotal (KiB) seen within the window: how far its balloon went. */
export function minGuestTotalKiB(lines: readonly TimedLine[], from: number, to: number): number | null {
  let min: number | null = null;
  for (const { at, line } of lines) {
    if (line.kind !== 'meminfo' || at < from || at >= to) continue;
    const t = Number(line.fields.total_kib);
    if (Number.isFinite(t) && (min === null || t < min)) min = t;
  }
  return min;
}

/** One sample of the counters the monitor reads every second. */
export interface CounterSample {
  at: number;
  /** Domain charge and limit, KiB. */
  usageKiB: number;
  /** Times the domain hit its limit (v1 memory.failcnt; v2 memory.events max). */
  limitHits: number;
  /** Swap the domain's processes hold, KiB (null when the kernel does not account it). */
  swapKiB: number | null;
  /** Major faults of the domain's processes (cumulative; null when not counted per cgroup). */
  majorFaults: number | null;
  /** Per-cgroup swap traffic where the kernel counts it (cgroup v2 memory.stat), pages. */
  domainSwapIn: number | null;
  domainSwapOut: number | null;
  /** Host /proc/vmstat pswpin / pswpout (cumulative pages). */
  hostSwapIn: number;
  hostSwapOut: number;
  /** Host /proc/pressure/memory some/full totals (microseconds, cumulative; null without PSI). */
  psiSomeUs: number | null;
  psiFullUs: number | null;
  /** Host /proc/pressure/io some total (microseconds, cumulative; absent or null without it):
   *  cold pages read back from swap wait here, not as memory stalls. */
  psiIoSomeUs?: number | null;
}

const delta = (a: number | null, b: number | null): number | null => (a === null || b === null ? null : Math.max(0, b - a));

export interface CounterSummary {
  /** Host-wide swap traffic over the window (pages). */
  hostSwapIn: number;
  hostSwapOut: number;
  domainSwapIn: number | null;
  domainSwapOut: number | null;
  domainMajorFaults: number | null;
  /** Seconds of the window in which the domain hit its limit at least once (reclaim ran). */
  pressureS: number;
  /** Host PSI stall time over the window, seconds. */
  psiSomeS: number | null;
  psiFullS: number | null;
  /** Host I/O stall time (PSI io some) over the window, seconds. */
  psiIoSomeS: number | null;
  peakSwapKiB: number | null;
  peakUsageKiB: number;
}

/** Sums up counter samples taken over a window (oldest first). */
export function summarizeCounters(samples: readonly CounterSample[]): CounterSummary {
  if (samples.length < 2) throw new Error(`need at least two counter samples, got ${samples.length}`);
  const a = samples[0]!;
  const b = samples[samples.length - 1]!;
  let pressureS = 0;
  let peakSwap: number | null = null;
  let peakUsage = 0;
  for (let i = 0; i < samples.length; i++) {
    const s = samples[i]!;
    if (s.swapKiB !== null) peakSwap = Math.max(peakSwap ?? 0, s.swapKiB);
    peakUsage = Math.max(peakUsage, s.usageKiB);
    if (i > 0 && s.limitHits > samples[i - 1]!.limitHits) pressureS += s.at - samples[i - 1]!.at;
  }
  const us = (d: number | null) => (d === null ? null : Math.round(d / 1e5) / 10);
  return {
    hostSwapIn: b.hostSwapIn - a.hostSwapIn,
    hostSwapOut: b.hostSwapOut - a.hostSwapOut,
    domainSwapIn: delta(a.domainSwapIn, b.domainSwapIn),
    domainSwapOut: delta(a.domainSwapOut, b.domainSwapOut),
    domainMajorFaults: delta(a.majorFaults, b.majorFaults),
    pressureS: Math.round(pressureS * 10) / 10,
    psiSomeS: us(delta(a.psiSomeUs, b.psiSomeUs)),
    psiFullS: us(delta(a.psiFullUs, b.psiFullUs)),
    psiIoSomeS: us(delta(a.psiIoSomeUs ?? null, b.psiIoSomeUs ?? null)),
    peakSwapKiB: peakSwap,
    peakUsageKiB: peakUsage,
  };
}

export interface Spread {
  min: number;
  median: number;
  max: number;
  n: number;
}

/** min / median / max of the finite values (null when there are none). */
export function spread(values: readonly (number | null | undefined)[]): Spread | null {
  const v = values.filter((x): x is number => typeof x === 'number' && Number.isFinite(x)).sort((x, y) => x - y);
  if (v.length === 0) return null;
  const mid = v.length >> 1;
  const median = v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
  return { min: v[0]!, median, max: v[v.length - 1]!, n: v.length };
}

/** value / base, or null when there is no meaningful base (0 or missing). */
export function ratio(value: number | null, base: number | null): number | null {
  if (value === null || base === null || !(base > 0)) return null;
  return value / base;
}

/** What of the guests' QEMUs sat in host huge pages at one moment (summed over the QEMUs). */
export interface HugeSample {
  at: number;
  rssKiB: number;
  anonHugeKiB: number;
}

/**
 * The share of the QEMUs' RSS held in host (transparent) huge pages over the window: the sum of
 * AnonHugePages over the samples divided by the sum of RSS, so a moment with more RSS weighs
 * more. A balloon splits the huge pages it inflates into; virtio-mem and free page reporting
 * give back whole 2 MiB blocks; under TCG (and on KVM, for the EPT) a guest runs faster on
 * memory the host backs with huge pages. null: nothing sampled.
 */
export function hugePageShare(samples: readonly HugeSample[]): number | null {
  let rss = 0;
  let huge = 0;
  for (const s of samples) {
    if (!(Number.isFinite(s.rssKiB) && Number.isFinite(s.anonHugeKiB) && s.rssKiB > 0)) continue;
    rss += s.rssKiB;
    huge += Math.min(s.anonHugeKiB, s.rssKiB);
  }
  return rss > 0 ? huge / rss : null;
}
