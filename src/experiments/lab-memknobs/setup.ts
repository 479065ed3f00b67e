// What every lab experiment sets up before its runs and undoes after them, even on Ctrl-C:
// one experiment at a time (the lock), the cleanup list, and the swap the domain is squeezed
// into (the host's, a plain swap file, or a throttled device that costs what a real one does).
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { labAvailable } from '../../lab/available.js';
import { Cleanup } from './cleanup.js';
import { memoryCgroupMount } from './domain.js';
import { LabUnavailable } from './errors.js';
import { acquireExperimentLock } from './lock.js';
import { sweepStale } from './stale.js';
import { KSM_DIR } from '../../host/ksm-sysfs.js';
import { ensureSwap, removeSwap, type SwapSetup } from './swap.js';
import {
  addThrottledSwap,
  PRESETS,
  probeSwap,
  removeThrottledSwap,
  throttleV2,
  type SwapPreset,
  type SwapPresetName,
  type ThrottledSwap,
} from './swap-device.js';

/** What the result says about the swap the runs had. */
export interface SwapReport {
  mode: SwapSetup['mode'] | 'device';
  totalMiB: number;
  source: string;
  preset: SwapPresetName;
  /** The preset's limits, and what a probe measured through them. */
  device?: { loop: string; dev: string; limits: SwapPreset; measured: ThrottledSwap['measured'] };
}

export interface LabSetup {
  version: 1 | 2;
  cleanup: Cleanup;
  /** The throttled swap device (a preset), or null (the host's swap or a plain file). */
  device: ThrottledSwap | null;
  swapReport(source: string): SwapReport;
  /** Undoes everything (newest first). */
  finish(): Promise<void>;
}

/** Throws LabUnavailable with the reason when lab experiments cannot run on this machine. */
export async function checkLab(): Promise<{ version: 1 | 2 }> {
  const a = await labAvailable({ libvirt: false });
  if (!a.ok) throw new LabUnavailable(a.reason);
  const mount = await memoryCgroupMount();
  if (!mount) throw new LabUnavailable('no memory cgroup controller mounted');
  return { version: mount.version };
}

export async function prepareLab(o: { swapMiB: number; swapPreset: SwapPresetName; swapDir: string; say: (m: string) => void }): Promise<LabSetup> {
  const { say } = o;
  const { version } = await checkLab();
  const unlock = acquireExperimentLock();
  const cleanup = new Cleanup(say);
  cleanup.add({ what: 'experiment lock', run: async () => unlock(), runSync: unlock });
  cleanup.install();
  const finish = async () => {
    await cleanup.runAll();
    cleanup.uninstall();
  };
  try {
    await sweepStale(o.swapDir, say);
    pauseHostKsm(cleanup, say);
    let device: ThrottledSwap | null = null;
    let swap: { mode: SwapReport['mode']; totalKiB: number };
    if (o.swapPreset !== 'host') {
      const dev = await addThrottledSwap(PRESETS[o.swapPreset], o.swapMiB, o.swapDir, version, say);
      device = dev;
      cleanup.add({
        what: `swap device ${dev.loop}`,
        run: () => removeThrottledSwap(dev, say),
        runSync: () => {
          spawnSync('swapoff', [dev.loop]);
          spawnSync('losetup', ['-d', dev.loop]);
          spawnSync('rm', ['-f', dev.file]);
        },
      });
      dev.measured = await probeThrough(dev, version);
      say(
        `swap: probe through the throttle: ${dev.measured.readIops} reads/s of 4 KiB, ${dev.measured.readLatencyMs} ms each (dd iflag=direct, one at a time)`,
      );
      swap = { mode: 'device', totalKiB: o.swapMiB * 1024 };
    } else {
      const sw = await ensureSwap(o.swapMiB, o.swapDir, say);
      swap = sw;
      cleanup.add({
        what: 'swap file',
        run: () => removeSwap(sw, say),
        runSync: () => {
          if (sw.mode === 'file' && sw.path) {
            spawnSync('swapoff', [sw.path]);
            spawnSync('rm', ['-f', sw.path]);
          }
        },
      });
    }
    const dev = device;
    return {
      version,
      cleanup,
      device,
      finish,
      swapReport: (source) => ({
        mode: swap.mode,
        totalMiB: Math.round(swap.totalKiB / 1024),
        source,
        preset: o.swapPreset,
        ...(dev ? { device: { loop: dev.loop, dev: dev.dev, limits: dev.preset, measured: dev.measured } } : {}),
      }),
    };
  } catch (e) {
    await finish();
    throw e;
  }
}

/** Measures the throttled device from where the guests will use it: the blkio cgroup (v1) or
 *  a probe cgroup with the same io.max (v2). */
async function probeThrough(dev: ThrottledSwap, version: 1 | 2): Promise<NonNullable<ThrottledSwap['measured']>> {
  if (version === 1 && dev.blkioDir) return probeSwap(dev, dev.blkioDir);
  const mount = (await memoryCgroupMount())!.mountPoint;
  const dir = join(mount, `ballast-lab-experiment-${process.pid}-probe`);
  mkdirSync(dir);
  try {
    throttleV2(dir, mount, dev);
    return await probeSwap(dev, dir);
  } finally {
    rmdirSync(dir);
  }
}

const KSM_RUN = join(KSM_DIR, 'run');

/**
 * KSM left scanning on the host (by an admin, or by a manager killed before it could put it
 * back) merges the guests' pages in every row, splitting their huge pages and shrinking their
 * QEMUs, and so changes what the rows without a manager measure: a killed CI run left it on
 * here, and the next morning's unmanaged rows kept half their memory in huge pages instead of
 * 80%. So the experiment stops it for its runs (managers that use KSM start it themselves) and
 * puts it back at the end.
 */
export function pauseHostKsm(cleanup: Cleanup, say: (m: string) => void): void {
  let run: string;
  try {
    run = readFileSync(KSM_RUN, 'utf8').trim();
  } catch {
    return;
  }
  if (run !== '1') return;
  try {
    writeFileSync(KSM_RUN, '0');
  } catch (e) {
    say(`ksm: it is running on this host and cannot be stopped for the experiment (${(e as Error).message}): every row's guests will be merged`);
    return;
  }
  say('ksm: it was running on this host; stopped for the experiment (managers that use KSM start it themselves), started again at the end');
  const back = () => writeFileSync(KSM_RUN, '1');
  cleanup.add({ what: 'KSM run = 1 as found', run: async () => back(), runSync: back });
}

function liveKsmMerging(): number | null {
  let total = 0;
  let readable = false;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      total += Number(readFileSync(`/proc/${pid}/ksm_merging_pages`, 'utf8').trim()) || 0;
      readable = true;
    } catch {
      /* gone, or no such file on this kernel */
    }
  }
  return readable ? total : null;
}

/**
 * Before a run: KSM's counts of processes that exited with ksmd stopped, cleared. A row's QEMUs
 * exit after the manager put run back to 0, and the kernel drops their merged pages from
 * pages_sharing only when ksmd scans again, so the next row without KSM counted the last one's
 * (none+fpr rows read 53-58 MiB "saved" where ksmd never ran for them). run=2 unmerges
 * everything and drops those counts; it is written only when ksmd is stopped and no live
 * process has a page merged (/proc/PID/ksm_merging_pages, kernel 5.19+; without it nobody can
 * tell stale counts from live ones, and nothing is written).
 */
export function clearStaleKsm(say: (m: string) => void, root = KSM_DIR, live: () => number | null = liveKsmMerging): void {
  let run: string;
  let merged: number;
  try {
    const num = (f: string) => Number(readFileSync(join(root, f), 'utf8').trim()) || 0;
    run = readFileSync(join(root, 'run'), 'utf8').trim();
    merged = num('pages_shared') + num('pages_sharing');
  } catch {
    return; // no KSM in this kernel
  }
  if (run !== '0' || merged === 0) return;
  const merging = live();
  if (merging === null || merging > 0) return;
  const why = `${merged} merged pages counted for processes that exited with ksmd stopped`;
  try {
    writeFileSync(join(root, 'run'), '2');
    writeFileSync(join(root, 'run'), '0');
    say(`ksm: ${why}: cleared (run 2, then 0), so this run's KSM column counts only its own`);
  } catch (e) {
    say(`ksm: ${why}, and they could not be cleared (${(e as Error).message}): this run's KSM column includes them`);
  }
}
