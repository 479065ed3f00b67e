// Alerts on host and guest histories: pure functions, thresholds configurable. They use the
// policy's fields, so with a memory domain configured they speak about the domain.
//   low_available: host mem_free / mem_available under 20%
//   high_usage:    host (mem_available - mem_free) / mem_available above 85%
//   paging:        host swap_in + swap_out above 10 pages/s in each of the last 3 samples
//   guest_leak:    a guest's used memory, page cache not counted, whose lows keep rising over a
//                  long window: growth that does not come back (see LeakLows)
//   map_count:     the process with the most memory mappings above 80% of vm.max_map_count
//                  (host fields of map-count.ts; named by its /proc/PID/comm)
import { readFileSync } from 'node:fs';
import { finite } from '../numbers.js';
import type { Stats } from '../types.js';

export type AlertKind = 'low_available' | 'high_usage' | 'paging' | 'guest_leak' | 'map_count';

export interface AlertEvent {
  kind: AlertKind;
  severity: 'warning' | 'critical';
  /** 'host' or the guest's name. */
  entity: string;
  message: string;
  value: number;
  threshold: number;
}

export interface AlertThresholds {
  /** low_available when mem_free / mem_available is under this (0..1). */
  availableFraction: number;
  /** high_usage when used / mem_available is above this (0..1). */
  usageFraction: number;
  /** paging when swap_in + swap_out pages per second is above this ... */
  pagingPagesPerSec: number;
  /** ... in each of this many newest samples. */
  pagingSamples: number;
  /** guest_leak cuts its window into this many parts and compares each part's lowest used
   *  memory ... */
  leakSamples: number;
  /** ... over a window this long (seconds) ... */
  leakWindowS: number;
  /** ... and needs at least this share of the steps between those lows to rise ... */
  leakRisingShare: number;
  /** ... and the total rise to be at least this many KiB. */
  leakMinRiseKiB: number;
  /** Seconds between samples (swap_in / swap_out are per-interval deltas). */
  intervalS: number;
  /** map_count when a process's mappings are above this share of vm.max_map_count (0..1);
   *  critical in the last quarter of the way from there to the limit. */
  mapCountFraction?: number;
}

export const DEFAULT_THRESHOLDS: AlertThresholds = {
  availableFraction: 0.2,
  usageFraction: 0.85,
  pagingPagesPerSec: 10,
  pagingSamples: 3,
  leakSamples: 10,
  leakWindowS: 1800,
  leakRisingShare: 0.8,
  leakMinRiseKiB: 32 * 1024,
  intervalS: 5,
  mapCountFraction: 0.8,
};

/** Names a process for an alert's message; null when it is gone. */
export type ProcessNamer = (pid: number) => string | null;

/** The live system's namer: /proc/PID/comm, read only while a map_count alert is active. */
export const procComm: ProcessNamer = (pid) => {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return null;
  }
};

const num = (s: Stats | undefined, k: string): number | null => finite(s?.[k]);
const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;

/** Alerts about the host from its sample history (oldest first). */
export function hostAlerts(history: readonly Stats[], t: AlertThresholds = DEFAULT_THRESHOLDS, nameOf: ProcessNamer = procComm): AlertEvent[] {
  const out: AlertEvent[] = [];
  const cur = history[history.length - 1];
  const maps = cur ? mapCountAlert(cur, t, nameOf) : null;
  if (maps) out.push(maps);
  const total = num(cur, 'mem_available');
  const free = num(cur, 'mem_free');
  if (total !== null && total > 0 && free !== null) {
    const availShare = free / total;
    if (availShare < t.availableFraction) {
      out.push({
        kind: 'low_available',
        severity: availShare < t.availableFraction / 2 ? 'critical' : 'warning',
        entity: 'host',
        message: `host available memory ${pct(availShare)} (${Math.round(free / 1024)} MiB of ${Math.round(total / 1024)} MiB) is under ${pct(t.availableFraction)}`,
        value: availShare,
        threshold: t.availableFraction,
      });
    }
    const usage = (total - free) / total;
    if (usage > t.usageFraction) {
      out.push({
        kind: 'high_usage',
        severity: 'warning',
        entity: 'host',
        message: `host memory usage ${pct(usage)} is above ${pct(t.usageFraction)}`,
        value: usage,
        threshold: t.usageFraction,
      });
    }
  }
  if (history.length >= t.pagingSamples && t.pagingSamples > 0) {
    const rates: number[] = [];
    for (const s of history.slice(-t.pagingSamples)) {
      const i = num(s, 'swap_in');
      const o = num(s, 'swap_out');
      if (i === null && o === null) break;
      rates.push(((i ?? 0) + (o ?? 0)) / t.intervalS);
    }
    if (rates.length === t.pagingSamples && rates.every((r) => r > t.pagingPagesPerSec)) {
      const least = Math.min(...rates);
      out.push({
        kind: 'paging',
        severity: 'warning',
        entity: 'host',
        message: `host paging at least ${least.toFixed(1)} pages/s for ${t.pagingSamples} samples (threshold ${t.pagingPagesPerSec} pages/s)`,
        value: least,
        threshold: t.pagingPagesPerSec,
      });
    }
  }
  return out;
}

/**
 * The process with the most mappings (host fields map_count_max, map_count_max_pid) near
 * vm.max_map_count. Its entity is the host: the alert is about the host's worst process,
 * whichever it is, and the message names it.
 */
export function mapCountAlert(cur: Stats, t: AlertThresholds = DEFAULT_THRESHOLDS, nameOf: ProcessNamer = procComm): AlertEvent | null {
  const limit = num(cur, 'vm_max_map_count');
  const count = num(cur, 'map_count_max');
  const pid = num(cur, 'map_count_max_pid');
  const fraction = t.mapCountFraction ?? DEFAULT_THRESHOLDS.mapCountFraction!;
  if (limit === null || limit <= 0 || count === null || pid === null) return null;
  const share = count / limit;
  if (share <= fraction) return null;
  return {
    kind: 'map_count',
    severity: share >= 1 - (1 - fraction) / 4 ? 'critical' : 'warning',
    entity: 'host',
    message:
      `process ${nameOf(pid) ?? '(exited)'} (pid ${pid}) has ${count} memory mappings, ${pct(share)} of vm.max_map_count (${limit}): at the ` +
      `limit its next mmap, mprotect or madvise fails with ENOMEM. KSM's MADV_MERGEABLE splits mappings: raise vm.max_map_count, or merge ` +
      `the whole process (PR_SET_MEMORY_MERGE) instead of marking ranges`,
    value: share,
    threshold: fraction,
  };
}

/** A guest's used memory, KiB: what it holds that it would not give back. Page cache counts
 *  as free: MemAvailable (mem_usable) when the guest reports it, else mem_free (free + caches)
 *  or, last, mem_unused. */
export function guestUsed(s: Stats): number | null {
  const total = num(s, 'mem_available');
  const free = num(s, 'mem_usable') ?? num(s, 'mem_free') ?? num(s, 'mem_unused');
  return total === null || free === null ? null : total - free;
}

/**
 * The lows of a guest's used memory: the window (leakWindowS) is cut into leakSamples parts
 * of samples, and each finished part leaves its lowest value. A workload that ramps up and
 * comes back down leaves a low part behind it; a leak raises every part's low. Samples are
 * counted, not timed: one part is leakWindowS / intervalS / leakSamples samples. O(parts)
 * numbers per guest, whatever the window.
 */
export class LeakLows {
  private readonly perPart: number;
  private readonly guests = new Map<string, { n: number; low: number; lows: number[] }>();

  constructor(private readonly t: AlertThresholds = DEFAULT_THRESHOLDS) {
    this.perPart = Math.max(1, Math.round(t.leakWindowS / t.intervalS / Math.max(1, t.leakSamples)));
  }

  /** Counts one sample of the guest (null: used memory unknown, the sample is not counted). */
  observe(name: string, used: number | null): void {
    if (used === null) return;
    let g = this.guests.get(name);
    if (!g) {
      g = { n: 0, low: Infinity, lows: [] };
      this.guests.set(name, g);
    }
    if (used < g.low) g.low = used;
    if (++g.n < this.perPart) return;
    g.lows.push(g.low);
    if (g.lows.length > this.t.leakSamples) g.lows.shift();
    g.n = 0;
    g.low = Infinity;
  }

  lows(name: string): readonly number[] {
    return this.guests.get(name)?.lows ?? [];
  }

  /** Drops the guests `keep` rejects (gone). */
  retain(keep: (name: string) => boolean): void {
    for (const name of this.guests.keys()) if (!keep(name)) this.guests.delete(name);
  }
}

/** A leak warning when the lows of the guest's used memory rose in most steps of a full
 *  window and by enough in total (lows: oldest first, as LeakLows keeps them). */
export function guestLeakAlert(name: string, lows: readonly number[], t: AlertThresholds = DEFAULT_THRESHOLDS): AlertEvent | null {
  if (lows.length < t.leakSamples || t.leakSamples < 2) return null;
  const u = lows.slice(-t.leakSamples);
  let rising = 0;
  for (let i = 1; i < u.length; i++) if (u[i]! > u[i - 1]!) rising++;
  const share = rising / (u.length - 1);
  const rise = u[u.length - 1]! - u[0]!;
  if (share < t.leakRisingShare || rise < t.leakMinRiseKiB) return null;
  return {
    kind: 'guest_leak',
    severity: 'warning',
    entity: name,
    message: `guest ${name}: used memory (page cache not counted) kept rising and did not come back: its low rose ${Math.round(rise / 1024)} MiB over ${fmtWindow(t.leakWindowS)} (rising in ${pct(share)} of ${u.length} parts): a leak?`,
    value: rise,
    threshold: t.leakMinRiseKiB,
  };
}

const fmtWindow = (s: number): string => (s >= 120 ? `${Math.round(s / 60)} min` : `${Math.round(s)} s`);

/** Every alert for one cycle: host history, and each guest's used-memory lows by name. */
export function evaluateAlerts(
  host: readonly Stats[],
  guestLows: ReadonlyMap<string, readonly number[]> | Record<string, readonly number[]>,
  thresholds: Partial<AlertThresholds> = {},
  nameOf: ProcessNamer = procComm,
): AlertEvent[] {
  const t = { ...DEFAULT_THRESHOLDS, ...thresholds };
  const out = hostAlerts(host, t, nameOf);
  const entries = guestLows instanceof Map ? [...guestLows.entries()] : Object.entries(guestLows);
  for (const [name, lows] of entries) {
    const a = guestLeakAlert(name, lows, t);
    if (a) out.push(a);
  }
  return out;
}

/** Keeps which alerts are active so a log gets one line when an alert starts and one when it
 *  clears, not one per cycle. An alert clears only after `clearAfter` consecutive updates
 *  without it, so a value hovering at its threshold does not flap. */
export class AlertTracker {
  private active = new Map<string, AlertEvent>();
  /** Consecutive updates each active alert has been absent. */
  private absent = new Map<string, number>();

  constructor(private readonly clearAfter = 1) {}

  update(events: readonly AlertEvent[]): { raised: AlertEvent[]; cleared: AlertEvent[]; active: AlertEvent[] } {
    const present = new Map(events.map((e) => [alertKey(e), e]));
    const raised = events.filter((e) => !this.active.has(alertKey(e)));
    const cleared: AlertEvent[] = [];
    const next = new Map(present);
    for (const [k, e] of this.active) {
      if (present.has(k)) {
        this.absent.delete(k);
        continue;
      }
      const n = (this.absent.get(k) ?? 0) + 1;
      if (n >= this.clearAfter) {
        cleared.push(e);
        this.absent.delete(k);
      } else {
        this.absent.set(k, n);
        next.set(k, e); // still active, with its last event
      }
    }
    this.active = next;
    return { raised, cleared, active: [...next.values()] };
  }

  /** Active alerts about entities not in `keep` (guests that are gone): forgotten at once and returned. */
  dropEntities(keep: (entity: string) => boolean): AlertEvent[] {
    const out: AlertEvent[] = [];
    for (const [k, e] of this.active) {
      if (keep(e.entity)) continue;
      out.push(e);
      this.active.delete(k);
      this.absent.delete(k);
    }
    return out;
  }
}

/** One alert per kind and entity: what the tracker (and a view) tells alerts apart by. */
export const alertKey = (e: AlertEvent): string => `${e.kind}:${e.entity}`;
