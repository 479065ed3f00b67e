// Swap for the memory domain. The machine may have none; then the experiment adds a swap file
// of its own (under /var/tmp) for the duration and takes it away again (swapoff, delete).
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { run, runOk } from '../../lab/proc.js';
import { LabUnavailable } from './errors.js';
import { parseSwaps } from '../../host/swap-speed.js';

export interface SwapSetup {
  /** 'existing': the host already had swap, left as it was; 'file': ours, removed at the end. */
  mode: 'existing' | 'file';
  path: string | null;
  totalKiB: number;
  /** What /proc/swaps listed before. */
  before: string[];
}

/** Active swap areas (the Filename column of /proc/swaps). */
export function swapAreas(text = readFileSync('/proc/swaps', 'utf8')): { name: string; sizeKiB: number }[] {
  return parseSwaps(text).map((a) => ({ name: a.path, sizeKiB: a.sizeKiB }));
}

export async function ensureSwap(sizeMiB: number, dir: string, say: (m: string) => void): Promise<SwapSetup> {
  const areas = swapAreas();
  const before = areas.map((a) => a.name);
  const total = areas.reduce((s, a) => s + a.sizeKiB, 0);
  if (total >= sizeMiB * 1024) {
    say(`swap: using the host's swap (${before.join(', ')}, ${Math.round(total / 1024)} MiB); nothing added`);
    return { mode: 'existing', path: null, totalKiB: total, before };
  }
  const path = join(dir, `ballast-lab-experiment-${process.pid}.swap`);
  say(
    `swap: the host has ${Math.round(total / 1024)} MiB of swap: adding a ${sizeMiB} MiB swap file ${path} for this experiment (swapoff and deleted at the end)`,
  );
  rmSync(path, { force: true });
  try {
    await runOk('fallocate', ['-l', `${sizeMiB}M`, path]);
    await runOk('chmod', ['600', path]);
    await runOk('mkswap', [path]);
    await runOk('swapon', [path]);
  } catch (e) {
    rmSync(path, { force: true });
    throw new LabUnavailable(`cannot add swap (the domain needs some): ${(e as Error).message}`);
  }
  return { mode: 'file', path, totalKiB: total + sizeMiB * 1024, before };
}

/** Takes our swap file away again (swapoff brings its pages back into memory first). */
export async function removeSwap(s: SwapSetup | null, say: (m: string) => void): Promise<void> {
  if (s?.mode !== 'file' || !s.path) return;
  if (swapAreas().some((a) => a.name === s.path)) {
    const r = await run('swapoff', [s.path], { timeoutMs: 300_000 });
    if (r.code !== 0) say(`swap: swapoff ${s.path} failed: ${r.stderr.trim()} (left active; run swapoff ${s.path} && rm ${s.path})`);
  }
  if (!swapAreas().some((a) => a.name === s.path) && existsSync(s.path)) rmSync(s.path, { force: true });
  say(`swap: ${s.path} switched off and deleted`);
}
