// The cgroup controller's backend: per-guest memory limits (the policy controls mem_high and
// mem_max, KiB) written to the cgroup of the guest's QEMU process.
//   v2: mem_high -> memory.high (reclaim and throttle above it), mem_max -> memory.max (OOM above it)
//   v1: mem_high -> memory.soft_limit_in_bytes, mem_max -> memory.limit_in_bytes
// v1 has no throttling limit: its soft limit only steers reclaim when the whole host (or a
// parent) is short of memory, so mem_high is weaker there. null removes a limit.
import { readFile, writeFile } from 'node:fs/promises';
import { posix } from 'node:path';
import type { CgroupBackend, GuestSample, MemLimits } from '../types.js';
import { findMemoryCgroup, limitBytesToKiB, type MemoryCgroup } from './cgroup.js';
import { errnoOf } from './files.js';
import { guestPid } from './guest-pid.js';

export interface LimitFiles {
  high: string;
  max: string;
  /** What a file takes to remove the limit. */
  unlimited: string;
}

export function limitFiles(version: 1 | 2): LimitFiles {
  return version === 2
    ? { high: 'memory.high', max: 'memory.max', unlimited: 'max' }
    : { high: 'memory.soft_limit_in_bytes', max: 'memory.limit_in_bytes', unlimited: '-1' };
}

/** KiB (or null) -> what the file takes. */
export function limitText(kib: number | null, files: LimitFiles): string {
  if (kib === null) return files.unlimited;
  if (!Number.isFinite(kib) || kib < 0) throw new Error(`memory limit must be a non-negative number of KiB or null, not ${kib}`);
  return String(Math.floor(kib) * 1024);
}

export class CgroupLimitError extends Error {
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
    this.name = 'CgroupLimitError';
  }
}

function explain(file: string, code: string | undefined, kib: number | null, version: 1 | 2): string {
  switch (code) {
    case 'EACCES':
    case 'EPERM':
      return `${file}: permission denied (ballast needs root or a delegated cgroup)`;
    case 'EROFS':
      return `${file}: the cgroup file system is read-only here`;
    case 'EBUSY':
      return `${file}: the kernel could not reclaim the guest below ${kib} KiB (EBUSY); the limit is unchanged`;
    case 'EINVAL':
      return version === 1
        ? `${file}: the kernel refused ${kib} KiB (EINVAL; on cgroup v1 memory.limit_in_bytes may not exceed memory.memsw.limit_in_bytes)`
        : `${file}: the kernel refused ${kib} KiB (EINVAL)`;
    case 'ENOENT':
      return `${file}: no such file (the guest's cgroup is gone?)`;
    default:
      return `${file}: write failed (${code ?? 'unknown error'})`;
  }
}

export interface CgroupLimitsOptions {
  root?: string;
  /** Allow limits on a cgroup that holds other processes besides the guest (off: a limit
   *  meant for one guest must not squeeze its neighbours, nor the domain they share). */
  allowShared?: boolean;
  /** Where libvirt keeps <name>.pid for guests whose driver gives no props.pid. */
  libvirtRunDir?: string;
}

export class CgroupLimits implements CgroupBackend {
  private readonly root: string;
  private readonly byPid = new Map<number, MemoryCgroup>();
  /** File -> its content before ballast first wrote it, for restore(). */
  private readonly originals = new Map<string, string>();

  constructor(private readonly opts: CgroupLimitsOptions = {}) {
    this.root = opts.root ?? '/';
  }

  /** The memory cgroup of a guest's QEMU process (props.pid, or libvirt's PID file). */
  async cgroupOf(guest: GuestSample): Promise<MemoryCgroup> {
    const pid = await guestPid(guest, { root: this.root, libvirtRunDir: this.opts.libvirtRunDir });
    if (pid === null) throw new CgroupLimitError(`guest ${guest.name}: no QEMU pid known (no props.pid, no libvirt PID file), cannot find its cgroup`);
    const cached = this.byPid.get(pid);
    if (cached) return cached;
    const cg = await findMemoryCgroup(this.root, pid);
    if (!cg) throw new CgroupLimitError(`guest ${guest.name}: process ${pid} has no memory cgroup (gone, or no memory controller mounted)`);
    if (cg.path === '/')
      throw new CgroupLimitError(`guest ${guest.name}: process ${pid} is in the root memory cgroup, which takes no limits; start it in its own cgroup`);
    if (!this.opts.allowShared) {
      const procs = (await readFile(posix.join(cg.dir, 'cgroup.procs'), 'utf8'))
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map(Number);
      const others = procs.filter((p) => p !== pid);
      if (others.length > 0)
        throw new CgroupLimitError(
          `guest ${guest.name}: cgroup ${cg.path} also holds process(es) ${others.slice(0, 5).join(', ')}; refusing to limit a shared cgroup (allowShared to override)`,
        );
    }
    this.byPid.set(pid, cg);
    return cg;
  }

  async setLimits(guest: GuestSample, limits: MemLimits): Promise<void> {
    const cg = await this.cgroupOf(guest);
    const files = limitFiles(cg.version);
    const errors: string[] = [];
    // Order matters on v1 only when both change; lowering max first keeps soft <= hard.
    for (const key of ['max', 'high'] as const) {
      const kib = limits[key];
      if (kib === undefined) continue;
      const file = posix.join(cg.dir, files[key]);
      try {
        const text = limitText(kib, files);
        const before = await readFile(file, 'utf8');
        if (!this.originals.has(file)) this.originals.set(file, before.trim());
        await writeFile(file, text);
        const after = limitBytesToKiB(await readFile(file, 'utf8'));
        // The kernel rounds limits down to whole pages.
        if (kib === null ? after !== null : after === null || Math.abs(after - kib) >= 4) {
          errors.push(`${file}: wrote ${text} but it reads back ${after === null ? 'unlimited' : `${after} KiB`}`);
        }
      } catch (err) {
        const code = errnoOf(err);
        if (code === 'ENOENT') for (const [p, c] of this.byPid) if (c.dir === cg.dir) this.byPid.delete(p);
        errors.push(code ? explain(file, code, kib, cg.version) : (err as Error).message);
      }
    }
    if (errors.length > 0) throw new CgroupLimitError(`guest ${guest.name}: ${errors.join('; ')}`);
  }

  /** Reads a guest's current limits (KiB, null when unlimited). */
  async getLimits(guest: GuestSample): Promise<{ high: number | null; max: number | null; version: 1 | 2 }> {
    const cg = await this.cgroupOf(guest);
    const files = limitFiles(cg.version);
    const read = async (f: string) => limitBytesToKiB(await readFile(posix.join(cg.dir, f), 'utf8'));
    return { high: await read(files.high), max: await read(files.max), version: cg.version };
  }

  /** Writes back every limit file as ballast found it (cgroups that are gone are skipped). */
  async restore(): Promise<void> {
    const errors: string[] = [];
    for (const [file, text] of this.originals) {
      try {
        await writeFile(file, text === 'max' || limitBytesToKiB(text) !== null ? text : '-1');
      } catch (err) {
        if (errnoOf(err) !== 'ENOENT') errors.push(`${file}: ${errnoOf(err) ?? (err as Error).message}`);
      }
    }
    this.originals.clear();
    if (errors.length > 0) throw new CgroupLimitError(`restoring cgroup limits: ${errors.join('; ')}`);
  }
}
