// What `ballast ksm status` shows: ksmd's state and knobs, the kernel's page counters, and
// which processes have pages merged (per-process counters from /proc/PID/ksm_stat, or
// /proc/PID/ksm_merging_pages on kernels that have only that), largest first, also summed by
// cgroup (service, container, VM), each with the kernel's cost rule (ksm-cost.ts) and, per
// process, its mappings against vm.max_map_count (MADV_MERGEABLE splits mappings).
import { describeCgroup, processCgroupPath, type CgroupKind } from './cgroup-name.js';
import { listDir, readTextIfExists } from './files.js';
import { ksmCost, RMAP_BREAK_EVEN } from './ksm-cost.js';
import { KSM_DIR, parseSelection, readKsmFiles } from './ksm-sysfs.js';
import { findKernelThread } from './ksm.js';
import { readMapCount, readMaxMapCount } from './map-count.js';
import { readCpuTicks, readProcessComm } from './process.js';
import { printable } from '../printable.js';

export const PAGE_KIB = 4; // KSM merges base pages: 4 KiB on x86-64 and most arm64 kernels

export interface KsmCounters {
  merging_pages: number;
  rmap_items: number | null;
  zero_pages: number | null;
  process_profit: number | null;
  /** prctl(PR_SET_MEMORY_MERGE): the whole process is mergeable (seed 003's process KSM). */
  merge_any: boolean | null;
  mergeable: boolean | null;
}

export interface KsmProcess extends KsmCounters {
  pid: number;
  comm: string;
  /** Its cgroup's path (processCgroupPath); null when unreadable or for a process KSM does not touch. */
  cgroup: string | null;
  /** Its memory mappings (lines of /proc/PID/maps), for processes KSM touches. */
  map_count: number | null;
  /** rmap items per merged page; above RMAP_BREAK_EVEN (64) KSM costs it memory. */
  rmap_per_page: number | null;
  /** The kernel's profit is negative: KSM spends more on this process than it saves. */
  costs_more: boolean | null;
}

/** The processes of one cgroup that KSM touches, summed. */
export interface KsmGroup {
  cgroup: string;
  kind: CgroupKind;
  name: string;
  processes: number;
  merging_pages: number;
  rmap_items: number | null;
  /** Sum of the processes' profits (bytes); null without per-process rmap counts. */
  profit_bytes: number | null;
  rmap_per_page: number | null;
  costs_more: boolean | null;
}

export interface KsmStatus {
  available: boolean;
  state: 'stopped' | 'running' | 'unmerging' | 'unknown';
  knobs: Record<string, number | string>;
  counters: Record<string, number>;
  /** Memory KSM saves: pages_sharing * page size (KiB). */
  saved_kib: number | null;
  ksmd: { pid: number | null; cpu_seconds: number | null };
  per_process_source: 'ksm_stat' | 'ksm_merging_pages' | 'none';
  processes: KsmProcess[];
  /** By cgroup, largest merging first: only processes KSM touches (merged pages or rmap items). */
  groups: KsmGroup[];
  /** vm.max_map_count, the limit each process's map_count is held against. */
  max_map_count: number | null;
  /** rmap items per merged page above which KSM costs more than it saves. */
  rmap_break_even: number;
}

const KNOBS = [
  'run',
  'pages_to_scan',
  'sleep_millisecs',
  'merge_across_nodes',
  'max_page_sharing',
  'use_zero_pages',
  'smart_scan',
  'advisor_mode',
  'advisor_max_cpu',
  'advisor_target_scan_time',
  'stable_node_chains_prune_millisecs',
];
const COUNTERS = [
  'pages_shared',
  'pages_sharing',
  'pages_unshared',
  'pages_volatile',
  'full_scans',
  'general_profit',
  'ksm_zero_pages',
  'pages_scanned',
  'pages_skipped',
  'stable_node_chains',
  'stable_node_dups',
];

export function parseKsmStat(text: string): KsmCounters | null {
  const kv = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^(\w+):?\s+(.+)$/.exec(line.trim());
    if (m) kv.set(m[1]!, m[2]!.trim());
  }
  const n = (k: string) => (kv.has(k) && /^-?\d+$/.test(kv.get(k)!) ? Number(kv.get(k)) : null);
  const b = (k: string) => (kv.has(k) ? kv.get(k) === 'yes' : null);
  const merging = n('ksm_merging_pages');
  if (merging === null) return null;
  return {
    merging_pages: merging,
    rmap_items: n('ksm_rmap_items'),
    zero_pages: n('ksm_zero_pages'),
    process_profit: n('ksm_process_profit'),
    merge_any: b('ksm_merge_any'),
    mergeable: b('ksm_mergeable'),
  };
}

export function statusFromFiles(files: Record<string, string>): Pick<KsmStatus, 'available' | 'state' | 'knobs' | 'counters' | 'saved_kib'> {
  const available = Object.keys(files).length > 0;
  const knobs: Record<string, number | string> = {};
  const counters: Record<string, number> = {};
  for (const k of KNOBS) {
    const v = files[k]?.trim();
    if (v === undefined) continue;
    knobs[k] = /^-?\d+$/.test(v) ? Number(v) : (parseSelection(v) ?? v);
  }
  for (const k of COUNTERS) {
    const v = files[k]?.trim();
    if (v !== undefined && /^-?\d+$/.test(v)) counters[k] = Number(v);
  }
  const state = knobs.run === 0 ? 'stopped' : knobs.run === 1 ? 'running' : knobs.run === 2 ? 'unmerging' : 'unknown';
  return { available, state, knobs, counters, saved_kib: counters.pages_sharing === undefined ? null : counters.pages_sharing * PAGE_KIB };
}

export async function gatherKsmStatus(root = '/', dir = KSM_DIR): Promise<KsmStatus> {
  const base = statusFromFiles(await readKsmFiles(root, dir));
  const ksmdPid = await findKernelThread(root, 'ksmd');
  const ticks = ksmdPid === null ? null : await readCpuTicks(root, ksmdPid);
  const processes: KsmProcess[] = [];
  let source: KsmStatus['per_process_source'] = 'none';
  for (const name of await listDir(root, '/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    let entry: KsmCounters | null = null;
    const stat = await readTextIfExists(root, `/proc/${pid}/ksm_stat`).catch(() => null);
    if (stat !== null) {
      source = 'ksm_stat';
      entry = parseKsmStat(stat);
    } else {
      const mp = await readTextIfExists(root, `/proc/${pid}/ksm_merging_pages`).catch(() => null);
      if (mp !== null && /^\d+$/.test(mp.trim())) {
        if (source === 'none') source = 'ksm_merging_pages';
        entry = { merging_pages: Number(mp.trim()), rmap_items: null, zero_pages: null, process_profit: null, merge_any: null, mergeable: null };
      }
    }
    if (!entry) continue;
    processes.push(await describeProcess(root, pid, entry));
  }
  processes.sort((a, b) => b.merging_pages - a.merging_pages || a.pid - b.pid);
  return {
    ...base,
    ksmd: { pid: ksmdPid, cpu_seconds: ticks === null ? null : ticks / 100 },
    per_process_source: source,
    processes,
    groups: groupByCgroup(processes),
    max_map_count: await readMaxMapCount(root),
    rmap_break_even: RMAP_BREAK_EVEN,
  };
}

/** KSM touches a process once it has merged pages or rmap items (pages ksmd watches). */
const touched = (c: KsmCounters): boolean => c.merging_pages > 0 || (c.rmap_items ?? 0) > 0;

async function describeProcess(root: string, pid: number, c: KsmCounters): Promise<KsmProcess> {
  const comm = (await readProcessComm(root, pid)) ?? '?';
  if (!touched(c)) return { pid, comm, ...c, cgroup: null, map_count: null, rmap_per_page: null, costs_more: null };
  const cgText = await readTextIfExists(root, `/proc/${pid}/cgroup`).catch(() => null);
  let cgroup: string | null = null;
  try {
    cgroup = cgText === null ? null : processCgroupPath(cgText);
  } catch {
    cgroup = null; // a line we cannot read: grouped under "unknown" rather than failing the status
  }
  const cost = c.rmap_items === null ? null : ksmCost(c.merging_pages, c.rmap_items, c.zero_pages ?? 0);
  return {
    pid,
    comm,
    ...c,
    cgroup,
    map_count: readMapCount(root, pid),
    rmap_per_page: cost?.rmap_per_page ?? null,
    // The kernel's own profit when it reports one (it knows its rmap item size).
    costs_more: c.process_profit !== null ? c.process_profit < 0 : (cost?.costs_more ?? null),
  };
}

export function groupByCgroup(processes: readonly KsmProcess[]): KsmGroup[] {
  const groups = new Map<string, KsmGroup & { zero: number }>();
  for (const p of processes) {
    if (!touched(p)) continue;
    const key = p.cgroup ?? '?';
    let g = groups.get(key);
    if (!g) {
      const d = p.cgroup === null ? { kind: 'cgroup' as const, name: 'unknown (cgroup unreadable)' } : describeCgroup(p.cgroup);
      g = {
        cgroup: key,
        kind: d.kind,
        name: d.name,
        processes: 0,
        merging_pages: 0,
        rmap_items: 0,
        profit_bytes: 0,
        rmap_per_page: null,
        costs_more: null,
        zero: 0,
      };
      groups.set(key, g);
    }
    g.processes++;
    g.merging_pages += p.merging_pages;
    g.zero += p.zero_pages ?? 0;
    g.rmap_items = g.rmap_items === null || p.rmap_items === null ? null : g.rmap_items + p.rmap_items;
    const profit = p.process_profit ?? (p.rmap_items === null ? null : ksmCost(p.merging_pages, p.rmap_items, p.zero_pages ?? 0).profit_bytes);
    g.profit_bytes = g.profit_bytes === null || profit === null ? null : g.profit_bytes + profit;
  }
  const out: KsmGroup[] = [];
  for (const { zero, ...g } of groups.values()) {
    if (g.rmap_items !== null) g.rmap_per_page = g.merging_pages + zero > 0 ? g.rmap_items / (g.merging_pages + zero) : null;
    if (g.profit_bytes !== null) g.costs_more = g.profit_bytes < 0;
    out.push(g);
  }
  return out.sort((a, b) => b.merging_pages - a.merging_pages || a.cgroup.localeCompare(b.cgroup));
}

const mib = (kib: number) => `${(kib / 1024).toFixed(1)} MiB`;
const ratio = (r: number | null) => (r === null ? '-' : r >= 100 ? r.toFixed(0) : r.toFixed(1));
/** Ratio and a mark when KSM costs more than it saves there. */
const rmapCell = (r: number | null, costs: boolean | null) => `${ratio(r)}${costs ? ' !' : ''}`;

/** The human view: knobs and counters, then the cgroups and the top processes that KSM touches. */
export function formatKsmStatus(s: KsmStatus, opts: { top?: number; all?: boolean } = {}): string {
  if (!s.available) return 'KSM: not available on this kernel (no /sys/kernel/mm/ksm)\n';
  const lines: string[] = [];
  const c = s.counters;
  lines.push(
    `KSM: ${s.state} (run=${s.knobs.run})   ksmd pid ${s.ksmd.pid ?? '-'}, cpu ${s.ksmd.cpu_seconds === null ? '-' : `${s.ksmd.cpu_seconds.toFixed(2)} s`}`,
  );
  lines.push(
    `  knobs     ${Object.entries(s.knobs)
      .filter(([k]) => k !== 'run')
      .map(([k, v]) => `${k}=${v}`)
      .join(' ')}`,
  );
  lines.push(
    `  pages     shared ${c.pages_shared ?? '-'}  sharing ${c.pages_sharing ?? '-'}  unshared ${c.pages_unshared ?? '-'}  volatile ${c.pages_volatile ?? '-'}`,
  );
  lines.push(`  scans     full_scans ${c.full_scans ?? '-'}${c.pages_scanned !== undefined ? `  pages_scanned ${c.pages_scanned}` : ''}`);
  lines.push(
    `  profit    general_profit ${c.general_profit === undefined ? '-' : `${c.general_profit} bytes (${mib(c.general_profit / 1024)})`}   saved ${s.saved_kib === null ? '-' : mib(s.saved_kib)} (pages_sharing x ${PAGE_KIB} KiB)${c.general_profit !== undefined && c.general_profit < 0 ? '   KSM costs this host more than it saves' : ''}`,
  );
  const merged = s.processes.filter((p) => p.merging_pages > 0);
  const shown = s.processes.filter((p) => opts.all || p.merging_pages > 0 || (p.rmap_items ?? 0) > 0).slice(0, opts.top ?? 20);
  if (s.per_process_source === 'none') {
    lines.push('  processes: this kernel has no per-process KSM counters (/proc/PID/ksm_stat needs Linux 6.1+)');
    return lines.join('\n') + '\n';
  }
  lines.push(
    `  cost rule: KSM costs more than it saves above ${s.rmap_break_even} rmap items per merged page (marked !); mappings against vm.max_map_count ${s.max_map_count ?? '-'}`,
  );
  if (s.groups.length > 0) {
    lines.push(`  by cgroup (${s.groups.length} that KSM touches):`);
    lines.push(
      `  ${'MERGING'.padStart(10)}  ${'SAVED'.padStart(10)}  ${'PROFIT'.padStart(12)}  ${'RMAP/PAGE'.padStart(9)}  ${'PROCS'.padStart(5)}  ${'KIND'.padEnd(9)}  GROUP`,
    );
    for (const g of s.groups.slice(0, opts.top ?? 20)) {
      lines.push(
        `  ${String(g.merging_pages).padStart(10)}  ${mib(g.merging_pages * PAGE_KIB).padStart(10)}  ${(g.profit_bytes === null ? '-' : String(g.profit_bytes)).padStart(12)}  ${rmapCell(g.rmap_per_page, g.costs_more).padStart(9)}  ${String(g.processes).padStart(5)}  ${g.kind.padEnd(9)}  ${g.name}${g.name === g.cgroup ? '' : ` (${g.cgroup})`}`,
      );
    }
  }
  if (shown.length === 0) {
    lines.push(`  processes: none with merged pages (${s.processes.length} checked via ${s.per_process_source})`);
  } else {
    const touchedCount = s.processes.filter((p) => p.merging_pages > 0 || (p.rmap_items ?? 0) > 0).length;
    lines.push(`  processes (${shown.length} shown; ${touchedCount} that KSM touches, ${merged.length} with merged pages; from ${s.per_process_source}):`);
    lines.push(
      `  ${'PID'.padStart(8)}  ${'MERGING'.padStart(10)}  ${'SAVED'.padStart(10)}  ${'PROFIT'.padStart(12)}  ${'RMAP/PAGE'.padStart(9)}  ${'MAPS'.padStart(6)}  MODE       COMMAND`,
    );
    for (const p of shown) {
      const mode = p.merge_any ? 'process' : p.mergeable ? 'madvise' : p.merge_any === null ? '?' : '-';
      const maps = p.map_count === null ? '-' : String(p.map_count);
      const near =
        p.map_count !== null && s.max_map_count !== null && p.map_count > 0.8 * s.max_map_count
          ? ` (${((p.map_count / s.max_map_count) * 100).toFixed(0)}% of vm.max_map_count)`
          : '';
      lines.push(
        `  ${String(p.pid).padStart(8)}  ${String(p.merging_pages).padStart(10)}  ${mib(p.merging_pages * PAGE_KIB).padStart(10)}  ${(p.process_profit === null ? '-' : String(p.process_profit)).padStart(12)}  ${rmapCell(p.rmap_per_page, p.costs_more).padStart(9)}  ${maps.padStart(6)}  ${mode.padEnd(9)}  ${p.comm}${near}`,
      );
    }
  }
  // Process names (any user sets its own) and cgroup names (a guest's): shown, never obeyed.
  return lines.map(printable).join('\n') + '\n';
}
