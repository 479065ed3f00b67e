// The host sources on this machine's real /proc and /sys: CPU per collection of all of them
// (what an idle daemon spends most of its collections on). Baseline measured in the same run:
// the same sources reading every file with readFileSync, as before kernel files were kept open
// (src/host/files.ts KernelFiles). Root '//' names the same live files, but is not '/', so
// files.ts reads them the old way.
import { hostSources } from '../src/host/index.js';
import type { HostSource } from '../src/types.js';

async function cpuPerCollection(sources: HostSource[], n: number): Promise<number> {
  for (let i = 0; i < 50; i++) for (const s of sources) await s.collect();
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i++) for (const s of sources) await s.collect();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / n;
}

export default async function main(): Promise<void> {
  const n = Number(process.env.BALLAST_BENCH_HOST_N ?? 2000);
  const kept: number[] = [];
  const base: number[] = [];
  // Interleaved rounds, so that a noisy neighbour hurts both alike.
  for (let round = 0; round < 3; round++) {
    base.push(await cpuPerCollection(hostSources({ root: '//' }), n));
    kept.push(await cpuPerCollection(hostSources({ root: '/' }), n));
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[1]!;
  const k = med(kept);
  const b = med(base);
  console.log(
    `host sources, one collection of all ${hostSources().length}: ${k.toFixed(0)} us CPU (files kept open), baseline ${b.toFixed(0)} us (readFileSync each)`,
  );
  console.log(`ratio kept/baseline: ${(k / b).toFixed(2)}x (median of 3 interleaved rounds of ${n})`);
}
