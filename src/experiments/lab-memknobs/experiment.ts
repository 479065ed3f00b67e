// `ballast experiment lab-memknobs`: K repetitions of three runs (no manager, MOM's style,
// ballast) on real QEMU guests in a memory domain, and the spread of what they measured.
// The order of the three runs rotates from one repetition to the next so that a drift of
// the shared machine's load does not always favour the same configuration.
import { mkdirSync, readFileSync } from 'node:fs';
import { LabUnavailable } from './errors.js';
export { LabUnavailable };
import { ratio, spread, type Spread } from './metrics.js';
import { checkConfigs, checkScale, configParts, CONFIGS, domainLimitMiB, planGuests, swapSizeMiB, type ConfigName, type LabScale } from './plan.js';
import { runOnce, type RunResult } from './run.js';
import { checkLab, prepareLab, type SwapReport } from './setup.js';
import type { SwapPresetName } from './swap-device.js';
import { defaultCpuPerGuest } from './cpu-cap.js';
import { guestsVia, type GuestsVia } from './via.js';
import { momCommit, momdCheckouts } from './momd-manager.js';

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
  /** CPUs each guest may use; null: uncapped; undefined: defaultCpuPerGuest. */
  cpuPerGuest?: number | null;
  /** Transparent huge pages for the QEMUs' RAM (default: the host's setting). */
  thp?: 'host' | 'off';
  /** QEMU with QMP (default), or libvirt guests with each manager as a process (via.ts). */
  via?: GuestsVia;
  /** A checkout of oVirt MOM, for the momd row. */
  mom?: string;
  /** A checkout of oVirt vdsm: the momd row runs its mom.d instead of MOM's doc/ rules. */
  vdsm?: string;
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
  keptThroughput: Spread | null;
  keptThroughputVsNone: Spread | null;
  touchS: Spread | null;
  touchSVsNone: Spread | null;
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
  /** Host memory stall (/proc/pressure/memory some) over the window, seconds. */
  hostStallS: Spread | null;
  /** Host I/O stall (/proc/pressure/io some) over the window, seconds: swap-ins of cold pages. */
  hostIoStallS?: Spread | null;
  /** Highest guest memory stall the manager read (psi some avg10, %), runs with guest PSI. */
  guestPsiPeak: Spread | null;
  /** Guest-cycles with an inflation refused or rolled back for a guest's stall. */
  psiStops: Spread | null;
  /** Share of the QEMUs' RSS in host huge pages over the window (0..1). */
  hugeShare: Spread | null;
  /** virtio-mem resizes applied (rows with devices only). */
  vmemActions: Spread | null;
  /** Managed rows: each run's median and largest reaction time, seconds (reaction.ts). */
  reactionMedianS: Spread | null;
  reactionMaxS: Spread | null;
  /** Managed rows: ramps under a balloon its memory did not come back for (before the next
   *  ramp, or before the run stopped). */
  reactionUnanswered: Spread | null;
  /** Libvirt rows: the manager process's CPU seconds and mean RSS (MiB) over the window. */
  managerCpuS?: Spread | null;
  managerRssMiB?: Spread | null;
}

export interface LabExperimentResult {
  experiment: 'lab-memknobs';
  scale: LabScale;
  repeat: number;
  domainLimitMiB: number;
  cgroupVersion: 1 | 2;
  swap: SwapReport;
  workload: { spec: string; delaysS: number[] };
  manager: { statsIntervalS: number; policyIntervalS: number };
  /** CPUs each guest could use (null: uncapped). */
  cpuPerGuest: number | null;
  thp: 'host' | 'off';
  /** The host's THP settings during the runs (enabled, defrag: the bracketed choices), which
   *  decide what `thp: 'host'` means; null where unreadable. */
  hostThp?: { enabled: string | null; defrag: string | null };
  /** How the guests ran: QEMU with QMP, or libvirt guests with each manager as a process. */
  via?: GuestsVia;
  /** The MOM checkout and commit the momd rows ran (and vdsm's, when they ran its mom.d). */
  mom?: { checkout: string; commit: string; vdsm?: { checkout: string; commit: string } } | null;
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
    const parts = configParts(config);
    const managed = parts.manager !== 'none';
    const compared = config !== 'none';
    return {
      config,
      runs: mine.length,
      throughput: spread(mine.map((r) => r.throughput)),
      throughputVsNone: compared ? spread(vsNone(runs, config, (r) => r.throughput)) : null,
      keptThroughput: spread(mine.map((r) => r.keptThroughput)),
      keptThroughputVsNone: compared ? spread(vsNone(runs, config, (r) => r.keptThroughput)) : null,
      touchS: spread(mine.map((r) => r.touchS)),
      touchSVsNone: compared ? spread(vsNone(runs, config, (r) => r.touchS)) : null,
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
      hostStallS: spread(mine.map((r) => r.counters.psiSomeS)),
      hostIoStallS: spread(mine.map((r) => r.counters.psiIoSomeS ?? null)),
      guestPsiPeak: managed ? spread(mine.map((r) => r.manager?.guestPsiPeak ?? null)) : null,
      psiStops: managed ? spread(mine.map((r) => r.manager?.psiStops ?? null)) : null,
      // Runs recorded before the field existed have none: null, not 0.
      hugeShare: spread(mine.map((r) => r.hugeShare ?? null)),
      vmemActions: managed && parts.vmem ? spread(mine.map((r) => r.manager?.vmemActions ?? null)) : null,
      reactionMedianS: managed ? spread(mine.map((r) => r.reaction?.medianS ?? null)) : null,
      reactionMaxS: managed ? spread(mine.map((r) => r.reaction?.maxS ?? null)) : null,
      reactionUnanswered: managed ? spread(mine.map((r) => (r.reaction ? r.reaction.unanswered + (r.reaction.pending ?? 0) : null))) : null,
      managerCpuS: spread(mine.map((r) => r.managerProcess?.usage.cpuS ?? null)),
      managerRssMiB: spread(mine.map((r) => r.managerProcess?.usage.rssMeanMiB ?? null)),
    };
  });
}

export { checkLab };

/** The bracketed choice of a /sys/kernel/mm/transparent_hugepage file ("always [madvise] never"). */
export function thpChoice(text: string | null): string | null {
  return text === null ? null : (/\[([^\]]+)\]/.exec(text)?.[1] ?? null);
}

function readThp(name: string): string | null {
  try {
    return thpChoice(readFileSync(`/sys/kernel/mm/transparent_hugepage/${name}`, 'utf8'));
  } catch {
    return null;
  }
}

export async function runLabExperiment(o: LabExperimentOptions): Promise<LabExperimentResult> {
  const scale = checkScale({ ...o.scale });
  if (!Number.isInteger(o.repeat) || o.repeat < 1 || o.repeat > 20) throw new Error(`--repeat must be 1..20, got ${o.repeat}`);
  const configs = o.configs ?? CONFIGS;
  checkConfigs(scale, configs);
  const via = guestsVia(configs, { via: o.via, mom: o.mom, thp: o.thp });
  const { mom, vdsm } = await momdCheckouts(configs, o);
  const say = o.say ?? ((m: string) => process.stderr.write(m + '\n'));
  const statsIntervalS = o.statsIntervalS ?? 2;
  const policyIntervalS = o.policyIntervalS ?? 4;
  if (o.traceDir) mkdirSync(o.traceDir, { recursive: true });
  const lab = await prepareLab({ swapMiB: swapSizeMiB(scale), swapPreset: o.swapPreset ?? 'host', swapDir: o.swapDir ?? '/var/tmp', say });
  const runs: RunResult[] = [];
  const cpuPerGuest = o.cpuPerGuest === undefined ? defaultCpuPerGuest(scale.guests) : o.cpuPerGuest;
  try {
    const plan = planGuests(scale);
    say(
      `lab-memknobs: ${scale.guests} x ${scale.memMiB} MiB guests, domain limit ${domainLimitMiB(scale)} MiB (${scale.limitRatio.toFixed(2)} x (guest memory + ${scale.qemuOverheadMiB} MiB QEMU each)), ${scale.durationS} s measured per run${scale.warmupS ? ` after ${scale.warmupS} s of warm-up` : ''}, ${o.repeat} repetition(s) of ${configs.join(', ')}`,
    );
    say(`lab-memknobs: workload ${plan[0]!.workload} (guest i starts ${plan.map((p) => p.delayS).join('/')} s after boot)`);
    if (via === 'libvirt')
      say(
        `lab-memknobs: libvirt guests (each run's own libvirtd), ballast and momd each a process of its own${mom ? `; momd from ${mom} at ${await momCommit(mom)}` : ''}`,
      );
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
            cleanup: lab.cleanup,
            say,
            progressEveryS: o.progressEveryS,
            traceDir: o.traceDir,
            swapDevice: lab.device,
            cpuPerGuest,
            thp: o.thp,
            via,
            mom,
            vdsm,
          }),
        );
      }
    }
    return {
      experiment: 'lab-memknobs',
      scale,
      repeat: o.repeat,
      domainLimitMiB: domainLimitMiB(scale),
      cgroupVersion: lab.version,
      swap: lab.swapReport(runs[0]?.swapSource ?? ''),
      workload: { spec: plan[0]!.workload, delaysS: plan.map((p) => p.delayS) },
      manager: { statsIntervalS, policyIntervalS },
      cpuPerGuest,
      thp: o.thp ?? 'host',
      hostThp: { enabled: readThp('enabled'), defrag: readThp('defrag') },
      via,
      mom: mom
        ? {
            checkout: mom,
            commit: runs.find((r) => r.managerProcess?.momCommit)?.managerProcess?.momCommit ?? (await momCommit(mom)),
            vdsm: vdsm ? { checkout: vdsm, commit: await momCommit(vdsm) } : undefined,
          }
        : null,
      runs,
      summary: summarize(runs, configs),
    };
  } finally {
    await lab.finish();
  }
}
