// `ballast run --config FILE`: the daemon. Runs until SIGTERM or SIGINT, then stops cleanly
// (see src/engine/daemon.ts); a second signal exits at once.
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { loadConfigFile } from '../config/load.js';
import { Daemon } from '../engine/daemon.js';
import { createLogger, isLogLevel, type LogFormat } from '../log/logger.js';
import { DaemonApiPort } from '../api/daemon-port.js';
import { EventLog } from '../api/event-log.js';
import { startServers, tokensOf, type Servers } from '../api/serve.js';
import { smallHeap } from './heap.js';

interface RunOptions {
  config: string;
  logFormat?: string;
  logLevel?: string;
  policyDir?: string;
}

export async function run(opts: RunOptions): Promise<void> {
  const config = loadConfigFile(opts.config);
  if (opts.policyDir) config.engine.policy_dir = resolve(opts.policyDir);
  const format = (opts.logFormat ?? config.log.format) as LogFormat;
  if (!['auto', 'json', 'text'].includes(format)) throw new Error(`--log-format: expected auto, json or text, got ${format}`);
  const level = opts.logLevel ?? config.log.level;
  if (!isLogLevel(level)) throw new Error(`--log-level: expected debug, info, warn or error, got ${level}`);
  // Token files are read now so that a bad one fails the start, not a request later.
  tokensOf(config);
  // What the log says also feeds the API's event list.
  const eventLog = new EventLog();
  const logger = eventLog.tee(createLogger({ format, level }));
  // main.ts set the small-heap flags before loading any module (`ballast run`); set them
  // again for callers that did not come through main.ts, or take them back.
  smallHeap(config.engine.small_heap);
  const daemon = await Daemon.create({ config, logger });
  let servers: Servers | undefined;
  await new Promise<void>((done, fail) => {
    let signalled = false;
    const onSignal = (sig: NodeJS.Signals) => {
      if (signalled) {
        logger.error('forced_exit', { signal: sig, reason: 'second signal during shutdown' });
        process.exit(1);
      }
      signalled = true;
      (servers?.close() ?? Promise.resolve()).then(() => daemon.stop(`signal ${sig}`)).then(() => {
        process.off('SIGTERM', onSignal);
        process.off('SIGINT', onSignal);
        done();
      }, fail);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    startServers(config, new DaemonApiPort(daemon, eventLog, logger), logger)
      .then((s) => {
        servers = s;
        return daemon.start();
      })
      .catch(fail);
  });
}

export function register(program: Command): void {
  program
    .command('run')
    .description('run the daemon: collect, evaluate the policies, act on balloons, KSM and cgroups (stop with SIGTERM/SIGINT)')
    .requiredOption('-c, --config <file>', 'TOML configuration (see examples/ballast.toml)')
    .option('--policy-dir <dir>', 'override engine.policy_dir')
    .option('--log-format <format>', 'auto | json | text (overrides log.format)')
    .option('--log-level <level>', 'debug | info | warn | error (overrides log.level)')
    .action(async (opts: RunOptions) => {
      await run(opts);
    });
}
