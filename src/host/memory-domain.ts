// A memory domain: a cgroup treated as "the host". Its limit is mem_available, limit minus
// usage plus its file cache is mem_free: what a policy needs to manage the memory budget of
// a slice (machine.slice) rather than the whole machine. cgroup v2 and v1 both.
import { posix } from 'node:path';
import type { HostSource, Stats } from '../types.js';
import { limitBytesToKiB, findMemoryCgroup, type MemoryCgroup } from './cgroup.js';
import { keyValue, parseKeyValues, readText, readTextIfExists } from './files.js';
import { parseMeminfo } from './meminfo.js';
import { parsePsi } from './psi.js';

/** What the cgroup files say, in KiB (limits null when unlimited). */
export interface DomainReading {
  version: 1 | 2;
  /** The effective memory limit: the smallest over the cgroup and its ancestors. */
  limit: number | null;
  usage: number;
  fileCache: number;
  anon: number | null;
  /** Swap the domain may use (null: as much as the host has). */
  swapLimit: number | null;
  swapUsage: number | null;
  /** Events (v2 memory.events, v1 oom_control / failcnt). */
  events: Record<string, number>;
}

export interface HostTotals {
  memTotal: number;
  swapTotal: number;
}

const minLimit = (a: number | null, b: number | null): number | null => (a === null ? b : b === null ? a : Math.min(a, b));

/** Pure: the host fields of a domain reading, given the whole host's totals. */
export function domainStats(r: DomainReading, host: HostTotals): Stats {
  const available = minLimit(r.limit, host.memTotal)!;
  const unused = Math.max(0, available - r.usage);
  const free = Math.min(available, unused + r.fileCache);
  const swapTotal = minLimit(r.swapLimit, host.swapTotal)!;
  return {
    mem_available: available,
    mem_free: free,
    mem_unused: unused,
    anon_pages: r.anon,
    swap_total: swapTotal,
    swap_usage: r.swapUsage,
    domain_limit: r.limit,
    domain_usage: r.usage,
    domain_file_cache: r.fileCache,
    domain_oom_kill: r.events.oom_kill ?? null,
    domain_events_high: r.events.high ?? null,
    domain_events_max: r.events.max ?? null,
  };
}

async function readNum(dir: string, file: string): Promise<string | null> {
  return readTextIfExists('/', posix.join(dir, file));
}

const kib = (bytes: number | undefined): number | null => (bytes === undefined ? null : Math.floor(bytes / 1024));

export async function readDomainV2(cg: MemoryCgroup): Promise<DomainReading> {
  const current = await readNum(cg.dir, 'memory.current');
  if (current === null) throw new Error(`memory domain: ${cg.dir} has no memory.current (not a cgroup v2 memory cgroup)`);
  // Effective limit: memory.max of the cgroup and each ancestor up to the hierarchy's root.
  let limit: number | null = null;
  let swapLimit: number | null = null;
  for (let d = cg.dir; ; d = posix.dirname(d)) {
    const m = await readNum(d, 'memory.max');
    if (m !== null) limit = minLimit(limit, limitBytesToKiB(m));
    const s = await readNum(d, 'memory.swap.max');
    if (s !== null) swapLimit = minLimit(swapLimit, limitBytesToKiB(s));
    if (d === cg.mountPoint || d === posix.dirname(d) || !d.startsWith(cg.mountPoint)) break;
  }
  const stat = parseKeyValues((await readNum(cg.dir, 'memory.stat')) ?? '');
  const events = Object.fromEntries(parseKeyValues((await readNum(cg.dir, 'memory.events')) ?? ''));
  const swapCur = await readNum(cg.dir, 'memory.swap.current');
  return {
    version: 2,
    limit,
    usage: Math.floor(Number(current.trim()) / 1024),
    fileCache: kib(stat.get('file')) ?? 0,
    anon: kib(stat.get('anon')),
    swapLimit,
    swapUsage: swapCur === null ? null : Math.floor(Number(swapCur.trim()) / 1024),
    events,
  };
}

export async function readDomainV1(cg: MemoryCgroup): Promise<DomainReading> {
  const usageText = await readNum(cg.dir, 'memory.usage_in_bytes');
  if (usageText === null) throw new Error(`memory domain: ${cg.dir} has no memory.usage_in_bytes (not a cgroup v1 memory cgroup)`);
  const statText = (await readNum(cg.dir, 'memory.stat')) ?? '';
  const stat = { get: (k: string) => keyValue(statText, k) };
  // hierarchical_memory_limit already folds in the ancestors' limits.
  const own = await readNum(cg.dir, 'memory.limit_in_bytes');
  const hier = stat.get('hierarchical_memory_limit');
  const limit = minLimit(own === null ? null : limitBytesToKiB(own), hier === undefined ? null : limitBytesToKiB(String(hier)));
  const memswHier = stat.get('hierarchical_memsw_limit');
  const memswOwn = await readNum(cg.dir, 'memory.memsw.limit_in_bytes');
  const memsw = minLimit(memswOwn === null ? null : limitBytesToKiB(memswOwn), memswHier === undefined ? null : limitBytesToKiB(String(memswHier)));
  // memsw limits memory + swap together; what is left above the memory limit is swap.
  const swapLimit = memsw === null || limit === null ? (memsw === null ? null : memsw) : Math.max(0, memsw - limit);
  let swapUsage: number | null = kib(stat.get('total_swap') ?? stat.get('swap'));
  if (swapUsage === null) {
    const memswUsage = await readNum(cg.dir, 'memory.memsw.usage_in_bytes');
    if (memswUsage !== null) swapUsage = Math.max(0, Math.floor((Number(memswUsage.trim()) - Number(usageText.trim())) / 1024));
  }
  const events: Record<string, number> = {};
  const oomControl = await readNum(cg.dir, 'memory.oom_control');
  if (oomControl !== null) {
    const kills = keyValue(oomControl, 'oom_kill');
    if (kills !== undefined) events.oom_kill = kills;
  }
  const failcnt = await readNum(cg.dir, 'memory.failcnt');
  if (failcnt !== null) events.max = Number(failcnt.trim());
  return {
    version: 1,
    limit,
    usage: Math.floor(Number(usageText.trim()) / 1024),
    fileCache: kib(stat.get('total_cache') ?? stat.get('cache')) ?? 0,
    anon: kib(stat.get('total_rss') ?? stat.get('rss')),
    swapLimit,
    swapUsage,
    events,
  };
}

/** Reads a cgroup directory, v2 or v1 by which files it has. */
export async function readDomain(dir: string, mountPoint?: string): Promise<DomainReading> {
  const cg: MemoryCgroup = { version: 2, dir, path: dir, mountPoint: mountPoint ?? dir };
  if ((await readNum(dir, 'memory.current')) !== null) return readDomainV2(cg);
  if ((await readNum(dir, 'memory.usage_in_bytes')) !== null) return readDomainV1({ ...cg, version: 1 });
  throw new Error(`memory domain: ${dir} is not a memory cgroup (no memory.current or memory.usage_in_bytes)`);
}

export interface MemoryDomainOptions {
  /** The cgroup's directory (/sys/fs/cgroup/machine.slice) ... */
  dir?: string;
  /** ... or the cgroup of a process (its memory cgroup is found through /proc/PID/cgroup). */
  pid?: number;
  /** Root for /proc/meminfo (host totals) and /proc lookups; '/' on a live system. */
  root?: string;
}

/** The meminfo fields (mem_available, mem_free, mem_unused, anon_pages, swap_total,
 *  swap_usage) of a cgroup, plus domain_* fields; used instead of MeminfoSource. */
export class MemoryDomainSource implements HostSource {
  readonly name = 'memory-domain';
  readonly watch = true;
  private readonly root: string;
  private located: { dir: string; mountPoint: string } | null = null;

  constructor(private readonly opts: MemoryDomainOptions) {
    if (!opts.dir && opts.pid === undefined) throw new Error('memory domain: give a cgroup directory or a pid');
    this.root = opts.root ?? '/';
  }

  /** The cgroup directory this source reads. */
  async locate(): Promise<{ dir: string; mountPoint: string }> {
    if (this.located) return this.located;
    if (this.opts.dir) {
      // Ancestors up to the mount point count for effective limits: find the mount it sits under.
      const cg = this.opts.dir;
      let mp = cg;
      for (let d = cg; d !== posix.dirname(d); d = posix.dirname(d)) {
        if ((await readNum(posix.dirname(d), 'cgroup.procs')) === null) {
          mp = d;
          break;
        }
        mp = posix.dirname(d);
      }
      this.located = { dir: cg, mountPoint: mp };
    } else {
      const cg = await findMemoryCgroup(this.root, this.opts.pid!);
      if (!cg) throw new Error(`memory domain: process ${this.opts.pid} has no memory cgroup (is the memory controller mounted?)`);
      this.located = { dir: cg.dir, mountPoint: cg.mountPoint };
    }
    return this.located;
  }

  async collect(): Promise<Stats> {
    const { dir, mountPoint } = await this.locate();
    const reading = await readDomain(dir, mountPoint);
    const mi = parseMeminfo(await readText(this.root, '/proc/meminfo'));
    const out = domainStats(reading, { memTotal: mi.get('MemTotal') ?? 0, swapTotal: mi.get('SwapTotal') ?? 0 });
    // v2 keeps pressure stall figures per cgroup: the domain's own memory pressure.
    const psi = await readNum(dir, 'memory.pressure').catch(() => null);
    for (const [k, v] of Object.entries(psi === null ? parsePsi('') : parsePsi(psi))) out[`domain_${k}`] = v;
    return out;
  }
}
