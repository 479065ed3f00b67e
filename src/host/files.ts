// Reading kernel files under a root path, so every reader can be pointed at a fixture tree.
// Synchronous on purpose: /proc, /sys and cgroupfs files are made in memory when read and never
// wait for a disk, and a sync read is one open/read/close where fs/promises adds an fstat and
// several event-loop turns per file (with ~20 files a collection, half of an idle daemon's CPU).
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** `root` + an absolute kernel path ('/proc/meminfo'): '/' reads the live system. */
export function under(root: string, path: string): string {
  return root === '/' ? path : join(root, path);
}

export async function readText(root: string, path: string): Promise<string> {
  return readFileSync(under(root, path), 'utf8');
}

/** The file's text, or null when it does not exist (a kernel without that feature). */
export async function readTextIfExists(root: string, path: string): Promise<string | null> {
  try {
    return await readText(root, path);
  } catch (err) {
    if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) return null;
    throw err;
  }
}

export async function listDir(root: string, path: string): Promise<string[]> {
  try {
    return readdirSync(under(root, path));
  } catch (err) {
    if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) return [];
    throw err;
  }
}

export function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as NodeJS.ErrnoException).code === code;
}

export function errnoOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null ? (err as NodeJS.ErrnoException).code : undefined;
}

/**
 * Parses "Key: value [kB]" lines (meminfo, /proc/PID/status) and "key value" lines (vmstat,
 * memory.stat) into numbers. Lines whose value is not a number are skipped, not errors:
 * these files grow new fields with every kernel.
 */
export function parseKeyValues(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^\s*([^:\s][^:]*?)\s*[:\s]\s*(-?\d+)(?:\s+kB)?\s*$/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}
