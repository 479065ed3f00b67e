// Reading kernel files under a root path, so every reader can be pointed at a fixture tree.
// Synchronous on purpose: /proc, /sys and cgroupfs files are made in memory when read and never
// wait for a disk, and a sync read is one open/read/close where fs/promises adds an fstat and
// several event-loop turns per file (with ~20 files a collection, half of an idle daemon's CPU).
import { closeSync, openSync, readdirSync, readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';

/** `root` + an absolute kernel path ('/proc/meminfo'): '/' reads the live system. */
export function under(root: string, path: string): string {
  return root === '/' ? path : join(root, path);
}

export async function readText(root: string, path: string): Promise<string> {
  return root === '/' && KERNEL_FILE.test(path) ? kernelFiles.read(path) : readFileSync(under(root, path), 'utf8');
}

/** The live system's generated files, kept open and read from offset 0 (see KernelFiles);
 *  not a process's own (/proc/PID, /proc/self): a kept smaps or maps descriptor holds the
 *  process's old address space and reads empty, not ENOENT, once it exits or its PID is reused. */
const KERNEL_FILE = /^\/(sys\/|proc\/(?!self\/|thread-self\/|\d))/;

/**
 * Kernel files kept open. A /proc, sysfs or cgroupfs file is generated anew by every read from
 * offset 0, so one pread(fd, 0) on a descriptor kept open gives its current content without the
 * path walk, open, fstat and close of readFileSync: KSM's 24 files cost 79 us a pass here
 * against 417 us, and a collection reads some 40 such files. A read that fails on a kept
 * descriptor (a cgroup removed, a process gone: ENODEV, ESRCH) is tried once on a fresh open,
 * which then fails as readFileSync would (ENOENT). At most `max` are kept (the least recently
 * read is closed first). A file found missing by readIfExists is not looked for again for
 * `missingRetryMs`: a feature the kernel lacks (ZFS's arcstats, v2's memory.current on a v1
 * host) cost an ENOENT exception at every collection, about a twentieth of the daemon's CPU.
 */
export class KernelFiles {
  private readonly fds = new Map<string, number>();
  private readonly missing = new Map<string, number>();
  private buf = Buffer.allocUnsafe(16 * 1024);

  constructor(
    private readonly max = 256,
    private readonly missingRetryMs = 30_000,
    private readonly nowMs: () => number = Date.now,
  ) {}

  /** The file's text, or null when it does not exist (ENOENT, ENOTDIR). */
  readIfExists(path: string): string | null {
    const since = this.missing.get(path);
    if (since !== undefined) {
      const age = this.nowMs() - since;
      if (age >= 0 && age < this.missingRetryMs) return null;
      this.missing.delete(path);
    }
    try {
      return this.read(path);
    } catch (err) {
      if (!isErrno(err, 'ENOENT') && !isErrno(err, 'ENOTDIR')) throw err;
      if (this.missing.size >= this.max) this.missing.delete(this.missing.keys().next().value as string);
      this.missing.set(path, this.nowMs());
      return null;
    }
  }

  read(path: string): string {
    const kept = this.fds.get(path);
    if (kept !== undefined) {
      this.fds.delete(path);
      try {
        const text = this.readAll(kept);
        this.fds.set(path, kept); // most recently read last
        return text;
      } catch {
        closeQuietly(kept);
      }
    }
    const fd = openSync(path, 'r');
    let text: string;
    try {
      text = this.readAll(fd);
    } catch (err) {
      closeQuietly(fd);
      throw err;
    }
    this.fds.set(path, fd);
    if (this.fds.size > this.max) {
      const [oldest, ofd] = this.fds.entries().next().value as [string, number];
      this.fds.delete(oldest);
      closeQuietly(ofd);
    }
    return text;
  }

  /** Closes every kept descriptor (tests; a process's exit closes them anyway). */
  closeAll(): void {
    for (const fd of this.fds.values()) closeQuietly(fd);
    this.fds.clear();
    this.missing.clear();
  }

  get open(): number {
    return this.fds.size;
  }

  private readAll(fd: number): string {
    let n = 0;
    for (;;) {
      const got = readSync(fd, this.buf, n, this.buf.length - n, n);
      if (got === 0) break;
      n += got;
      // A first read this short is the whole file, so the read that would return 0 is saved
      // (half the system calls of a collection). sysfs and single-record seq files return all
      // that fits the caller's buffer; a multi-record seq file (/proc/vmstat) stops short of
      // it only when its own buffer (a page or more) is full, which needs records of more than
      // a page minus SHORT_IS_ALL.
      if (n === got && got < SHORT_IS_ALL) break;
      if (n === this.buf.length) {
        const bigger = Buffer.allocUnsafe(this.buf.length * 2);
        this.buf.copy(bigger, 0, 0, n);
        this.buf = bigger;
      }
    }
    return this.buf.toString('utf8', 0, n);
  }
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
}

/** Bytes below which a kernel file's first read is all of it (see KernelFiles.readAll). */
const SHORT_IS_ALL = 2048;

const kernelFiles = new KernelFiles();

/** The file's text, or null when it does not exist (a kernel without that feature). */
export async function readTextIfExists(root: string, path: string): Promise<string | null> {
  if (root === '/' && KERNEL_FILE.test(path)) return kernelFiles.readIfExists(path);
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

/**
 * The value of one key of such a text (the first line whose key it is), by the same rules as
 * parseKeyValues; undefined without one. For the sources that need a handful of a file's keys
 * (4 of vmstat's 170 lines, VmRSS of a status): no Map of every line per collection, which was
 * a quarter of what an idle daemon allocated.
 */
export function keyValue(text: string, key: string): number | undefined {
  for (let at = text.indexOf(key); at >= 0; at = text.indexOf(key, at + 1)) {
    if (at > 0 && text.charCodeAt(at - 1) !== 10) continue; // not at a line's start
    const next = text.charCodeAt(at + key.length);
    if (next !== COLON && !isSpace(next)) continue; // a longer key
    let end = text.indexOf('\n', at);
    if (end < 0) end = text.length;
    one.clear();
    parseKeyValueLine(text, at, end, one);
    const v = one.get(key);
    if (v !== undefined) return v;
  }
  return undefined;
}

/** keyValue's one-line scratch map. */
const one = new Map<string, number>();

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
