// Where a process's memory cgroup is, on cgroup v1 or v2: /proc/PID/cgroup says which
// cgroup, /proc/self/mountinfo says where each hierarchy is mounted.
import { posix } from 'node:path';
import { readText, readTextIfExists, under } from './files.js';

export interface CgroupLine {
  id: number;
  /** Controllers of a v1 hierarchy ('memory', 'cpu', 'name=systemd'); empty for v2 ("0::"). */
  controllers: string[];
  path: string;
}

export function parseProcCgroup(text: string): CgroupLine[] {
  const out: CgroupLine[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const a = line.indexOf(':');
    const b = line.indexOf(':', a + 1);
    if (a < 0 || b < 0) throw new Error(`/proc/PID/cgroup: cannot read line "${line}"`);
    const controllers = line.slice(a + 1, b);
    out.push({ id: Number(line.slice(0, a)), controllers: controllers === '' ? [] : controllers.split(','), path: line.slice(b + 1) });
  }
  return out;
}

export interface CgroupMount {
  /** Path of the hierarchy's directory inside the cgroup tree that is mounted here. */
  root: string;
  mountPoint: string;
  version: 1 | 2;
  /** v1: the controllers from the super options; v2: none (read cgroup.controllers). */
  controllers: string[];
}

/** v1 super options hold the hierarchy's controllers among flags (rw, clone_children, ...). */
const V1_FLAGS = new Set(['rw', 'ro', 'clone_children', 'noprefix', 'xattr', 'cpuset_v2_mode', 'favordynmods', 'nosuid', 'nodev', 'noexec', 'relatime']);
function isControllerOption(o: string): boolean {
  if (o.startsWith('name=')) return true;
  return o !== '' && !o.includes('=') && !V1_FLAGS.has(o);
}

/** Unescapes mountinfo's octal escapes (\040 for a space). */
function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function parseMountinfo(text: string): CgroupMount[] {
  const out: CgroupMount[] = [];
  for (const line of text.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(' ');
    const right = line.slice(sep + 3).split(' ');
    const fstype = right[0];
    if (fstype !== 'cgroup' && fstype !== 'cgroup2') continue;
    const opts = (right[2] ?? '').split(',');
    out.push({
      root: unescapeMount(left[3] ?? '/'),
      mountPoint: unescapeMount(left[4] ?? ''),
      version: fstype === 'cgroup2' ? 2 : 1,
      controllers: fstype === 'cgroup' ? opts.filter(isControllerOption) : [],
    });
  }
  return out;
}

export interface MemoryCgroup {
  version: 1 | 2;
  /** Absolute directory of the cgroup in the live file system (under `root` for fixtures). */
  dir: string;
  /** The cgroup's path inside its hierarchy ('/machine.slice/...'). */
  path: string;
  /** The hierarchy's mount point (the cgroup walk for effective limits stops there). */
  mountPoint: string;
}

/** Finds the memory cgroup of a process: the v1 memory hierarchy if one is mounted, else the
 *  v2 hierarchy when it offers the memory controller. null when neither does. */
export async function findMemoryCgroup(root: string, pid: number | 'self'): Promise<MemoryCgroup | null> {
  const cgText = await readTextIfExists(root, `/proc/${pid}/cgroup`);
  if (cgText === null) return null;
  const lines = parseProcCgroup(cgText);
  const mounts = parseMountinfo(await readText(root, '/proc/self/mountinfo'));
  const locate = (m: CgroupMount, path: string): MemoryCgroup => {
    // A mount of a sub-tree (root != '/') sees the cgroup relative to that root.
    const rel = m.root !== '/' && (path === m.root || path.startsWith(m.root + '/')) ? path.slice(m.root.length) : path;
    return { version: m.version, dir: under(root, posix.join(m.mountPoint, rel || '/')), path, mountPoint: under(root, m.mountPoint) };
  };
  const v1Line = lines.find((l) => l.controllers.includes('memory'));
  const v1Mount = mounts.find((m) => m.version === 1 && m.controllers.includes('memory'));
  if (v1Line && v1Mount) return locate(v1Mount, v1Line.path);
  const v2Line = lines.find((l) => l.id === 0 && l.controllers.length === 0);
  for (const m of mounts.filter((x) => x.version === 2)) {
    if (!v2Line) break;
    const ctl = await readTextIfExists(root, posix.join(m.mountPoint, 'cgroup.controllers'));
    if (ctl?.split(/\s+/).includes('memory')) return locate(m, v2Line.path);
  }
  return null;
}

/** "max" or a byte count -> KiB; null means unlimited. v1 reports "unlimited" as a huge
 *  page-rounded number (9223372036854771712); anything at or above 2^62 counts as unlimited. */
export function limitBytesToKiB(text: string): number | null {
  const s = text.trim();
  if (s === 'max' || s === '-1') return null;
  if (!/^\d+$/.test(s)) throw new Error(`cgroup limit: cannot read "${s}"`);
  const n = Number(s);
  return n >= 2 ** 62 ? null : Math.floor(n / 1024);
}
