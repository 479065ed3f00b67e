// Where a lab guest's QEMU is charged for memory: its memory cgroup (v1 memory controller, or
// v2), for tests that build host pressure from a memory domain (e.g. libvirt's /machine).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readPidFile } from './proc.js';

/** The cgroup path (inside its hierarchy) of a controller, from /proc/PID/cgroup text. Pure. */
export function cgroupPathFrom(procCgroup: string, controller: string): { version: 1 | 2; path: string } | null {
  let v2: string | null = null;
  for (const line of procCgroup.split('\n')) {
    const m = line.match(/^(\d+):([^:]*):(.*)$/);
    if (!m) continue;
    if (m[2].split(',').includes(controller)) return { version: 1, path: m[3] };
    if (m[1] === '0' && m[2] === '') v2 = m[3];
  }
  return v2 === null ? null : { version: 2, path: v2 };
}

/**
 * The memory cgroup directory of a process: /sys/fs/cgroup/memory/... when the v1 memory
 * controller is mounted there, else the v2 directory (unified at /sys/fs/cgroup or
 * /sys/fs/cgroup/unified).
 */
export function memCgroupDirOf(pid: number): string {
  const text = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  const cg = cgroupPathFrom(text, 'memory');
  if (!cg) throw new Error(`PID ${pid} has no memory cgroup in /proc/${pid}/cgroup`);
  if (cg.version === 1) return join('/sys/fs/cgroup/memory', cg.path);
  let root = '/sys/fs/cgroup';
  try {
    readFileSync('/sys/fs/cgroup/cgroup.controllers', 'utf8');
  } catch {
    root = '/sys/fs/cgroup/unified';
  }
  return join(root, cg.path);
}

/** PID of the QEMU behind a running libvirt domain (libvirtd's runtime PID file). */
export function libvirtGuestPid(name: string): number | null {
  return readPidFile(`/run/libvirt/qemu/${name}.pid`);
}
