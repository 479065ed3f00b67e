// Reads the counters the experiment reports: the memory domain's charge, limit hits, swap
// and major faults (cgroup v1 or v2 files), the host's swap traffic (/proc/vmstat) and memory
// and I/O pressure stall totals (/proc/pressure/memory, /proc/pressure/io).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CounterSample, HugeSample } from './metrics.js';
import { KSM_DIR } from '../../host/ksm-sysfs.js';
import { parsePsiTotals } from '../../psi.js';

function keyValues(text: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of text.split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined && /^-?\d+$/.test(v)) m.set(k, Number(v));
  }
  return m;
}

function readOr(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

export function readCounters(domainDir: string, version: 1 | 2, now = Date.now() / 1000): CounterSample {
  const vm = keyValues(readFileSync('/proc/vmstat', 'utf8'));
  const psi = parsePsiTotals(readOr('/proc/pressure/memory'));
  const io = parsePsiTotals(readOr('/proc/pressure/io'));
  const host = {
    hostSwapIn: vm.get('pswpin') ?? 0,
    hostSwapOut: vm.get('pswpout') ?? 0,
    psiSomeUs: psi.some,
    psiFullUs: psi.full,
    psiIoSomeUs: io.some,
  };
  if (version === 1) {
    const stat = keyValues(readFileSync(join(domainDir, 'memory.stat'), 'utf8'));
    return {
      at: now,
      usageKiB: Math.floor(Number(readFileSync(join(domainDir, 'memory.usage_in_bytes'), 'utf8').trim()) / 1024),
      limitHits: Number(readFileSync(join(domainDir, 'memory.failcnt'), 'utf8').trim()),
      swapKiB: stat.has('total_swap') ? Math.floor(stat.get('total_swap')! / 1024) : null,
      majorFaults: stat.get('total_pgmajfault') ?? null,
      domainSwapIn: stat.get('total_pswpin') ?? null,
      domainSwapOut: stat.get('total_pswpout') ?? null,
      ...host,
    };
  }
  const stat = keyValues(readFileSync(join(domainDir, 'memory.stat'), 'utf8'));
  const events = keyValues(readOr(join(domainDir, 'memory.events')) ?? '');
  const swap = readOr(join(domainDir, 'memory.swap.current'));
  return {
    at: now,
    usageKiB: Math.floor(Number(readFileSync(join(domainDir, 'memory.current'), 'utf8').trim()) / 1024),
    limitHits: (events.get('max') ?? 0) + (events.get('high') ?? 0),
    swapKiB: swap === null ? null : Math.floor(Number(swap.trim()) / 1024),
    majorFaults: stat.get('pgmajfault') ?? null,
    domainSwapIn: stat.get('pswpin') ?? null,
    domainSwapOut: stat.get('pswpout') ?? null,
    ...host,
  };
}

/** Rss and AnonHugePages (KiB) of /proc/PID/smaps_rollup; null where a line is missing. */
export function parseSmapsRollup(text: string): { rssKiB: number | null; anonHugeKiB: number | null } {
  const kib = (k: string) => {
    const m = new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text);
    return m ? Number(m[1]) : null;
  };
  return { rssKiB: kib('Rss'), anonHugeKiB: kib('AnonHugePages') };
}

/** KSM on the host at one moment: scanning or not, and the pages it saves (pages_sharing). */
export interface KsmSample {
  run: boolean;
  sharing: number;
}

/** null on a kernel without KSM. */
export function readKsmSample(root = KSM_DIR): KsmSample | null {
  const run = readOr(`${root}/run`);
  const sharing = readOr(`${root}/pages_sharing`);
  if (run === null || sharing === null) return null;
  return { run: run.trim() === '1', sharing: Number(sharing.trim()) || 0 };
}

/** Over a window: the share of samples in which KSM was scanning and the mean MiB it saved.
 *  A manager that turned KSM on before the window (in the warm-up) shows here, where its
 *  log's window does not. */
export function summarizeKsm(samples: readonly KsmSample[]): { runShare: number; savedMiB: number } | null {
  if (samples.length === 0) return null;
  const on = samples.filter((s) => s.run).length;
  const pages = samples.reduce((a, s) => a + s.sharing, 0) / samples.length;
  return { runShare: Math.round((on / samples.length) * 100) / 100, savedMiB: Math.round((pages * 4) / 1024) };
}

/** The processes' RSS and what of it is in huge pages, summed; null when none could be read
 *  (all gone, or no smaps_rollup: kernels before 4.14). */
export function readHugeSample(pids: readonly number[], now = Date.now() / 1000): HugeSample | null {
  let rssKiB = 0;
  let anonHugeKiB = 0;
  let read = 0;
  for (const pid of pids) {
    const text = readOr(`/proc/${pid}/smaps_rollup`);
    if (text === null) continue;
    const r = parseSmapsRollup(text);
    if (r.rssKiB === null) continue;
    rssKiB += r.rssKiB;
    anonHugeKiB += r.anonHugeKiB ?? 0;
    read++;
  }
  return read ? { at: now, rssKiB, anonHugeKiB } : null;
}
