// One daemon per hypervisor. Two daemons on the same libvirtd or QMP directory would fight
// over every balloon (each undoing the other's steps, each rollback misread), so the second
// must stop at start with a clear error. Node has no flock(2): the lock is a file created
// atomically (link(2) of a complete temporary file, which fails if the name exists) holding
// the owner's PID and its start time; a lock whose owner is gone (crash, SIGKILL) or whose PID
// now belongs to another process (the start time differs) is stale and taken over.
import { linkSync, mkdirSync, readFileSync, realpathSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Config } from '../config/schema.js';
import { DEFAULT_SOCKET } from '../hypervisor/libvirt/client.js';

export class InstanceLockError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InstanceLockError';
  }
}

export interface InstanceLock {
  path: string;
  /** Removes the lock if it is still this process's; idempotent. */
  release(): void;
}

interface Owner {
  pid: number;
  /** Clock ticks after boot at which the process started (/proc/PID/stat field 22). */
  start: number | null;
  hypervisor: string;
  since: string;
}

/** Where locks live: $BALLAST_RUNTIME_DIR, else /run/ballast (root), else the user's runtime
 *  directory: two daemons of one user find the same lock. */
export function defaultRuntimeDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.BALLAST_RUNTIME_DIR) return resolve(env.BALLAST_RUNTIME_DIR);
  if (process.getuid?.() === 0) return '/run/ballast';
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, 'ballast');
  return join(tmpdir(), `ballast-${process.getuid?.() ?? 'user'}`);
}

const canonical = (path: string) => {
  try {
    return realpathSync(path);
  } catch {
    return resolve(path);
  }
};

/** What a daemon with this config manages, or null when it manages nothing another daemon
 *  could (the simulator's guests are its own; a read-only libvirt connection never acts). */
export function hypervisorKey(h: Config['hypervisor']): string | null {
  if (h.driver === 'sim') return null;
  if (h.driver === 'qmp') return `qmp ${canonical(h.qmp_dir)}`;
  if (h.readonly) return null;
  if (h.socket_glob) return `libvirt ${h.socket_glob}`;
  const socket = h.socket || (h.uri === 'qemu:///system' ? DEFAULT_SOCKET : '');
  return socket ? `libvirt ${canonical(socket)}` : `libvirt ${h.uri}`;
}

function startTime(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const v = Number(f[19]);
    return Number.isFinite(v) ? v : null;
  } catch {
    return null;
  }
}

function alive(o: Owner): boolean {
  try {
    process.kill(o.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  // The PID exists: the same process only if it started when the owner did.
  return o.start === null || startTime(o.pid) === null || startTime(o.pid) === o.start;
}

function readOwner(path: string): Owner | null {
  try {
    const o = JSON.parse(readFileSync(path, 'utf8')) as Owner;
    return Number.isSafeInteger(o.pid) && o.pid > 0 ? o : null;
  } catch {
    return null;
  }
}

/**
 * Takes the lock for `hypervisor` in `dir`, or throws InstanceLockError naming the daemon that
 * holds it.
 */
export function acquireInstanceLock(dir: string, hypervisor: string): InstanceLock {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o755 });
  } catch (err) {
    throw new InstanceLockError(
      `cannot create the runtime directory ${dir} for the instance lock: ${(err as Error).message} (set BALLAST_RUNTIME_DIR to a writable directory)`,
    );
  }
  const key = createHash('sha256').update(hypervisor).digest('hex').slice(0, 16);
  const path = join(dir, `ballast-${key}.lock`);
  const me: Owner = { pid: process.pid, start: startTime(process.pid), hypervisor, since: new Date().toISOString() };
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(me)}\n`, { mode: 0o644 });
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        linkSync(tmp, path);
        return lockOf(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new InstanceLockError(`cannot create the instance lock ${path}: ${(err as Error).message}`);
      }
      const owner = readOwner(path);
      if (owner && alive(owner)) {
        throw new InstanceLockError(
          `another ballast daemon (PID ${owner.pid}, since ${owner.since}) manages ${owner.hypervisor}: two would fight over every balloon; stop it first (lock ${path})`,
        );
      }
      // Unreadable (the name only appears complete, so not one being written) or its owner is
      // gone: stale. It is moved aside first, which only one daemon can do to a given file, and
      // looked at again: another daemon may have replaced it in between.
      const aside = `${path}.${process.pid}.stale`;
      try {
        renameSync(path, aside);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw new InstanceLockError(`cannot remove the stale instance lock ${path}: ${(err as Error).message}`);
      }
      const moved = readOwner(aside);
      if (moved && alive(moved)) {
        // A live daemon's fresh lock: put it back and yield to it.
        try {
          linkSync(aside, path);
        } catch {
          // yet another daemon took the name: it holds the lock now
        }
        unlinkSync(aside);
        continue;
      }
      unlinkSync(aside);
    }
    throw new InstanceLockError(`cannot take the instance lock ${path}: it keeps changing hands`);
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
  }
}

function lockOf(path: string): InstanceLock {
  let held = true;
  const release = () => {
    if (!held) return;
    held = false;
    process.off('exit', release);
    if (readOwner(path)?.pid !== process.pid) return;
    try {
      unlinkSync(path);
    } catch {
      // removed by hand: nothing to release
    }
  };
  // A forced exit (a second signal) still leaves no lock behind.
  process.on('exit', release);
  return { path, release };
}

/** The lock a daemon with this config must hold while it runs, or null when it needs none. */
export function lockFor(config: Config, dir: string = defaultRuntimeDir()): InstanceLock | null {
  const key = hypervisorKey(config.hypervisor);
  return key === null ? null : acquireInstanceLock(dir, key);
}
