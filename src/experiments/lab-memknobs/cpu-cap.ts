// A fixed CPU share per guest. Without it, 4 TCG guests on 2 cores share the CPU among
// themselves: a guest stalled on a swap-in gives its CPU to the others, so the sum of their
// throughput hardly moves however slow swap is, and the experiment measures CPU sharing
// rather than memory. With a cap (CFS bandwidth: v1 cpu.cfs_quota_us, v2 cpu.max) each guest
// runs at most at its share, as on a host with a core per guest, and time a guest spends
// waiting for memory is work lost.
import { mkdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { removeDomain, v1Mount, type Domain } from './domain.js';

const PERIOD_US = 100_000;

export interface CpuCaps {
  /** CPUs (fractions of one) each guest may use. */
  perGuest: number;
  /** v1: one directory per guest in the cpu hierarchy, for QEMU to join; v2: the domain's own. */
  dirs: string[];
  /** v1: the run's directory in the cpu hierarchy (removed at the end); v2: null. */
  root: string | null;
}

/** 80% of the host's CPUs split among the guests, at most one each: the rest is the host's
 *  (the manager, kswapd, the swap device's I/O). */
export function defaultCpuPerGuest(guests: number, cpus = availableParallelism()): number {
  return Math.min(1, Math.floor(((0.8 * cpus) / guests) * 100) / 100);
}

export function quotaUs(perGuest: number): number {
  return Math.max(1000, Math.round(perGuest * PERIOD_US));
}

export function createCpuCaps(name: string, perGuest: number, domain: Domain): CpuCaps {
  if (!(perGuest > 0 && perGuest <= 8)) throw new Error(`--cpu-per-guest must be in (0, 8], got ${perGuest}`);
  if (domain.version === 2) {
    // Same hierarchy as memory: the cap goes on each guest's directory of the domain.
    writeFileSync(join(domain.dir, '..', 'cgroup.subtree_control'), '+cpu');
    writeFileSync(join(domain.dir, 'cgroup.subtree_control'), '+cpu');
    for (const g of domain.guestDirs) writeFileSync(join(g, 'cpu.max'), `${quotaUs(perGuest)} ${PERIOD_US}`);
    return { perGuest, dirs: [], root: null };
  }
  const mount = v1Mount('cpu');
  if (!mount) throw new Error('no cpu cgroup controller is mounted (cgroup v1 cpu); run with --cpu-per-guest off');
  const root = join(mount, name);
  mkdirSync(root);
  const caps: CpuCaps = { perGuest, dirs: [], root };
  try {
    domain.guestDirs.forEach((_, i) => {
      const dir = join(root, `g${i + 1}`);
      mkdirSync(dir);
      caps.dirs.push(dir);
      writeFileSync(join(dir, 'cpu.cfs_period_us'), String(PERIOD_US));
      writeFileSync(join(dir, 'cpu.cfs_quota_us'), String(quotaUs(perGuest)));
    });
  } catch (e) {
    removeCpuCapsNow(caps);
    throw e;
  }
  return caps;
}

/** Removes the v1 directories (their QEMUs must be gone; a QEMU killed a moment ago may keep
 *  its cgroup busy briefly, so this waits like removeDomain); returns what could not be removed. */
export function removeCpuCaps(c: CpuCaps): Promise<string[]> {
  return removeDomain({ dir: c.root ?? '', guestDirs: c.dirs });
}

/** At exit, no waiting: whatever is not busy goes. */
export function removeCpuCapsNow(c: CpuCaps): void {
  for (const dir of [...c.dirs, ...(c.root ? [c.root] : [])]) {
    try {
      rmdirSync(dir);
    } catch {
      /* busy or gone */
    }
  }
}
