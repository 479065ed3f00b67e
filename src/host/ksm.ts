// The KSM host source: the ksm_* counters, ksm_shareable (summed RSS of the guests' QEMU
// processes, KiB: what KSM could work on) and ksmd_cpu_usage (percent of one CPU that the
// ksmd kernel thread used since the previous sample, from its utime + stime).
import type { HostSource, Stats } from '../types.js';
import { listDir } from './files.js';
import { KSM_DIR, ksmFieldsFromFiles, listKsmFiles, readKsmFiles } from './ksm-sysfs.js';
import { readCpuTicks, readProcessComm, sumRss } from './process.js';

/** USER_HZ: the unit of /proc/PID/stat times; 100 on every mainstream Linux architecture. */
export const USER_HZ = 100;

/** CPU percent from two tick readings `seconds` apart; null without a previous reading. */
export function cpuPercent(prevTicks: number | null, curTicks: number | null, seconds: number, hz = USER_HZ): number | null {
  if (prevTicks === null || curTicks === null || seconds <= 0 || curTicks < prevTicks) return null;
  return ((curTicks - prevTicks) / hz / seconds) * 100;
}

export async function findKernelThread(root: string, comm: string): Promise<number | null> {
  for (const name of await listDir(root, '/proc')) {
    if (!/^\d+$/.test(name)) continue;
    if ((await readProcessComm(root, Number(name))) === comm) return Number(name);
  }
  return null;
}

/** Collections between two listings of the KSM directory (5 min at MOM's 5 s). */
const RELIST_EVERY = 60;

/** KSM's settings that no policy control writes (an operator changes them by hand): read
 *  every SETTINGS_EVERY collections, the last values reported in between, which saves nine of
 *  some two dozen reads a collection. The counters and the knobs policies drive (run,
 *  pages_to_scan, sleep_millisecs, merge_across_nodes) are read at every collection: the KSM
 *  control learns what is in force from them. */
const SETTINGS = new Set([
  'advisor_max_cpu',
  'advisor_max_pages_to_scan',
  'advisor_min_pages_to_scan',
  'advisor_target_scan_time',
  'advisor_mode',
  'max_page_sharing',
  'smart_scan',
  'stable_node_chains_prune_millisecs',
  'use_zero_pages',
]);
const SETTINGS_EVERY = 15;

export interface KsmSourceOptions {
  root?: string;
  dir?: string;
  /** PIDs of the guests' QEMU processes, asked at every sample (guests come and go). */
  guestPids?: () => readonly number[] | Promise<readonly number[]>;
  /** Seconds clock; real time unless given. */
  now?: () => number;
}

export class KsmSource implements HostSource {
  readonly name = 'ksm';
  private readonly root: string;
  private readonly dir: string;
  private ksmdPid: number | null | undefined;
  private prev: { ticks: number; at: number } | null = null;
  /** The directory's files as last listed, and the collections since: a kernel's attributes do
   *  not come and go, so the directory is listed again only now and then (or when one of them
   *  failed to read), not at every collection. */
  private names: string[] | null = null;
  private sinceListed = 0;
  /** The settings files as last read, and the collections since. */
  private settings: Record<string, string> = {};
  private sinceSettings = 0;

  constructor(private readonly opts: KsmSourceOptions = {}) {
    this.root = opts.root ?? '/';
    this.dir = opts.dir ?? KSM_DIR;
  }

  private async ksmdTicks(): Promise<number | null> {
    if (this.ksmdPid === undefined) this.ksmdPid = await findKernelThread(this.root, 'ksmd');
    if (this.ksmdPid === null) return null;
    const ticks = await readCpuTicks(this.root, this.ksmdPid);
    if (ticks === null) this.ksmdPid = undefined; // gone (fixture trees change); look again next time
    return ticks;
  }

  async collect(): Promise<Stats> {
    if (this.names === null || ++this.sinceListed >= RELIST_EVERY) {
      this.names = await listKsmFiles(this.root, this.dir);
      this.sinceListed = 0;
    }
    const allNow = this.sinceSettings === 0 || this.sinceSettings >= SETTINGS_EVERY;
    const wanted = allNow ? this.names : this.names.filter((n) => !SETTINGS.has(n));
    const files = await readKsmFiles(this.root, this.dir, wanted);
    if (Object.keys(files).length < wanted.length) this.names = null; // one failed: list again
    if (allNow) {
      this.settings = Object.fromEntries(Object.entries(files).filter(([n]) => SETTINGS.has(n)));
      this.sinceSettings = 0;
    } else Object.assign(files, this.settings);
    this.sinceSettings++;
    const stats = ksmFieldsFromFiles(files);
    const pids = this.opts.guestPids ? await this.opts.guestPids() : [];
    stats.ksm_shareable = await sumRss(this.root, pids);
    const at = this.opts.now ? this.opts.now() : performance.now() / 1000;
    const ticks = await this.ksmdTicks();
    stats.ksmd_cpu_usage = cpuPercent(this.prev?.ticks ?? null, ticks, at - (this.prev?.at ?? at));
    this.prev = ticks === null ? null : { ticks, at };
    return stats;
  }
}
