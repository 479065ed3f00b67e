// Reads the counters the experiment reports: the memory domain's charge, limit hits, swap
// and major faults (cgroup v1 or v2 files), the host's swap traffic (/proc/vmstat) and memory
// pressure stall totals (/proc/pressure/memory).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CounterSample } from './metrics.js';

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

/** The PSI totals line `some avg10=.. avg60=.. avg300=.. total=N`. */
export function parsePsiTotals(text: string | null): { some: number | null; full: number | null } {
  const out = { some: null as number | null, full: null as number | null };
  for (const line of (text ?? '').split('\n')) {
    const m = /^(some|full) .*total=(\d+)/.exec(line.trim());
    if (m) out[m[1] as 'some' | 'full'] = Number(m[2]);
  }
  return out;
}

export function readCounters(domainDir: string, version: 1 | 2, now = Date.now() / 1000): CounterSample {
  const vm = keyValues(readFileSync('/proc/vmstat', 'utf8'));
  const psi = parsePsiTotals(readOr('/proc/pressure/memory'));
  const host = {
    hostSwapIn: vm.get('pswpin') ?? 0,
    hostSwapOut: vm.get('pswpout') ?? 0,
    psiSomeUs: psi.some,
    psiFullUs: psi.full,
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
