// `ballast experiment memknobs|cloudy`: the seed paper's two experiments on the simulator,
// each run three times with identical workloads (same scenario, same seed): no policy, KSM
// only (policies/ksm.policy), balloon + KSM (policies/default.policy). Prints a table like
// the paper's, or with --json {"experiment": ..., "runs": [...]} on stdout. Progress on stderr.
import type { Command } from 'commander';
import { runSimulated, type SimRunResult } from '../daemon/sim-run.js';
import type { CompiledPolicy } from '../policy/index.js';
import { cloudyDefaults, cloudyScenario, memknobsDefaults, memknobsScenario, parseParamOverrides, type ExperimentScale } from '../sim/scenarios.js';
import type { ParamOverrides } from '../sim/params.js';
import { SimWorld, type ScenarioSpec } from '../sim/world.js';
import { addLabDensity, addLabExperiment } from './experiment-lab.js';
import { loadPolicyFiles, parseDuration, parseMiB, parsePositiveInt } from './sim.js';
import { shippedPolicyFile } from '../policy/shipped.js';

export type ExperimentName = 'memknobs' | 'cloudy';
export type ConfigName = 'none' | 'ksm' | 'balloon+ksm';
export const CONFIGS: ConfigName[] = ['none', 'ksm', 'balloon+ksm'];

/** What the seed paper reported (its tables 1 and 2). */
export const PAPER: Record<ExperimentName, string[]> = {
  memknobs: [
    'paper (Memknobs, table 1, sum of per-guest mean throughput): no policy 4331.1; KSM only 4322.6 (-0.2%);',
    '  KSM + ballooning 5399.5 (+24.7%); total swap operations about halved with the MOM policy (figure 4).',
  ],
  cloudy: [
    'paper (Cloudy, table 2): 32 VMs without policy QoS 3240 ms, throughput 774555; with the MOM policy (balloon + KSM)',
    '  QoS 3231 ms, throughput 764762 (-1.3%): no gain; almost no swapping; ballooning moved pressure to page cache and I/O.',
  ],
};

export interface ExperimentOptions {
  experiment: ExperimentName;
  scale: ExperimentScale;
  durationS: number;
  /** Override the workload data's KSM-shareable fraction (sensitivity runs). */
  dupFraction?: number;
  /** Model parameter overrides (sensitivity runs). */
  params?: ParamOverrides;
  configs?: ConfigName[];
  /** Policies by config (default: the shipped ksm.policy and default.policy). */
  policies?: Partial<Record<ConfigName, CompiledPolicy | null>>;
  progress?: (line: string) => void;
}

export interface ExperimentRun {
  config: ConfigName;
  throughput: number;
  swap_ops: number;
  oom_kills: number;
  throughput_unit: string;
  throughput_vs_none_pct: number | null;
  swap_ops_vs_none_pct: number | null;
  host_swap_ops: number;
  guest_swap_ops: number;
  guest_oom_kills: number;
  host_oom_kills: number;
  balloon_actions: number;
  rollbacks: number;
  pressure_s: number;
  guest_stalled_s: number;
  ksm_saved_kib: number;
  ksmd_cpu_s: number;
  web_requests_offered_per_s?: number;
  wall_ms: number;
}

export function experimentScenario(opts: ExperimentOptions): ScenarioSpec {
  const spec = opts.experiment === 'memknobs' ? memknobsScenario(opts.scale) : cloudyScenario(opts.scale);
  if (opts.params) spec.params = { ...spec.params, ...opts.params };
  if (opts.dupFraction !== undefined) {
    for (const g of spec.guests) {
      const w = g.workload;
      if (w.kind === 'memknobs' || w.kind === 'web') w.dupFraction = opts.dupFraction;
    }
  }
  return spec;
}

const pct = (v: number, base: number): number | null => (base > 0 ? Math.round(((v - base) / base) * 1000) / 10 : null);

export async function runExperiment(opts: ExperimentOptions): Promise<ExperimentRun[]> {
  const configs = opts.configs ?? CONFIGS;
  const policyFor = (c: ConfigName): CompiledPolicy | null => {
    if (opts.policies && c in opts.policies) return opts.policies[c] ?? null;
    if (c === 'none') return null;
    return loadPolicyFiles([shippedPolicyFile(c === 'ksm' ? 'ksm' : 'default')]);
  };
  const results: { config: ConfigName; r: SimRunResult }[] = [];
  for (const config of configs) {
    // A fresh world from the same spec and seed: identical workloads in every run.
    const world = new SimWorld(experimentScenario(opts), opts.scale.seed);
    let next = 0;
    const r = await runSimulated({
      world,
      policy: policyFor(config),
      durationS: opts.durationS,
      onTick: ({ time }) => {
        if (time >= next) {
          next += 900;
          opts.progress?.(`${opts.experiment} ${config}: ${Math.round(time)} / ${Math.round(opts.durationS)} simulated s`);
        }
      },
    });
    opts.progress?.(`${opts.experiment} ${config}: done in ${(r.wallMs / 1000).toFixed(1)} s`);
    results.push({ config, r });
  }
  const base = results.find((x) => x.config === 'none')?.r.metrics;
  return results.map(({ config, r }) => {
    const m = r.metrics;
    const run: ExperimentRun = {
      config,
      throughput: Math.round(m.throughput * 10) / 10,
      swap_ops: Math.round(m.swap_ops),
      oom_kills: m.oom_kills,
      throughput_unit: m.throughput_unit,
      throughput_vs_none_pct: base ? pct(m.throughput, base.throughput) : null,
      swap_ops_vs_none_pct: base ? pct(m.swap_ops, base.swap_ops) : null,
      host_swap_ops: Math.round(m.host_swap_ops),
      guest_swap_ops: Math.round(m.guest_swap_ops),
      guest_oom_kills: m.guest_oom_kills,
      host_oom_kills: m.host_oom_kills,
      balloon_actions: r.balloonActions,
      rollbacks: r.engine.rollbacks,
      pressure_s: m.pressure_s,
      guest_stalled_s: Math.round(m.guest_stalled_s),
      ksm_saved_kib: Math.round(m.ksm_saved_kib),
      ksmd_cpu_s: Math.round(m.ksmd_cpu_s),
      wall_ms: Math.round(r.wallMs),
    };
    if (m.web_requests_offered_per_s > 0) run.web_requests_offered_per_s = Math.round(m.web_requests_offered_per_s * 10) / 10;
    return run;
  });
}

function pad(s: string, n: number, right = false): string {
  return right ? s.padStart(n) : s.padEnd(n);
}

export function formatTable(name: ExperimentName, scale: ExperimentScale, durationS: number, runs: ExperimentRun[]): string {
  const n = (v: number) => Math.round(v).toLocaleString('en-US');
  const p = (v: number | null) => (v === null ? '-' : `${v > 0 ? '+' : ''}${v.toFixed(1)}%`);
  const unit = runs[0]?.throughput_unit ?? '';
  const lines = [
    `${name}: ${scale.guests} guests x ${scale.guestMiB} MiB, host ${scale.hostMiB} MiB, ${scale.cpus} CPUs, ` +
      `${durationS} simulated s per run, seed ${scale.seed}`,
    '',
    [
      pad('config', 12),
      pad(`throughput (${unit})`, 24, true),
      pad('vs none', 9, true),
      pad('swap ops (pages)', 18, true),
      pad('vs none', 9, true),
      pad('host', 12, true),
      pad('guest', 12, true),
      pad('OOM kills', 10, true),
      pad('balloon acts', 13, true),
      pad('host pressure s', 16, true),
    ].join(' '),
  ];
  for (const r of runs) {
    lines.push(
      [
        pad(r.config, 12),
        pad(n(r.throughput), 24, true),
        pad(r.config === 'none' ? '' : p(r.throughput_vs_none_pct), 9, true),
        pad(n(r.swap_ops), 18, true),
        pad(r.config === 'none' ? '' : p(r.swap_ops_vs_none_pct), 9, true),
        pad(n(r.host_swap_ops), 12, true),
        pad(n(r.guest_swap_ops), 12, true),
        pad(String(r.oom_kills), 10, true),
        pad(n(r.balloon_actions), 13, true),
        pad(n(r.pressure_s), 16, true),
      ].join(' '),
    );
  }
  lines.push('', ...PAPER[name]);
  return lines.join('\n');
}

export function register(program: Command): void {
  const experiment = program
    .command('experiment')
    .description("the seed paper's experiments on the simulator: no policy / KSM only / balloon + KSM, identical workloads")
    .argument('<name>', 'memknobs or cloudy (simulated); lab-memknobs and lab-density run on real QEMU guests')
    .option('--guests <n>', 'number of guests (default 32)')
    .option('--guest-mem <size>', 'memory per guest, e.g. 2G (default: memknobs 2G, cloudy 1G)')
    .option('--host-mem <size>', 'host memory, e.g. 48G (default 48G)')
    .option('--cpus <n>', 'host CPUs (default 16)')
    .option('--duration <time>', 'simulated time per run (the paper ran one hour)', '1h')
    .option('--seed <n>', 'random seed of the workloads', '1')
    .option('--dup-fraction <f>', "KSM-shareable share of the workloads' data (sensitivity; default: the workload's)")
    .option('--param <key=value...>', 'override model parameters (see docs/simulator.md), e.g. hostSeesGuestAccess=true')
    .option('--json', 'print {"experiment", "runs"} as JSON on stdout')
    .action(
      async (
        name: string,
        opts: {
          guests?: string;
          guestMem?: string;
          hostMem?: string;
          cpus?: string;
          duration: string;
          seed: string;
          dupFraction?: string;
          json?: boolean;
          param?: string[];
        },
      ) => {
        if (name !== 'memknobs' && name !== 'cloudy') throw new Error(`unknown experiment "${name}" (memknobs, cloudy, lab-memknobs or lab-density)`);
        const d = name === 'memknobs' ? memknobsDefaults : cloudyDefaults;
        const seed = Number(opts.seed);
        if (!Number.isInteger(seed)) throw new Error(`--seed must be an integer, got "${opts.seed}"`);
        const scale: ExperimentScale = {
          guests: opts.guests ? parsePositiveInt(opts.guests, '--guests') : d.guests,
          guestMiB: opts.guestMem ? parseMiB(opts.guestMem) : d.guestMiB,
          hostMiB: opts.hostMem ? parseMiB(opts.hostMem) : d.hostMiB,
          cpus: opts.cpus ? parsePositiveInt(opts.cpus, '--cpus') : d.cpus,
          seed,
        };
        let dupFraction: number | undefined;
        if (opts.dupFraction !== undefined) {
          dupFraction = Number(opts.dupFraction);
          if (!(dupFraction >= 0 && dupFraction <= 1)) throw new Error(`--dup-fraction must be in [0, 1], got "${opts.dupFraction}"`);
        }
        const durationS = parseDuration(opts.duration);
        const runs = await runExperiment({
          experiment: name,
          scale,
          durationS,
          dupFraction,
          params: parseParamOverrides(opts.param ?? []),
          progress: (line) => process.stderr.write(line + '\n'),
        });
        if (opts.json) {
          process.stdout.write(JSON.stringify({ experiment: name, runs }) + '\n');
          return;
        }
        process.stdout.write(formatTable(name, scale, durationS, runs) + '\n');
        if (name === 'cloudy') {
          // The paper's table 2 starts with one VM alone on the host: the unconstrained reference.
          const alone = await runExperiment({
            experiment: name,
            scale: { ...scale, guests: 1 },
            durationS,
            dupFraction,
            params: parseParamOverrides(opts.param ?? []),
            configs: ['none'],
          });
          const per = (r: ExperimentRun) => (r.throughput / scale.guests).toFixed(1);
          process.stdout.write(
            `one guest alone on the host: ${alone[0]!.throughput.toFixed(1)} requests/s; per guest above: ` +
              `${runs.map((r) => `${r.config} ${per(r)}`).join(', ')} (paper, per instance: 1 VM 710007, 32 VMs 774555 / 764762)\n`,
          );
        }
      },
    );
  addLabExperiment(experiment);
  addLabDensity(experiment);
}
