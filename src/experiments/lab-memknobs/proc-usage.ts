// What a manager process costs over the measured window: CPU seconds (user + system, its own
// and its waited-for children's: momd runs ps and pgrep every collection, and that is MOM's
// cost too) and its resident memory, sampled. Read from /proc with host/process.ts's parsers.
import { readFileSync } from 'node:fs';
import { parseStatTimes, parseStatusRss } from '../../host/process.js';

/** USER_HZ: what /proc/PID/stat counts in. 100 on every Linux architecture ballast runs on
 *  (the kernel's exported tick rate, not CONFIG_HZ). */
export const CLOCK_TICKS_PER_S = 100;

function readCpuS(pid: number): number | null {
  try {
    const t = parseStatTimes(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    return t ? (t.utime + t.stime + t.cutime + t.cstime) / CLOCK_TICKS_PER_S : null;
  } catch {
    return null;
  }
}

function readRssKiB(pid: number): number | null {
  try {
    return parseStatusRss(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return null;
  }
}

export interface ProcessUsage {
  pid: number;
  /** CPU seconds over the window (user + system, with reaped children's). */
  cpuS: number | null;
  /** Resident memory over the window, MiB: the largest sample and the samples' mean. */
  rssPeakMiB: number | null;
  rssMeanMiB: number | null;
  /** RSS samples taken. */
  samples: number;
  windowS: number;
}

/**
 * Follows one process over the measured window: CPU time at its start and end, RSS every
 * `everyMs`. Started at the window's start (after the warm-up), so the manager's start-up
 * (imports, connecting, the first collections) is not in it.
 */
export class UsageMeter {
  private cpu0: number | null = null;
  private t0 = 0;
  private readonly rss: number[] = [];
  private timer: NodeJS.Timeout | null = null;
  private done: ProcessUsage | null = null;

  constructor(
    readonly pid: number,
    private readonly everyMs = 1000,
  ) {}

  start(): void {
    this.cpu0 = readCpuS(this.pid);
    this.t0 = Date.now();
    this.sample();
    this.timer = setInterval(() => this.sample(), this.everyMs);
    this.timer.unref();
  }

  private sample(): void {
    const r = readRssKiB(this.pid);
    if (r !== null) this.rss.push(r);
  }

  /** Ends the window (before the process is stopped); later calls get the same figures. */
  stop(): ProcessUsage {
    if (this.done) return this.done;
    if (this.timer) clearInterval(this.timer);
    this.sample();
    const cpu1 = readCpuS(this.pid);
    const mib = (k: number) => Math.round((k / 1024) * 10) / 10;
    this.done = {
      pid: this.pid,
      cpuS: this.cpu0 === null || cpu1 === null ? null : Math.round((cpu1 - this.cpu0) * 100) / 100,
      rssPeakMiB: this.rss.length ? mib(Math.max(...this.rss)) : null,
      rssMeanMiB: this.rss.length ? mib(this.rss.reduce((s, v) => s + v, 0) / this.rss.length) : null,
      samples: this.rss.length,
      windowS: Math.round((Date.now() - this.t0) / 100) / 10,
    };
    return this.done;
  }
}
