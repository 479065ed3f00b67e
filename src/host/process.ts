// Facts about one process from /proc/PID: resident memory (KiB), CPU ticks, KSM merging.
import { parseKeyValues, readTextIfExists } from './files.js';

/** VmRSS of a /proc/PID/status text, KiB; null for kernel threads and zombies (no VmRSS line). */
export function parseStatusRss(text: string): number | null {
  return parseKeyValues(text).get('VmRSS') ?? null;
}

/** The thread group (process) a thread id belongs to: Tgid in /proc/TID/status. */
export function parseStatusTgid(text: string): number | null {
  return parseKeyValues(text).get('Tgid') ?? null;
}

/** RSS of a process in KiB, or null when it is gone. */
export async function readProcessRss(root: string, pid: number): Promise<number | null> {
  const text = await readTextIfExists(root, `/proc/${pid}/status`);
  return text === null ? null : parseStatusRss(text);
}

export async function readThreadTgid(root: string, tid: number): Promise<number | null> {
  const text = await readTextIfExists(root, `/proc/${tid}/status`);
  return text === null ? null : parseStatusTgid(text);
}

/**
 * utime + stime (clock ticks) of a /proc/PID/stat text. The command name in parentheses may
 * itself hold spaces and parentheses, so fields are counted from the last ')'.
 */
export function parseStatCpuTicks(text: string): number {
  const close = text.lastIndexOf(')');
  if (close < 0) throw new Error('stat: no command name in parentheses');
  const rest = text.slice(close + 1).trim().split(/\s+/);
  // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error('stat: utime/stime missing');
  return utime + stime;
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

