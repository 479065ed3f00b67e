// Which process is the QEMU behind a QMP socket. QEMU names its vCPU threads in
// query-cpus-fast, and their thread group is its PID; but that answer comes from the peer, and
// cgroup limits and cpu.max are written for that PID, so a compromised QEMU could point them
// at any other process. Node exposes no SO_PEERCRED, so the answer is checked against the
// kernel instead: the process must hold the very socket ballast connected to (a socket bound
// to that path, in its own /proc/PID/net/unix, open in its /proc/PID/fd), and every vCPU
// thread it named must be one of its own tasks.
import { readdir, readlink, realpath } from 'node:fs/promises';
import { join } from 'node:path';
import { readTextIfExists } from '../../host/files.js';
import { readThreadTgid } from '../../host/process.js';

export type PeerPid = { pid: number } | { pid: null; reason: string };

/** Inodes of the unix sockets bound to one of `paths`, from a /proc/net/unix text. The
 *  listening socket and every accepted connection carry the bound path. */
export function socketInodes(netUnix: string, paths: ReadonlySet<string>): Set<string> {
  const out = new Set<string>();
  // Num RefCount Protocol Flags Type St Inode Path
  for (const line of netUnix.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    // A path may hold spaces: everything after the inode is the path.
    const path = f.slice(7).join(' ');
    if (paths.has(path)) out.add(f[6]!);
  }
  return out;
}

async function holdsSocket(root: string, pid: number, inodes: Set<string>): Promise<boolean> {
  const dir = join(root, 'proc', String(pid), 'fd');
  let fds: string[];
  try {
    fds = await readdir(dir);
  } catch {
    return false;
  }
  for (const fd of fds) {
    const link = await readlink(join(dir, fd)).catch(() => '');
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (m && inodes.has(m[1]!)) return true;
  }
  return false;
}

/**
 * The PID of the QEMU listening on `socket`, from the vCPU thread ids it reported, or why it
 * cannot be trusted. `root` prefixes /proc (tests).
 */
export async function verifiedQemuPid(root: string, socket: string, threadIds: readonly number[]): Promise<PeerPid> {
  const tids = threadIds.filter((t) => Number.isSafeInteger(t) && t > 0);
  if (tids.length === 0) return { pid: null, reason: 'QEMU reported no vCPU thread id' };
  const pid = await readThreadTgid(root, tids[0]!);
  if (pid === null) return { pid: null, reason: `vCPU thread ${tids[0]} does not exist` };
  for (const tid of tids) {
    if ((await readThreadTgid(root, tid)) !== pid) return { pid: null, reason: `vCPU thread ${tid} is not a thread of process ${pid}` };
  }
  // The path as QEMU bound it may differ from ours by symbolic links (/var/run -> /run).
  const paths = new Set([socket, await realpath(socket).catch(() => socket)]);
  // The process's own view: its network namespace holds its sockets.
  const netUnix = await readTextIfExists(root, `/proc/${pid}/net/unix`);
  if (netUnix === null) return { pid: null, reason: `cannot read /proc/${pid}/net/unix` };
  const inodes = socketInodes(netUnix, paths);
  if (inodes.size === 0 || !(await holdsSocket(root, pid, inodes))) {
    return { pid: null, reason: `process ${pid} (named by QEMU's vCPU threads) does not hold the QMP socket ${socket}` };
  }
  return { pid };
}
