// The memory domain the guests run in: one cgroup with a memory limit (the "host" ballast
// manages) and one child per guest, so each QEMU's charge can be told apart. cgroup v1 or v2.
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findMemoryCgroup, parseMountinfo } from '../../host/cgroup.js';

export interface Domain {
  version: 1 | 2;
  dir: string;
  guestDirs: string[];
  limitKiB: number;
  /** v1: memory.memsw.* exists, so the domain's swap is accounted (total_swap). */
  swapAccounted: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Where a cgroup v1 controller's hierarchy is mounted (null: not mounted as v1). */
export function v1Mount(controller: string, mountinfo = readFileSync('/proc/self/mountinfo', 'utf8')): string | null {
  return parseMountinfo(mountinfo).find((m) => m.version === 1 && m.controllers.includes(controller))?.mountPoint ?? null;
}

/** Where memory cgroups are mounted, and which version (null: no memory controller). */
export async function memoryCgroupMount(): Promise<{ version: 1 | 2; mountPoint: string } | null> {
  const self = await findMemoryCgroup('/', 'self');
  return self ? { version: self.version as 1 | 2, mountPoint: self.mountPoint } : null;
}

export async function createDomain(name: string, limitKiB: number, guests: number): Promise<Domain> {
  const mount = await memoryCgroupMount();
  if (!mount) throw new Error('no memory cgroup controller is mounted (cgroup v1 memory or v2 with +memory)');
  const dir = join(mount.mountPoint, name);
  if (existsSync(dir)) throw new Error(`cgroup ${dir} already exists (an earlier run that did not clean up? remove it with rmdir)`);
  if (mount.version === 2) {
    // Children of the root get a memory controller only when the root delegates it.
    writeFileSync(join(mount.mountPoint, 'cgroup.subtree_control'), '+memory');
  }
  mkdirSync(dir);
  const domain: Domain = { version: mount.version, dir, guestDirs: [], limitKiB, swapAccounted: false };
  try {
    if (mount.version === 1) {
      writeFileSync(join(dir, 'memory.limit_in_bytes'), String(limitKiB * 1024));
      domain.swapAccounted = existsSync(join(dir, 'memory.memsw.limit_in_bytes'));
    } else {
      writeFileSync(join(dir, 'memory.max'), String(limitKiB * 1024));
      writeFileSync(join(dir, 'cgroup.subtree_control'), '+memory');
      domain.swapAccounted = existsSync(join(dir, 'memory.swap.current'));
    }
    for (let i = 1; i <= guests; i++) {
      const g = join(dir, `g${i}`);
      mkdirSync(g);
      domain.guestDirs.push(g);
    }
  } catch (e) {
    await removeDomain(domain);
    throw e;
  }
  return domain;
}

/** True while any process is still in the cgroup or one of its children. */
function populated(dir: string): boolean {
  const procs = readFileSync(join(dir, 'cgroup.procs'), 'utf8').trim();
  return procs !== '';
}

/** Removes the guests' cgroups and the domain (their processes must be gone; waits a little
 *  for exiting QEMUs to leave). Returns what could not be removed. */
export async function removeDomain(d: Pick<Domain, 'dir' | 'guestDirs'>, timeoutMs = 10_000): Promise<string[]> {
  const left: string[] = [];
  for (const dir of [...d.guestDirs, d.dir]) {
    if (!existsSync(dir)) continue;
    const end = Date.now() + timeoutMs;
    for (;;) {
      try {
        rmdirSync(dir);
        break;
      } catch (e) {
        const busy = (e as NodeJS.ErrnoException).code === 'EBUSY' || (existsSync(dir) && populated(dir));
        if (!busy || Date.now() > end) {
          left.push(`${dir}: ${(e as Error).message}`);
          break;
        }
        await sleep(200);
      }
    }
  }
  return left;
}
