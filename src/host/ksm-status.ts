// What `ballast ksm status` shows: ksmd's state and knobs, the kernel's page counters, and
// which processes have pages merged (per-process counters from /proc/PID/ksm_stat, or
// /proc/PID/ksm_merging_pages on kernels that have only that), largest first.
import { listDir, readTextIfExists } from './files.js';
import { KSM_DIR, parseSelection, readKsmFiles } from './ksm-sysfs.js';
import { findKernelThread } from './ksm.js';
import { readCpuTicks, readProcessComm } from './process.js';

export const PAGE_KIB = 4; // KSM merges base pages: 4 KiB on x86-64 and most arm64 kernels

export interface KsmProcess {
  pid: number;
  comm: string;
  merging_pages: number;
  rmap_items: number | null;
  zero_pages: number | null;
  process_profit: number | null;
  /** prctl(PR_SET_MEMORY_MERGE): the whole process is mergeable (seed 003's process KSM). */
  merge_any: boolean | null;
  mergeable: boolean | null;
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

export function parseKsmStat(text: string): Omit<KsmProcess, 'pid' | 'comm'> | null {
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
    let entry: Omit<KsmProcess, 'pid' | 'comm'> | null = null;
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
    processes.push({ pid, comm: (await readProcessComm(root, pid)) ?? '?', ...entry });
  }
  processes.sort((a, b) => b.merging_pages - a.merging_pages || a.pid - b.pid);
  return { ...base, ksmd: { pid: ksmdPid, cpu_seconds: ticks === null ? null : ticks / 100 }, per_process_source: source, processes };
}

const mib = (kib: number) => `${(kib / 1024).toFixed(1)} MiB`;

/** The human view: knobs and counters, then the top processes that have merged pages. */
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
    `  profit    general_profit ${c.general_profit === undefined ? '-' : `${c.general_profit} bytes (${mib(c.general_profit / 1024)})`}   saved ${s.saved_kib === null ? '-' : mib(s.saved_kib)} (pages_sharing x ${PAGE_KIB} KiB)`,
  );
  const shown = s.processes.filter((p) => opts.all || p.merging_pages > 0).slice(0, opts.top ?? 20);
  if (s.per_process_source === 'none') {
    lines.push('  processes: this kernel has no per-process KSM counters (/proc/PID/ksm_stat needs Linux 6.1+)');
  } else if (shown.length === 0) {
    lines.push(`  processes: none with merged pages (${s.processes.length} checked via ${s.per_process_source})`);
  } else {
    lines.push(
      `  processes with merged pages (top ${shown.length} of ${s.processes.filter((p) => p.merging_pages > 0).length}, from ${s.per_process_source}):`,
    );
    lines.push(`  ${'PID'.padStart(8)}  ${'MERGING'.padStart(10)}  ${'SAVED'.padStart(10)}  ${'PROFIT'.padStart(12)}  MODE       COMMAND`);
    for (const p of shown) {
      const mode = p.merge_any ? 'process' : p.mergeable ? 'madvise' : p.merge_any === null ? '?' : '-';
      lines.push(
        `  ${String(p.pid).padStart(8)}  ${String(p.merging_pages).padStart(10)}  ${mib(p.merging_pages * PAGE_KIB).padStart(10)}  ${(p.process_profit === null ? '-' : String(p.process_profit)).padStart(12)}  ${mode.padEnd(9)}  ${p.comm}`,
      );
    }
  }
  return lines.join('\n') + '\n';
}
