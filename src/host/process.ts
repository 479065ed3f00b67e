// Facts about one process from /proc/PID: resident memory (KiB), CPU ticks, KSM merging.
import { readFileSync } from 'node:fs';
import { keyValue, readTextIfExists } from './files.js';

/** VmRSS of a /proc/PID/status text, KiB; null for kernel threads and zombies (no VmRSS line). */
export function parseStatusRss(text: string): number | null {
  return keyValue(text, 'VmRSS') ?? null;
}

/** The thread group (process) a thread id belongs to: Tgid in /proc/TID/status. */
export function parseStatusTgid(text: string): number | null {
  return keyValue(text, 'Tgid') ?? null;
}

/** RSS of a process in KiB, or null when it is gone. */
export async function readProcessRss(root: string, pid: number): Promise<number | null> {
  const text = await readTextIfExists(root, `/proc/${pid}/status`);
  return text === null ? null : parseStatusRss(text);
}

/**
 * Resident KiB of a QEMU process's guest RAM: the smallest anonymous mapping in a
 * /proc/PID/smaps text that is at least `ramKiB` big (QEMU maps a guest's RAM as one block of
 * its size; its other big anonymous mappings, such as TCG's code buffer of up to 1 GiB, are
 * either smaller than the guest or bigger than this block).
 * This, not the process RSS, is what a balloon bounds: a guest ballooned to B KiB holds at
 * most B KiB of it. Null when no such mapping is found.
 */
export function parseGuestRamRss(smaps: string, ramKiB: number): number | null {
  let best: { size: number; rss: number } | null = null;
  // Each mapping starts with a line "start-end perms offset dev inode [path]".
  for (const block of smaps.split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/)) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ (\d+)[ \t]*(.*)$/m.exec(block);
    if (!head) continue;
    const [, start, end, inode, path] = head;
    if (inode !== '0' || (path && path !== '[heap]')) continue;
    const size = (parseInt(end!, 16) - parseInt(start!, 16)) / 1024;
    const rss = Number(/^Rss:\s+(\d+) kB/m.exec(block)?.[1] ?? NaN);
    if (size >= ramKiB && Number.isFinite(rss) && (!best || size < best.size)) best = { size, rss };
  }
  return best?.rss ?? null;
}

export async function readGuestRamRss(root: string, pid: number, ramKiB: number): Promise<number | null> {
  const text = await readTextIfExists(root, `/proc/${pid}/smaps`);
  return text === null ? null : parseGuestRamRss(text, ramKiB);
}

export async function readThreadTgid(root: string, tid: number): Promise<number | null> {
  const text = await readTextIfExists(root, `/proc/${tid}/status`);
  return text === null ? null : parseStatusTgid(text);
}

/**
 * The fields of a /proc/PID/stat text after the command name (index 0 is field 3, the state),
 * or null without one. The command name in parentheses may itself hold spaces and parentheses,
 * so fields are counted from the last ')'.
 */
function statFieldsAfterComm(text: string): string[] | null {
  const close = text.lastIndexOf(')');
  if (close < 0) return null;
  return text
    .slice(close + 1)
    .trim()
    .split(/\s+/);
}

/** utime + stime (clock ticks) of a /proc/PID/stat text (fields 14 and 15). */
export function parseStatCpuTicks(text: string): number {
  const rest = statFieldsAfterComm(text);
  if (rest === null) throw new Error('stat: no command name in parentheses');
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error('stat: utime/stime missing');
  return utime + stime;
}

/** A process's CPU times and its reaped children's (clock ticks, fields 14-17) from a
 *  /proc/PID/stat text; null when any is missing or not a count. */
export function parseStatTimes(text: string): { utime: number; stime: number; cutime: number; cstime: number } | null {
  const rest = statFieldsAfterComm(text);
  if (rest === null) return null;
  const at = (field: number) => Number(rest[field - 3]);
  const out = { utime: at(14), stime: at(15), cutime: at(16), cstime: at(17) };
  return Object.values(out).every((v) => Number.isInteger(v) && v >= 0) ? out : null;
}

export function parseStatComm(text: string): string {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  return open >= 0 && close > open ? text.slice(open + 1, close) : '';
}

export async function readProcessComm(root: string, pid: number): Promise<string | null> {
  const text = await readTextIfExists(root, `/proc/${pid}/comm`);
  return text === null ? null : text.trim();
}

export async function readCpuTicks(root: string, pid: number): Promise<number | null> {
  const text = await readTextIfExists(root, `/proc/${pid}/stat`);
  return text === null ? null : parseStatCpuTicks(text);
}

/** Sum of RSS over processes (KiB); those that are gone count 0. */
export async function sumRss(root: string, pids: readonly number[]): Promise<number> {
  let total = 0;
  for (const pid of pids) total += (await readProcessRss(root, pid)) ?? 0;
  return total;
}

/** True when a process with this PID exists and is not a zombie (a zombie has exited: its
 *  parent has only not reaped it yet). A process of another user counts as alive. */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    return statFieldsAfterComm(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[0] !== 'Z';
  } catch {
    return true; // gone between the two looks, or no /proc: kill(0) said it was there
  }
}
