// What a dead experiment left behind. One killed without its exit handler (SIGKILL, a machine
// frozen and reset) leaves its swap device on and its cgroups in place. The next experiment
// would measure through them: a second swap device at the same priority takes half of the
// swap traffic past the throttle. So each experiment, once it holds the lab lock (no other
// experiment is running), removes what experiments whose process is gone left, and says so.
import { readdirSync, readFileSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pidAlive, run } from '../../lab/proc.js';
import { swapAreas } from './swap.js';
import { memoryCgroupMount, v1Mount } from './domain.js';

const OWNED = /ballast-lab-experiment-(\d+)(?:[-.]|$)/;

/** The PID of the experiment that named `name` (a path or a cgroup), if it is gone. */
export function deadOwner(name: string, alive: (pid: number) => boolean): number | null {
  const m = OWNED.exec(name);
  if (!m) return null;
  const pid = Number(m[1]);
  return alive(pid) ? null : pid;
}

/** The active swap areas' names (none when the kernel has no /proc/swaps). */
function activeSwaps(): string[] {
  try {
    return swapAreas().map((a) => a.name);
  } catch {
    return [];
  }
}

/** What a loop device is backed by ('' when it is not set up or not a loop device). */
function backingFile(dev: string): string {
  const m = /^\/dev\/(loop\d+)$/.exec(dev);
  if (!m) return '';
  try {
    return readFileSync(`/sys/block/${m[1]}/loop/backing_file`, 'utf8').trim();
  } catch {
    return '';
  }
}

/** Every loop device set up on the host, with its backing file. */
function loopDevices(): { dev: string; file: string }[] {
  let names: string[] = [];
  try {
    names = readdirSync('/sys/block').filter((n) => /^loop\d+$/.test(n));
  } catch {
    return [];
  }
  return names.map((n) => ({ dev: `/dev/${n}`, file: backingFile(`/dev/${n}`) })).filter((l) => l.file !== '');
}

/** Removes a cgroup and its children, deepest first; leaves (and says) one that has tasks. */
function removeCgroupTree(dir: string, say: (m: string) => void): boolean {
  let ok = true;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) ok = removeCgroupTree(join(dir, e.name), say) && ok;
  }
  if (!ok) return false;
  try {
    rmdirSync(dir);
    return true;
  } catch (e) {
    say(`lab: cannot remove ${dir} left by a dead experiment: ${(e as Error).message} (its processes: ${join(dir, 'cgroup.procs')})`);
    return false;
  }
}

/**
 * Removes the swap devices, swap files and cgroups of experiments that are no longer running.
 * Call with the lab lock held. Returns what it removed (also said).
 */
export async function sweepStale(swapDir: string, say: (m: string) => void, alive: (pid: number) => boolean = pidAlive): Promise<string[]> {
  const removed: string[] = [];
  const swaps = activeSwaps();
  const loops = loopDevices();
  for (const area of swaps) {
    const file = backingFile(area) || area;
    if (deadOwner(file, alive) === null) continue;
    const r = await run('swapoff', [area], { timeoutMs: 600_000 });
    if (r.code !== 0) {
      say(`lab: swapoff ${area} (left by a dead experiment) failed: ${r.stderr.trim()}`);
      continue;
    }
    removed.push(`swap ${area}`);
  }
  for (const l of loops) {
    if (deadOwner(l.file, alive) === null) continue;
    if ((await run('losetup', ['-d', l.dev])).code === 0) removed.push(`loop device ${l.dev}`);
  }
  let files: string[] = [];
  try {
    files = readdirSync(swapDir).filter((f) => /^ballast-lab-experiment-\d+\.swap$/.test(f));
  } catch {}
  const active = new Set(activeSwaps());
  const backed = new Set(loopDevices().map((l) => l.file));
  for (const f of files) {
    const path = join(swapDir, f);
    if (deadOwner(f, alive) === null || active.has(path) || backed.has(path)) continue;
    if ((await run('rm', ['-f', path])).code === 0) removed.push(`swap file ${path}`);
  }
  const mounts = new Set<string>();
  const mem = await memoryCgroupMount();
  if (mem) mounts.add(mem.mountPoint);
  for (const c of ['blkio', 'cpu']) {
    const m = mem?.version === 1 ? v1Mount(c) : null;
    if (m) mounts.add(m);
  }
  for (const mount of mounts) {
    let entries: string[] = [];
    try {
      entries = readdirSync(mount).filter((n) => n.startsWith('ballast-lab-experiment-'));
    } catch {}
    for (const n of entries) {
      const dir = join(mount, n);
      if (deadOwner(n, alive) === null || !statSync(dir).isDirectory()) continue;
      if (removeCgroupTree(dir, say)) removed.push(`cgroup ${dir}`);
    }
  }
  if (removed.length > 0) say(`lab: removed what experiments that are no longer running left behind: ${removed.join(', ')}`);
  return removed;
}
