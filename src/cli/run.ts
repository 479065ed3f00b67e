// `ballast run --config FILE`: the daemon. Runs until SIGTERM or SIGINT, then stops cleanly
// (see src/daemon/daemon.ts); a second signal exits at once.
import { errorMessage } from '../errors.js';
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { loadConfigFile, parseConfigObject } from '../config/load.js';
import { loadMomConfigFile } from '../config/mom-conf.js';
import { Daemon } from '../daemon/daemon.js';
import { createLogger, isLogLevel, type LogFormat } from '../log/logger.js';
import { DaemonApiPort } from '../daemon/port.js';
import { EventLog } from '../api/event-log.js';
import { startServers, tokensOf, type Servers } from '../api/serve.js';
import { smallHeap } from './heap.js';
import { checkTokenFiles } from '../config/secret-file.js';
import { defaultRuntimeDir, lockFor } from '../daemon/instance-lock.js';

interface RunOptions {
  config?: string;
  momConfig?: string;
  logFormat?: string;
  logLevel?: string;
  policyDir?: string;
}

/** The config as `ballast run` reads it (and reads it again on SIGHUP). */
function readConfig(opts: RunOptions) {
  // A MOM config first; a ballast TOML, when given too, is laid over it.
  const mom = opts.momConfig ? loadMomConfigFile(opts.momConfig) : undefined;
  const config = opts.config ? loadConfigFile(opts.config, mom?.raw) : parseConfigObject(mom!.raw, opts.momConfig);
  if (opts.policyDir) config.engine.policy_dir = resolve(opts.policyDir);
  return { mom, config };
}

export async function run(opts: RunOptions): Promise<void> {
  if (!opts.config && !opts.momConfig) throw new Error("give --config FILE (ballast TOML) or --mom-config FILE (MOM's mom.conf), or both");
  const { mom, config } = readConfig(opts);
  const format = (opts.logFormat ?? config.log.format) as LogFormat;
  if (!['auto', 'json', 'text'].includes(format)) throw new Error(`--log-format: expected auto, json or text, got ${format}`);
  const level = opts.logLevel ?? config.log.level;
  if (!isLogLevel(level)) throw new Error(`--log-level: expected debug, info, warn or error, got ${level}`);
  // Token files are read now so that a bad one fails the start, not a request later.
  checkTokenFiles(config);
  tokensOf(config);
  // Before anything is touched: a second daemon on the same hypervisor stops here.
  const lock = lockFor(config);
  // What the log says also feeds the API's event list.
  const eventLog = new EventLog();
  const logger = eventLog.tee(createLogger({ format, level }));
  // main.ts set the small-heap flags before loading any module (`ballast run`); set them
  // again for callers that did not come through main.ts, or take them back.
  smallHeap(config.engine.small_heap);
  for (const note of mom?.notes ?? []) logger.info('mom_config', { file: opts.momConfig, note });
  // The simulator's KSM is its own: only a real host's state needs to outlive a crash.
  const stateDir = config.hypervisor.driver === 'sim' ? undefined : defaultRuntimeDir();
  const daemon = await Daemon.create({ config, logger, policyFiles: mom?.policyFiles, stateDir });
  let servers: Servers | undefined;
  await new Promise<void>((done, fail) => {
    let signalled = false;
    const stopSignals: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGQUIT'];
    const onStop = (sig: NodeJS.Signals) => {
      if (signalled) {
        logger.error('forced_exit', { signal: sig, reason: 'second signal during shutdown' });
        process.exit(1);
      }
      signalled = true;
      (servers?.close() ?? Promise.resolve())
        .then(() => daemon.stop(`signal ${sig}`))
        .then(() => {
          lock?.release();
          for (const s of stopSignals) process.off(s, onStop);
          process.off('SIGHUP', onReload);
          done();
        }, fail);
    };
    // A daemon's usual answer to SIGHUP: read the config and the policies again. A config
    // that does not load is refused whole (every bad key named) and the running one stays.
    const onReload = () => {
      logger.info('signal', { signal: 'SIGHUP', reason: 'reloading the config and the policies' });
      try {
        const next = readConfig(opts).config;
        const { applied, restartNeeded } = daemon.applyConfig(next);
        if (applied.includes('log.level') && opts.logLevel === undefined && isLogLevel(next.log.level)) logger.setLevel?.(next.log.level);
        logger.info('config_reloaded', {
          applied,
          restart_needed: restartNeeded.length ? restartNeeded : undefined,
          reason: restartNeeded.length ? 'these keys keep their running values until a restart' : undefined,
        });
      } catch (err) {
        logger.error('config_refused', { error: errorMessage(err), reason: 'the running config stays in force' });
      }
      daemon.watcher.reload();
    };
    for (const s of stopSignals) process.on(s, onStop);
    process.on('SIGHUP', onReload);
    for (const s of ['SIGUSR1', 'SIGUSR2'] as const)
      process.on(s, () => logger.info('signal', { signal: s, reason: 'ignored (SIGUSR1 does not open a debugger here)' }));
    startServers(config, new DaemonApiPort(daemon, eventLog, logger), logger)
      .then((s) => {
        servers = s;
        return signalled ? undefined : daemon.start();
      })
      .catch(fail);
  });
  // Stopped: whatever a hung peer still holds open must not keep the process alive.
  setTimeout(() => process.exit(process.exitCode ?? 0), 2000).unref();
}

export function register(program: Command): void {
  program
    .command('run')
    .description('run the daemon: collect, evaluate the policies, act on balloons, KSM and cgroups (stop with SIGTERM/SIGINT)')
    .option('-c, --config <file>', 'TOML configuration (see examples/ballast.toml)')
    .option('--mom-config <file>', "MOM's mom.conf, as momd -c reads it (see docs/ovirt.md); with --config, the TOML's keys win")
    .option('--policy-dir <dir>', 'override engine.policy_dir')
    .option('--log-format <format>', 'auto | json | text (overrides log.format)')
    .option('--log-level <level>', 'debug | info | warn | error (overrides log.level)')
    .action(async (opts: RunOptions) => {
      await run(opts);
    });
}
