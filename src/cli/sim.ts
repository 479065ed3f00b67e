// `ballast sim`: a scenario on the simulated host, in simulated time as fast as the CPU
// allows, with the real engine and the given policies; a summary on stdout (or --json), a
// time series with --out, progress on stderr.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { compilePolicies, checkPolicy, type CompiledPolicy } from '../policy/index.js';
import { runSimulated, type SimRunResult } from '../daemon/sim-run.js';
import { loadScenario, parseParamOverrides } from '../sim/scenarios.js';
import { SimWorld } from '../sim/world.js';
import { SeriesSampler, openSeries, type SeriesWriter } from '../sim/series.js';

/** "2h", "90m", "1h30m", "45s", "3600" (seconds) -> seconds. */
export function parseDuration(text: string): number {
  const s = String(text).trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s);
  const re = /(\d+(?:\.\d+)?)\s*(d|h|m|s)/gy;
  let total = 0;
  let matched = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s)) !== null) {
    total += Number(m[1]) * { d: 86400, h: 3600, m: 60, s: 1 }[m[2] as 'd' | 'h' | 'm' | 's'];
    matched = re.lastIndex;
  }
  if (matched !== s.length || s.length === 0) throw new Error(`bad duration "${text}" (use e.g. 2h, 90m, 1h30m, 45s or seconds)`);
  return total;
}

/** "2G", "2GiB", "512M", "2048" (MiB) -> MiB. */
export function parseMiB(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(String(text).trim());
  if (!m) throw new Error(`bad memory size "${text}" (use e.g. 2G, 512M, or MiB)`);
  const mult = { '': 1, k: 1 / 1024, m: 1, g: 1024, t: 1024 * 1024 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  const v = Number(m[1]) * mult;
  if (!(v > 0)) throw new Error(`bad memory size "${text}": must be positive`);
  return v;
}

export function parsePositiveInt(text: string, what: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${what} must be a positive integer, got "${text}"`);
  return n;
}

/** Read, check and compile policy files as one program (in the order given). */
export function loadPolicyFiles(files: string[]): CompiledPolicy {
  const sources = files.map((file) => {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new Error(`policy ${file}: ${(e as Error).message}`);
    }
    const errs = checkPolicy(text, file);
    if (errs.length > 0) throw new Error(errs.map((e) => e.message).join('\n'));
    return { name: file, text, file };
  });
  return compilePolicies(sources);
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

export function summaryLines(r: SimRunResult, header: string): string[] {
  const m = r.metrics;
  return [
    header,
    `throughput        ${fmt(m.throughput)} ${m.throughput_unit} (sum over guests of each one's mean rate)`,
    ...(m.web_requests_offered_per_s > 0 ? [`web requests      ${fmt(m.web_requests_per_s)} of ${fmt(m.web_requests_offered_per_s)} offered per s`] : []),
    `swap operations   ${fmt(m.swap_ops)} pages (host ${fmt(m.host_swap_ops)}, guests ${fmt(m.guest_swap_ops)})`,
    `OOM kills         ${m.oom_kills} (guest ${m.guest_oom_kills}, host ${m.host_oom_kills})`,
    `balloon actions   ${fmt(r.balloonActions)}`,
    `under pressure    host below its low watermark ${fmt(m.pressure_s)} s; guests slowed by memory ${fmt(m.guest_stalled_s)} guest-s`,
    `KSM               ${(m.ksm_saved_kib / 1048576).toFixed(2)} GiB saved at the end; ksmd used ${fmt(m.ksmd_cpu_s)} CPU-s`,
    `engine            ${r.engine.cycles} policy cycles, ${r.engine.actionsApplied} actions, ${r.engine.rollbacks} rollbacks, ${r.engine.vetoes} vetoes, ${r.engine.policyErrors} policy errors`,
  ];
}

export function register(program: Command): void {
  program
    .command('sim')
    .description('run a scenario on the simulated host in simulated time (as fast as the CPU allows); print a summary, write a time series')
    .requiredOption('--scenario <name|file>', 'built-in scenario (demo, memknobs, cloudy, leak) or a JSON/TOML scenario file')
    .option('--policy <file...>', 'policy files, concatenated in the order given (default: no policy)')
    .option('--duration <time>', 'simulated time, e.g. 2h, 90m, 3600', '1h')
    .option('--out <file>', 'write a time series, one row per stats interval (.csv or .jsonl)')
    .option('--seed <n>', "random seed (default: the scenario's)")
    .option('--stats-interval <seconds>', 'seconds between collections', '5')
    .option('--policy-interval <seconds>', 'seconds between policy cycles', '10')
    .option('--param <key=value...>', 'override model parameters (see docs/simulator.md), e.g. hostSeesGuestAccess=true')
    .option('--json', 'print the summary as JSON on stdout')
    .action(
      async (opts: {
        scenario: string;
        policy?: string[];
        duration: string;
        out?: string;
        seed?: string;
        statsInterval: string;
        policyInterval: string;
        json?: boolean;
        param?: string[];
      }) => {
        const durationS = parseDuration(opts.duration);
        const statsIntervalS = Number(opts.statsInterval);
        const policyIntervalS = Number(opts.policyInterval);
        if (!(statsIntervalS > 0) || !(policyIntervalS > 0)) throw new Error('--stats-interval and --policy-interval must be positive numbers');
        const seed = opts.seed === undefined ? undefined : Number(opts.seed);
        if (seed !== undefined && !Number.isInteger(seed)) throw new Error(`--seed must be an integer, got "${opts.seed}"`);
        const loaded = loadScenario(opts.scenario);
        const over = parseParamOverrides(opts.param ?? []);
        const spec = { ...loaded, params: { ...loaded.params, ...over } };
        const policy = opts.policy && opts.policy.length > 0 ? loadPolicyFiles(opts.policy) : null;
        const world = new SimWorld(spec, seed);
        // Open the output before running so that a bad path fails at once.
        const series: SeriesWriter | null = opts.out ? openSeries(opts.out) : null;
        const sampler = new SeriesSampler(world);
        let lastProgress = 0;
        const result = await runSimulated({
          world,
          policy,
          durationS,
          statsIntervalS,
          policyIntervalS,
          onTick: ({ time, hypervisor }) => {
            if (series) {
              const { row, guests } = sampler.sample(hypervisor.balloonActions);
              series.write(row, guests);
            }
            if (time - lastProgress >= 600 || time >= durationS) {
              lastProgress = time;
              process.stderr.write(`sim: ${Math.round(time)} / ${Math.round(durationS)} simulated s\n`);
            }
          },
        });
        if (series) await series.close();
        const header = `scenario ${spec.name ?? opts.scenario} (${spec.guests.length} guests), seed ${world.seed}, policy: ${
          opts.policy?.join(' + ') ?? 'none'
        }; ${durationS} simulated s in ${(result.wallMs / 1000).toFixed(2)} s`;
        if (opts.json) {
          process.stdout.write(
            JSON.stringify({
              scenario: spec.name ?? opts.scenario,
              seed: world.seed,
              duration_s: durationS,
              policy: opts.policy ?? [],
              ...result.metrics,
              balloon_actions: result.balloonActions,
              engine: result.engine,
              wall_ms: Math.round(result.wallMs),
            }) + '\n',
          );
        } else {
          process.stdout.write(summaryLines(result, header).join('\n') + '\n');
          if (opts.out) process.stdout.write(`time series       ${opts.out}\n`);
        }
      },
    );
}
