// `ballast experiment lab-memknobs`: K repetitions of three runs (no manager, MOM's style,
// ballast) on real QEMU guests in a memory domain, and the spread of what they measured.
// The order of the three runs rotates from one repetition to the next so that a drift of
// the shared machine's load does not always favour the same configuration.
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { labAvailable } from '../../lab/available.js';
import { Cleanup } from './cleanup.js';
import { LabUnavailable } from './errors.js';
import { acquireExperimentLock } from './lock.js';
export { LabUnavailable };
import { memoryCgroupMount } from './domain.js';
import { ratio, spread, type Spread } from './metrics.js';
import { checkScale, configParts, CONFIGS, domainLimitMiB, planGuests, swapSizeMiB, type ConfigName, type LabScale } from './plan.js';
import { runOnce, type RunResult } from './run.js';
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
import { mkdirSync as mkdir, rmdirSync } from 'node:fs';
import { join } from 'node:path';

export interface LabExperimentOptions {
  scale: LabScale;
  repeat: number;
  configs?: readonly ConfigName[];
  statsIntervalS?: number;
  policyIntervalS?: number;
  /** Where a swap file goes when the host has none (or the preset's file). */
  swapDir?: string;
  /** 'host': the host's swap, or a plain swap file; a preset: a throttled loop device. */
  swapPreset?: SwapPresetName;
  say?: (m: string) => void;
  /** Keep each run's engine decisions, counter samples and guest consoles here. */
  traceDir?: string;
  progressEveryS?: number;
}

export interface ConfigSummary {
  config: ConfigName;
  runs: number;
  throughput: Spread | null;
  throughputVsNone: Spread | null;
  peaks: Spread | null;
  oomKills: Spread | null;
  swapIn: Spread | null;
  swapOut: Spread | null;
  swapOutVsNone: Spread | null;
  swapInVsNone: Spread | null;
  pressureS: Spread | null;
  pressureVsNone: Spread | null;
  balloonActions: Spread | null;
  rollbacks: Spread | null;
}

export interface LabExperimentResult {
  experiment: 'lab-memknobs';
  scale: LabScale;
  repeat: number;
  domainLimitMiB: number;
  cgroupVersion: 1 | 2;
  swap: {
    mode: SwapSetup['mode'] | 'device';
    totalMiB: number;
    source: string;
    preset: SwapPresetName;
    /** The preset's limits, and what a probe measured through them. */
    device?: { loop: string; dev: string; limits: SwapPreset; measured: ThrottledSwap['measured'] };
  };
  workload: { spec: string; delaysS: number[] };
  manager: { statsIntervalS: number; policyIntervalS: number };
  runs: RunResult[];
  summary: ConfigSummary[];
}

/** Per repetition, each run's ratio to the no-manager run of the same repetition. */
function vsNone(runs: RunResult[], config: ConfigName, pick: (r: RunResult) => number): (number | null)[] {
  return runs
    .filter((r) => r.config === config)
    .map((r) => {
      const base = runs.find((b) => b.config === 'none' && b.repetition === r.repetition);
      return base ? ratio(pick(r), pick(base)) : null;
    });
}

export function summarize(runs: RunResult[], configs: readonly ConfigName[]): ConfigSummary[] {
  return configs.map((config) => {
    const mine = runs.filter((r) => r.config === config);
    const managed = configParts(config).manager !== 'none';
    const compared = config !== 'none';
    return {
      config,
      runs: mine.length,
      throughput: spread(mine.map((r) => r.throughput)),
      throughputVsNone: compared ? spread(vsNone(runs, config, (r) => r.throughput)) : null,
      peaks: spread(mine.map((r) => r.peaks)),
      oomKills: spread(mine.map((r) => r.oomKills)),
      swapIn: spread(mine.map((r) => r.swapIn)),
      swapOut: spread(mine.map((r) => r.swapOut)),
      swapInVsNone: compared ? spread(vsNone(runs, config, (r) => r.swapIn)) : null,
      swapOutVsNone: compared ? spread(vsNone(runs, config, (r) => r.swapOut)) : null,
      pressureS: spread(mine.map((r) => r.pressureS)),
      pressureVsNone: compared ? spread(vsNone(runs, config, (r) => r.pressureS)) : null,
      balloonActions: managed ? spread(mine.map((r) => r.manager?.balloonActions ?? null)) : null,
      rollbacks: managed ? spread(mine.map((r) => r.manager?.rollbacks ?? null)) : null,
    };
  });
}

/** Throws LabUnavailable with the reason when the experiment cannot run on this machine. */
export async function checkLab(): Promise<{ version: 1 | 2 }> {
  const a = await labAvailable({ libvirt: false });
  if (!a.ok) throw new LabUnavailable(a.reason);
  const mount = await memoryCgroupMount();
  if (!mount) throw new LabUnavailable('no memory cgroup controller mounted');
  return { version: mount.version };
}

export async function runLabExperiment(o: LabExperimentOptions): Promise<LabExperimentResult> {
  const scale = checkScale({ ...o.scale });
  if (!Number.isInteger(o.repeat) || o.repeat < 1 || o.repeat > 20) throw new Error(`--repeat must be 1..20, got ${o.repeat}`);
  const configs = o.configs ?? CONFIGS;
  const say = o.say ?? ((m: string) => process.stderr.write(m + '\n'));
  const statsIntervalS = o.statsIntervalS ?? 2;
  const policyIntervalS = o.policyIntervalS ?? 4;
  const { version } = await checkLab();
  if (o.traceDir) mkdirSync(o.traceDir, { recursive: true });
  const unlock = acquireExperimentLock();
  const cleanup = new Cleanup(say);
  cleanup.add({ what: 'experiment lock', run: async () => unlock(), runSync: unlock });
  cleanup.install();
  const runs: RunResult[] = [];
  let swap: SwapSetup | null = null;
  let device: ThrottledSwap | null = null;
  const preset = o.swapPreset ?? 'host';
  try {
    if (preset !== 'host') {
      const dev = await addThrottledSwap(PRESETS[preset], swapSizeMiB(scale), o.swapDir ?? '/var/tmp', version, say);
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
    }
    swap = device
      ? { mode: 'existing', path: null, totalKiB: swapSizeMiB(scale) * 1024, before: [] }
      : await ensureSwap(swapSizeMiB(scale), o.swapDir ?? '/var/tmp', say);
    const sw = swap;
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
    const plan = planGuests(scale);
    say(
      `lab-memknobs: ${scale.guests} x ${scale.memMiB} MiB guests, domain limit ${domainLimitMiB(scale)} MiB (${scale.limitRatio.toFixed(2)} x (guest memory + ${scale.qemuOverheadMiB} MiB QEMU each)), ${scale.durationS} s per run, ${o.repeat} repetition(s) of ${configs.join(', ')}`,
    );
    say(`lab-memknobs: workload ${plan[0]!.workload} (guest i starts ${plan.map((p) => p.delayS).join('/')} s after boot)`);
    for (let rep = 1; rep <= o.repeat; rep++) {
      const order = configs.map((_, i) => configs[(i + rep - 1) % configs.length]!);
      for (const config of order) {
        runs.push(
          await runOnce({
            config,
            scale,
            repetition: rep,
            statsIntervalS,
            policyIntervalS,
            cleanup,
            say,
            progressEveryS: o.progressEveryS,
            traceDir: o.traceDir,
            swapDevice: device,
          }),
        );
      }
    }
    return {
      experiment: 'lab-memknobs',
      scale,
      repeat: o.repeat,
      domainLimitMiB: domainLimitMiB(scale),
      cgroupVersion: version,
      swap: {
        mode: device ? 'device' : swap.mode,
        totalMiB: Math.round(swap.totalKiB / 1024),
        source: runs[0]?.swapSource ?? '',
        preset,
        ...(device ? { device: { loop: device.loop, dev: device.dev, limits: device.preset, measured: device.measured } } : {}),
      },
      workload: { spec: plan[0]!.workload, delaysS: plan.map((p) => p.delayS) },
      manager: { statsIntervalS, policyIntervalS },
      runs,
      summary: summarize(runs, configs),
    };
  } finally {
    await cleanup.runAll();
    cleanup.uninstall();
  }
}

/** Measures the throttled device from where the guests will use it: the blkio cgroup (v1) or
 *  a probe cgroup with the same io.max (v2). */
async function probeThrough(dev: ThrottledSwap, version: 1 | 2): Promise<NonNullable<ThrottledSwap['measured']>> {
  if (version === 1 && dev.blkioDir) return probeSwap(dev, dev.blkioDir);
  const mount = (await memoryCgroupMount())!.mountPoint;
  const dir = join(mount, `ballast-lab-experiment-${process.pid}-probe`);
  mkdir(dir);
  try {
    throttleV2(dir, mount, dev);
    return await probeSwap(dev, dir);
  } finally {
    rmdirSync(dir);
  }
}
