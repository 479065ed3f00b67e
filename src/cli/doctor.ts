// `ballast doctor`: checks this host for what ballast needs (hypervisor reachable, guests'
// balloons, KSM, THP, cgroups, swap, PSI) and prints each problem with its fix. Exit 1 when
// something blocks ballast, so a deployment can gate on it; warnings alone exit 0.
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { loadConfigFile, parseConfigObject } from '../config/load.js';
import { loadMomConfigFile } from '../config/mom-conf.js';
import { defaultConfig, type Config } from '../config/schema.js';
import { countByStatus, exitCodeOf, runDoctor } from '../doctor/index.js';
import { formatDoctor } from '../doctor/format.js';

/** Where the shipped systemd unit points `ballast run` (contrib/ballast.service). */
const INSTALLED_CONFIG = '/etc/ballast/ballast.toml';

interface DoctorOptions {
  config?: string;
  momConfig?: string;
  json?: boolean;
  root: string;
  timeout: string;
}

/** The config as `ballast run` reads it; with neither option, the installed one if there is
 *  one (the doctor is most often asked about the daemon the unit starts), else the defaults. */
function readConfig(opts: DoctorOptions): { config: Config; source: string } {
  const mom = opts.momConfig ? loadMomConfigFile(opts.momConfig) : undefined;
  if (opts.config) return { config: loadConfigFile(opts.config, mom?.raw), source: opts.config };
  if (mom) return { config: parseConfigObject(mom.raw, opts.momConfig), source: opts.momConfig! };
  if (existsSync(INSTALLED_CONFIG)) return { config: loadConfigFile(INSTALLED_CONFIG), source: INSTALLED_CONFIG };
  return { config: defaultConfig(), source: 'defaults' };
}

export async function doctor(opts: DoctorOptions): Promise<void> {
  const timeoutMs = Number(opts.timeout) * 1000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new Error(`--timeout must be a positive number of seconds, not "${opts.timeout}"`);
  const { config, source } = readConfig(opts);
  const results = await runDoctor(config, { root: opts.root, timeoutMs });
  const code = exitCodeOf(results);
  if (opts.json) {
    const out = { config: source, driver: config.hypervisor.driver, ok: code === 0, counts: countByStatus(results), results };
    process.stdout.write(JSON.stringify(out, null, 2) + '\n');
  } else {
    process.stdout.write(formatDoctor(results, `ballast doctor: hypervisor.driver = ${config.hypervisor.driver}, config: ${source}`));
  }
  // exitCode, not exit(): stdout may still be draining into a pipe.
  process.exitCode = code;
}

export function register(program: Command): void {
  program
    .command('doctor')
    .description('check this host for what ballast needs and print each problem with its fix (exit 1 when something blocks ballast)')
    .option('-c, --config <file>', `TOML configuration, as for \`ballast run\` (default: ${INSTALLED_CONFIG} if present, else the defaults)`)
    .option('--mom-config <file>', "MOM's mom.conf, as for `ballast run`")
    .option('--json', 'machine-readable output')
    .option('--root <dir>', 'read /proc and /sys under this directory (for recorded trees)', '/')
    .option('--timeout <seconds>', 'give up on the hypervisor after this long', '3')
    .action(async (opts: DoctorOptions) => {
      await doctor(opts);
    });
}
