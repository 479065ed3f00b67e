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
 * memory.stat) into numbers: the value is a line's last token, an integer (optionally followed
 * by "kB"), and the key everything before it up to one ':' or whitespace separator; a key holds
 * no ':'. Lines whose value is not a number are skipped, not errors: these files grow new
 * fields with every kernel. A scanner rather than a regular expression per line: a collection
 * parses some 300 lines (vmstat alone is 170), which a regex made most of an idle daemon's CPU.
 */
export function parseKeyValues(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (let start = 0; start < text.length; ) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    parseKeyValueLine(text, start, end, out);
    start = end + 1;
  }
  return out;
}

const isSpace = (c: number): boolean => c === 32 || (c >= 9 && c <= 13);
const isDigit = (c: number): boolean => c >= 48 && c <= 57;
const COLON = 58;

function parseKeyValueLine(text: string, from: number, to: number, out: Map<string, number>): void {
  let s = from;
  let e = to;
  while (s < e && isSpace(text.charCodeAt(s))) s++;
  while (e > s && isSpace(text.charCodeAt(e - 1))) e--;
  // An optional " kB" unit after the number.
  if (e - s > 3 && text.charCodeAt(e - 1) === 66 && text.charCodeAt(e - 2) === 107 && isSpace(text.charCodeAt(e - 3))) {
    let u = e - 3;
    while (u > s && isSpace(text.charCodeAt(u - 1))) u--;
    if (u > s && isDigit(text.charCodeAt(u - 1))) e = u;
  }
  let v = e;
  while (v > s && isDigit(text.charCodeAt(v - 1))) v--;
  if (v === e) return;
  if (v > s && text.charCodeAt(v - 1) === 45) v--; // '-'
  // The separator: whitespace with at most one ':' in it, at least one character.
  let k = v;
  let colons = 0;
  while (k > s) {
    const c = text.charCodeAt(k - 1);
    if (c === COLON) colons++;
    else if (!isSpace(c)) break;
    k--;
  }
  if (k === v || k === s || colons > 1) return;
  const key = text.slice(s, k);
  if (key.includes(':')) return;
  out.set(key, Number(text.slice(v, e)));
}
