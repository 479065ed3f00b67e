// Memory mappings (VMAs) per process against vm.max_map_count. A process at the limit gets
// ENOMEM from its next mmap, mprotect or madvise (many programs abort then), and KSM makes
// this likelier: MADV_MERGEABLE on part of a mapping splits it in two or three.
//
// The kernel exports no per-process VMA count, so the count is the lines of /proc/PID/maps.
// That file is generated on every read, so the scan reads it synchronously in big chunks into
// one reused buffer and counts newlines without decoding: on this project's 2-core machine
// (about 90 processes, 2,000 mappings) a scan of every process takes 2.5-11 ms; async reads
// cost about 5x the CPU (four thread-pool round trips per process).
import { closeSync, openSync, readSync, readdirSync } from 'node:fs';
import type { HostSource, Stats } from '../types.js';
import { readTextIfExists, under } from './files.js';

export const MAX_MAP_COUNT_PATH = '/proc/sys/vm/max_map_count';

const CHUNK = 64 * 1024;
let shared: Buffer | null = null;

/** Lines of a file read in chunks, or null when it cannot be opened or read (process gone,
 *  or another user's and we are not root). */
function countLinesSync(path: string): number | null {
  shared ??= Buffer.allocUnsafe(CHUNK);
  const buf = shared;
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return null;
  }
  try {
    let lines = 0;
    for (let n = readSync(fd, buf, 0, CHUNK, null); n > 0; n = readSync(fd, buf, 0, CHUNK, null)) {
      for (let i = buf.indexOf(10); i !== -1 && i < n; i = buf.indexOf(10, i + 1)) lines++;
    }
    return lines;
  } catch {
    return null; // ESRCH: exited while we read
  } finally {
    closeSync(fd);
  }
}

/** The number of memory mappings of a process, or null when it is gone or unreadable. */
export function readMapCount(root: string, pid: number): number | null {
  return countLinesSync(under(root, `/proc/${pid}/maps`));
}

export interface MapCountScan {
  /** Processes whose maps could be read (kernel threads count, with 0). */
  scanned: number;
  /** The process with the most mappings; null when none could be read. */
  top: { pid: number; count: number } | null;
}

/** One pass over every process in /proc. */
export function scanMapCounts(root = '/'): MapCountScan {
  let names: string[];
  try {
    names = readdirSync(under(root, '/proc'));
  } catch {
    return { scanned: 0, top: null };
  }
  let scanned = 0;
  let top: MapCountScan['top'] = null;
  for (const name of names) {
    const c = name.charCodeAt(0);
    if (c < 48 || c > 57) continue; // not a PID directory
    const pid = Number(name);
    const count = readMapCount(root, pid);
    if (count === null) continue;
    scanned++;
    if (top === null || count > top.count) top = { pid, count };
  }
  return { scanned, top };
}

/** vm.max_map_count, or null when the file is missing or not a number. */
export async function readMaxMapCount(root = '/'): Promise<number | null> {
  const text = await readTextIfExists(root, MAX_MAP_COUNT_PATH);
  return text !== null && /^\d+$/.test(text.trim()) ? Number(text.trim()) : null;
}

/**
 * Host fields: vm_max_map_count, and the process with the most mappings (map_count_max,
 * map_count_max_pid), which the map_count alert compares with the limit.
 */
export class MapCountSource implements HostSource {
  readonly name = 'map_count';
  private last: { at: number; top: MapCountScan['top'] } | null = null;

  /** The scan reads every process's maps (3 ms for 85 processes here, tens of ms on a node
   *  running hundreds, and a sixth of an idle daemon's CPU when it ran every minute): done at
   *  most every `rescanMs` (map counts creep up over minutes and hours; the alert is a
   *  warning, not a guard), the last result reported in between. */
  constructor(
    private readonly root = '/',
    private readonly rescanMs = 300_000,
    private readonly now: () => number = Date.now,
  ) {}

  async collect(): Promise<Stats> {
    const limit = await readMaxMapCount(this.root);
    const t = this.now();
    if (this.last === null || t - this.last.at >= this.rescanMs || t < this.last.at) this.last = { at: t, top: scanMapCounts(this.root).top };
    const top = this.last.top;
    return { vm_max_map_count: limit, map_count_max: top?.count ?? null, map_count_max_pid: top?.pid ?? null };
  }
}
