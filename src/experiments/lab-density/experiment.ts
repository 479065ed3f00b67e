// `ballast experiment lab-density`: how small a memory domain can each manager run the same
// guests in without losing throughput? The measure TMO and Google's far memory use: memory
// saved at (almost) no cost. One unconstrained run set (no manager, the domain as large as
// everything the guests could hold) gives the baseline throughput and the peak memory the
// guests really held; then, per manager, a bisection on the domain limit, and confirmation
// runs at the limit found.
import { domainLimitMiB, planGuests, checkScale, swapSizeMiB, type ConfigName, type LabScale } from '../lab-memknobs/plan.js';
import { spread } from '../lab-memknobs/metrics.js';
import { formatColumns } from '../lab-memknobs/format.js';
import { runOnce, type RunResult } from '../lab-memknobs/run.js';
import { guestsVia, type GuestsVia } from '../lab-memknobs/via.js';
import { momdCheckouts } from '../lab-memknobs/momd-manager.js';
import { prepareLab, type SwapReport } from '../lab-memknobs/setup.js';
import type { SwapPresetName } from '../lab-memknobs/swap-device.js';
import { defaultCpuPerGuest } from '../lab-memknobs/cpu-cap.js';
import { densityRow, nextRatio, passes, smallestPassing, type DensityRow, type Probe } from './search.js';

export interface DensityOptions {
  /** Guests, memory, duration, workload; limitRatio is what the search varies. */
  scale: LabScale;
  configs: readonly ConfigName[];
  /** Largest throughput loss that still passes (0.05: within 5%). */
  tolerance: number;
  /** Bisection steps per manager. */
  steps: number;
  /** Confirmation runs at the limit found. */
  confirm: number;
  /** Unconstrained runs for the baseline (their median). */
  baselineRuns: number;
  /** The search's bounds, as shares of what the guests could hold. */
  minRatio: number;
  swapPreset: SwapPresetName;
  swapDir: string;
  /** CPUs each guest may use; null: uncapped; undefined: defaultCpuPerGuest. */
  cpuPerGuest?: number | null;
  thp?: 'host' | 'off';
  /** QEMU with QMP (default) or libvirt guests with each manager a process (lab-memknobs/via.ts). */
  via?: GuestsVia;
  /** A checkout of oVirt MOM, for the momd row. */
  mom?: string;
  /** A checkout of oVirt vdsm: the momd row runs its mom.d. */
  vdsm?: string;
  statsIntervalS?: number;
  policyIntervalS?: number;
  say?: (m: string) => void;
}

export interface DensityResult {
  experiment: 'lab-density';
  scale: Omit<LabScale, 'limitRatio'>;
  tolerance: number;
  unconstrained: { limitMiB: number; throughput: number; work: number; peakMiB: number; runs: number };
  swap: SwapReport;
  cpuPerGuest: number | null;
  thp: 'host' | 'off';
  rows: DensityRow[];
  probes: (Probe & { config: string })[];
}

const CEILING = 1;

export async function runDensityExperiment(o: DensityOptions): Promise<DensityResult> {
  const say = o.say ?? ((m: string) => process.stderr.write(m + '\n'));
  if (!(o.tolerance > 0 && o.tolerance < 1)) throw new Error(`--tolerance must be in (0, 1), got ${o.tolerance}`);
  if (!Number.isInteger(o.steps) || o.steps < 1 || o.steps > 8) throw new Error(`--steps must be 1..8, got ${o.steps}`);
  if (!Number.isInteger(o.confirm) || o.confirm < 0 || o.confirm > 5) throw new Error(`--confirm must be 0..5, got ${o.confirm}`);
  if (!Number.isInteger(o.baselineRuns) || o.baselineRuns < 1 || o.baselineRuns > 5) throw new Error(`--baseline-runs must be 1..5, got ${o.baselineRuns}`);
  if (!(o.minRatio > 0.2 && o.minRatio < CEILING)) throw new Error(`--min-ratio must be in (0.2, 1), got ${o.minRatio}`);
  const base = checkScale({ ...o.scale, limitRatio: CEILING });
  const via = guestsVia(o.configs, { via: o.via, mom: o.mom, thp: o.thp });
  const { mom, vdsm } = await momdCheckouts(o.configs, o);
  const at = (ratio: number): LabScale => ({ ...base, limitRatio: ratio });
  // Swap for the tightest domain the search may try.
  const lab = await prepareLab({ swapMiB: swapSizeMiB(at(o.minRatio)), swapPreset: o.swapPreset, swapDir: o.swapDir, say });
  let probeNo = 0;
  const cpuPerGuest = o.cpuPerGuest === undefined ? defaultCpuPerGuest(base.guests) : o.cpuPerGuest;
  const run = (config: ConfigName, ratio: number): Promise<RunResult> =>
    runOnce({
      config,
      scale: at(ratio),
      repetition: ++probeNo,
      statsIntervalS: o.statsIntervalS ?? 2,
      policyIntervalS: o.policyIntervalS ?? 4,
      cleanup: lab.cleanup,
      say,
      swapDevice: lab.device,
      cpuPerGuest,
      thp: o.thp,
      via,
      mom,
      vdsm,
      progressEveryS: 60,
    });
  try {
    say(
      `lab-density: ${base.guests} x ${base.memMiB} MiB guests, ${base.durationS} s measured per run${base.warmupS ? ` after ${base.warmupS} s of warm-up` : ''}; workload ${planGuests(base)[0]!.workload}; passes: 0 OOM kills and the guests' throughput within ${Math.round(o.tolerance * 100)}% of the unconstrained runs'`,
    );
    const baselineRuns: RunResult[] = [];
    for (let i = 0; i < o.baselineRuns; i++) baselineRuns.push(await run('none', CEILING));
    const baseline = { throughput: spread(baselineRuns.map((r) => r.throughput))!.median, work: spread(baselineRuns.map((r) => r.touchS))!.median };
    const peakMiB = Math.max(...baselineRuns.map((r) => r.counters.peakUsageKiB)) / 1024;
    say(
      `lab-density: unconstrained: ${(baseline.throughput / 1e6).toFixed(2)} Mpages/s, work ${baseline.work.toFixed(0)} s (medians of ${baselineRuns.length}), peak domain use ${Math.round(peakMiB)} MiB`,
    );

    const probes: (Probe & { config: string })[] = [];
    const rows: DensityRow[] = [];
    for (const config of o.configs) {
      const mine: Probe[] = [];
      const probe = async (ratio: number, confirm: boolean) => {
        const r = await run(config, ratio);
        const p: Probe = {
          ratio,
          limitMiB: domainLimitMiB(at(ratio)),
          throughput: r.throughput,
          work: r.touchS,
          oomKills: r.oomKills,
          pass: passes(r.throughput, r.oomKills, baseline.throughput, o.tolerance),
          confirm,
        };
        say(
          `lab-density: ${config} at ${p.limitMiB} MiB (${ratio}): ${(p.throughput / 1e6).toFixed(2)} Mpages/s (${((p.throughput / baseline.throughput) * 100).toFixed(0)}%), work ${p.work.toFixed(0)} s (${((p.work / baseline.work) * 100).toFixed(0)}%), ${p.oomKills} OOM kills: ${p.pass ? 'passes' : 'fails'}`,
        );
        mine.push(p);
        probes.push({ ...p, config });
        return p.pass;
      };
      let lo = o.minRatio;
      let hi = CEILING;
      for (let s = 0; s < o.steps; s++) {
        const ratio = nextRatio(lo, hi);
        if (await probe(ratio, false)) hi = ratio;
        else lo = ratio;
      }
      // Confirm the limit found; a failed confirmation falls back to the next larger passing one.
      for (let c = 0; c < o.confirm; c++) {
        const ratio = smallestPassing(mine, CEILING);
        if (!mine.some((p) => p.ratio === ratio)) break; // nothing passed below unconstrained
        await probe(ratio, true);
      }
      const row = densityRow(config, mine, CEILING, domainLimitMiB(base), baseline, peakMiB);
      say(`lab-density: ${config}: smallest passing limit ${row.limitMiB} MiB, memory saved ${(row.saved * 100).toFixed(0)}%`);
      rows.push(row);
    }
    const { limitRatio: _omit, ...scale } = base;
    return {
      experiment: 'lab-density',
      scale,
      tolerance: o.tolerance,
      unconstrained: {
        limitMiB: domainLimitMiB(base),
        throughput: Math.round(baseline.throughput),
        work: Math.round(baseline.work * 10) / 10,
        peakMiB: Math.round(peakMiB),
        runs: baselineRuns.length,
      },
      swap: lab.swapReport(baselineRuns[0]?.swapSource ?? ''),
      cpuPerGuest,
      thp: o.thp ?? 'host',
      rows,
      probes,
    };
  } finally {
    await lab.finish();
  }
}

export function formatDensityTable(r: DensityResult): string {
  const head = [
    `lab-density: ${r.scale.guests} x ${r.scale.memMiB} MiB TCG guests (${r.cpuPerGuest === null ? 'sharing the CPUs' : `${r.cpuPerGuest} CPU each`}${r.thp === 'off' ? ', no huge pages for guest RAM' : ''}), ${r.scale.durationS} s measured per run${r.scale.warmupS ? ` after ${r.scale.warmupS} s of warm-up` : ''}, swap ${r.swap.preset}; unconstrained (no manager, ${r.unconstrained.limitMiB} MiB domain): ${(r.unconstrained.throughput / 1e6).toFixed(2)} Mpages/s, peak use ${r.unconstrained.peakMiB} MiB`,
    `smallest domain limit with 0 OOM kills and the guests' throughput within ${Math.round(r.tolerance * 100)}% of unconstrained (${(r.unconstrained.throughput / 1e6).toFixed(2)} Mpages/s); saved = 1 - limit / unconstrained peak`,
    '',
  ];
  const cols = ['config', 'limit MiB', 'saved', 'throughput vs unconstrained', 'work vs unconstrained', 'OOM kills', 'runs at limit'];
  const rows = r.rows.map((x) => [
    x.config,
    String(x.limitMiB),
    `${(x.saved * 100).toFixed(0)}%`,
    x.throughputVsUnconstrained === null ? '-' : `${x.throughputVsUnconstrained.toFixed(2)}x`,
    x.workVsUnconstrained === null ? '-' : `${x.workVsUnconstrained.toFixed(2)}x`,
    String(x.oomKills),
    String(x.runsAtLimit),
  ]);
  const share = (v: number, base: number) => `${Math.round((v / base) * 100)}%`;
  const probes = r.probes.map((x) => [
    x.config,
    `${x.limitMiB}${x.confirm ? ' (confirmation)' : ''}`,
    share(x.throughput, r.unconstrained.throughput),
    share(x.work, r.unconstrained.work),
    String(x.oomKills),
    x.pass ? 'passes' : 'fails',
  ]);
  const probeCols = ['config', 'limit MiB', 'pages/s', 'work', 'OOM kills', 'verdict'];
  return [...head, ...formatColumns(cols, rows), '', 'every run, as a share of unconstrained:', ...formatColumns(probeCols, probes)].join('\n');
}
