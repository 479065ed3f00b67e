// `ballast demo` (what `npm start` runs): the daemon's loop on the simulator's 'demo'
// scenario, sped up, with a live view of the host, every guest's balloon and memory use, and
// the latest actions with their reasons. On a terminal the view redraws in place; otherwise
// (a pipe, a test) it prints plain lines: one status line per policy cycle and one line per
// action.
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { defaultConfig } from '../config/schema.js';
import { Daemon } from '../daemon/daemon.js';
import type { ActionRecord, EngineSnapshot } from '../engine/engine.js';
import { alertKey, type AlertEvent } from '../host/alerts.js';
import { createLogger, nullLogger, type Logger } from '../log/logger.js';
import { DaemonApiPort } from '../daemon/port.js';
import { EventLog } from '../api/event-log.js';
import { startServers } from '../api/serve.js';
import { shippedPolicyFile } from '../policy/shipped.js';
import { printable } from '../printable.js';

const MiB = 1024;

function mib(kib: unknown): string {
  return typeof kib === 'number' ? `${Math.round(kib / MiB)}` : '?';
}

function pct(part: unknown, whole: unknown): string {
  return typeof part === 'number' && typeof whole === 'number' && whole > 0 ? `${((100 * part) / whole).toFixed(1)}%` : '?';
}

export function formatAction(a: ActionRecord): string {
  const balloon = a.control === 'balloon_target';
  const what =
    a.result === 'veto'
      ? `asked ${balloon && typeof a.requested === 'number' ? `${mib(a.requested)} MiB` : JSON.stringify(a.requested)}`
      : balloon
        ? `${mib(a.from)} -> ${mib(a.to)} MiB`
        : `${a.from ?? '?'} -> ${a.to ?? 'none'}`;
  const tag = a.result === 'applied' ? '' : ` [${a.result}${a.error ? `: ${a.error}` : ''}]`;
  return printable(`t=${Math.round(a.time)}s ${a.entity} ${a.control} ${what}${tag} (${a.reasons.join('; ')})`);
}

/** One status line: simulated time, host free share, each guest's balloon and used memory. */
export function statusLine(s: EngineSnapshot): string {
  const h = s.host.stats;
  const guests = s.guests.map((g) => {
    const cur = g.stats.balloon_cur;
    const used = typeof cur === 'number' && typeof g.stats.mem_unused === 'number' ? cur - g.stats.mem_unused : null;
    return `${g.name} ${mib(cur)}/${mib(g.stats.balloon_max)} used ${mib(used)}`;
  });
  return printable(`t=${Math.round(s.time)}s cycle ${s.cycle} host free ${pct(h.mem_free, h.mem_available)} | ${guests.join(' | ')}`);
}

/** The full-screen view for a terminal. */
export function renderView(s: EngineSnapshot, title: string, width = 100, alerts: readonly AlertEvent[] = []): string {
  const h = s.host.stats;
  const lines: string[] = [];
  lines.push(`${title} — simulated t=${Math.round(s.time)} s, policy cycle ${s.cycle}${s.policyLoaded ? '' : ' (NO POLICY)'}`);
  lines.push(
    `host: free ${pct(h.mem_free, h.mem_available)} (${mib(h.mem_free)} of ${mib(h.mem_available)} MiB)` +
      `  swap used ${mib(h.swap_usage)} MiB  KSM run=${h.ksm_run ?? '?'} scan=${h.ksm_pages_to_scan ?? '?'} sharing=${mib(typeof h.ksm_pages_sharing === 'number' ? h.ksm_pages_sharing * 4 : null)} MiB`,
  );
  lines.push('');
  lines.push(`${'guest'.padEnd(14)}${'workload'.padEnd(12)}${'balloon MiB'.padStart(16)}${'used MiB'.padStart(10)}  ${'memory'.padEnd(32)} note`);
  for (const g of s.guests) {
    const cur = g.stats.balloon_cur;
    const max = g.stats.balloon_max;
    const used = typeof cur === 'number' && typeof g.stats.mem_unused === 'number' ? cur - g.stats.mem_unused : null;
    const bar = typeof cur === 'number' && typeof max === 'number' && max > 0 ? meter(used ?? 0, cur, max, 32) : ''.padEnd(32);
    const note = g.holdUntil !== undefined ? `backing off until t=${Math.round(g.holdUntil)}s` : g.stale ? `stale: ${g.stale}` : '';
    lines.push(
      `${g.name.slice(0, 13).padEnd(14)}${String(g.props.workload ?? '')
        .slice(0, 11)
        .padEnd(12)}${`${mib(cur)} / ${mib(max)}`.padStart(16)}${mib(used).padStart(10)}  ${bar} ${note}`,
    );
  }
  lines.push('');
  const c = s.counters;
  lines.push(
    `actions ${c.actionsApplied}  vetoes ${c.vetoes}  rollbacks ${c.rollbacks}  errors: policy ${c.policyErrors} controller ${c.controllerErrors} driver ${c.driverErrors}`,
  );
  lines.push(alerts.length ? 'alerts:' : 'alerts: none');
  for (const a of alerts) lines.push(`  ${a.severity.toUpperCase()} ${a.message}`.slice(0, width));
  lines.push('recent actions:');
  for (const a of s.recent.slice(-10)) lines.push('  ' + formatAction(a).slice(0, width - 2));
  // Guest names, workloads and reasons: shown on the terminal, never obeyed by it.
  return lines.map(printable).join('\n');
}

/** used (#) and free (-) memory inside the balloon, the ballooned-out part (.) up to max. */
function meter(used: number, cur: number, max: number, width: number): string {
  const u = Math.max(0, Math.min(width, Math.round((used / max) * width)));
  const c = Math.max(u, Math.min(width, Math.round((cur / max) * width)));
  return '#'.repeat(u) + '-'.repeat(c - u) + '.'.repeat(width - c);
}

export interface DemoOptions {
  scenario: string;
  speed: string;
  duration?: string;
  seed: string;
  policy?: string[];
  statsInterval: string;
  policyInterval: string;
  log?: boolean;
  api?: string;
  momRpc?: string;
  dashboard: string;
}

function positive(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${flag}: expected a positive number, got ${v}`);
  return n;
}

export async function demo(opts: DemoOptions, out: NodeJS.WriteStream = process.stdout): Promise<void> {
  const speed = positive('--speed', opts.speed);
  const duration = opts.duration !== undefined ? positive('--duration', opts.duration) : undefined;
  const seed = Number(opts.seed);
  if (!Number.isInteger(seed)) throw new Error(`--seed: expected an integer, got ${opts.seed}`);
  const policyFiles = opts.policy?.length ? opts.policy : [shippedPolicyFile()];
  for (const f of policyFiles) if (!existsSync(f)) throw new Error(`--policy: no such file: ${f}`);

  const config = defaultConfig();
  config.hypervisor.driver = 'sim';
  config.hypervisor.scenario = opts.scenario;
  config.hypervisor.time_scale = speed;
  config.hypervisor.seed = seed;
  config.engine.stats_interval = positive('--stats-interval', opts.statsInterval);
  config.engine.policy_interval = positive('--policy-interval', opts.policyInterval);
  config.ksm.restore_on_exit = false;
  // The demo's leaky guest should be seen within minutes of simulated time, not half an hour.
  config.alerts.leak_window = 600;
  config.api.socket = opts.api ?? '';
  config.mom_rpc.socket = opts.momRpc ?? '';
  config.dashboard.listen = opts.dashboard === 'off' ? '' : opts.dashboard;

  const tty = !!out.isTTY;
  // The view (or the plain lines) shows every action, rollbacks included; the log would only
  // repeat them, so it gets errors alone (to stderr, not on a terminal) unless --log asks.
  const eventLog = new EventLog();
  const logger: Logger = eventLog.tee(opts.log ? createLogger({ format: 'auto' }) : tty ? nullLogger : createLogger({ level: 'error' }));
  let title = `ballast demo: scenario ${opts.scenario}, x${speed}`;
  let printed = 0;
  let shownAlerts = new Map<string, AlertEvent>();
  const onCycle = (d: Daemon) => {
    const snap = d.engine.snapshot();
    if (tty) {
      out.write('\x1b[H\x1b[2J' + renderView(snap, title, out.columns ?? 100, d.alerts?.active()) + '\n');
      return;
    }
    out.write(statusLine(snap) + '\n');
    // Alerts as they start and clear (the log, at error level here, would not show them).
    const now = new Map((d.alerts?.active() ?? []).map((a) => [alertKey(a), a]));
    for (const [k, a] of now) if (!shownAlerts.has(k)) out.write(`${printable(`  alert ${a.severity}: ${a.message}`)}\n`);
    for (const [k, a] of shownAlerts) if (!now.has(k)) out.write(`${printable(`  alert cleared: ${a.kind} (${a.entity})`)}\n`);
    shownAlerts = now;
    // Print each action once: the engine keeps a bounded list, so count by cycle.
    for (const a of snap.recent) {
      if (a.cycle > printed) out.write('  ' + formatAction(a) + '\n');
    }
    printed = snap.cycle;
  };
  let daemon: Daemon | undefined;
  daemon = await Daemon.create({ config, logger, policyFiles, onCycle: () => onCycle(daemon!) });
  if (tty) out.write('\x1b[?25l'); // hide the cursor while the view redraws
  if (!tty)
    out.write(
      `${title}; policy ${policyFiles.join(', ')}; stats every ${config.engine.stats_interval} s, policy every ${config.engine.policy_interval} s (simulated)\n`,
    );
  const servers = await startServers(config, new DaemonApiPort(daemon, eventLog, logger), logger);
  // Said before the view takes the screen, and again in its title line.
  out.write(servers.dashboardUrl ? `dashboard: ${servers.dashboardUrl}\n` : 'dashboard: off\n');
  for (const u of servers.urls) if (!u.startsWith('dashboard ')) out.write(`listening: ${u}\n`);
  if (servers.dashboardUrl) title += ` — dashboard ${servers.dashboardUrl}`;
  if (config.dashboard.listen && !servers.dashboardUrl)
    out.write(`dashboard: could not listen on ${config.dashboard.listen} (in use?); use --dashboard HOST:PORT or --dashboard off\n`);
  await daemon.start();
  await new Promise<void>((resolveRun) => {
    const finish = (why: string) => {
      process.off('SIGINT', onSig);
      process.off('SIGTERM', onSig);
      if (timer) clearTimeout(timer);
      servers
        .close()
        .then(() => daemon!.stop(why))
        .then(
          () => resolveRun(),
          () => resolveRun(),
        );
    };
    const onSig = (sig: NodeJS.Signals) => finish(`signal ${sig}`);
    process.on('SIGINT', onSig);
    process.on('SIGTERM', onSig);
    const timer = duration !== undefined ? setTimeout(() => finish(`--duration ${duration} s reached`), duration * 1000) : undefined;
  });
  if (tty) out.write('\x1b[?25h');
  const c = daemon.engine.counters;
  out.write(
    `demo stopped after ${c.cycles} policy cycles: ${c.actionsApplied} actions, ${c.vetoes} vetoes, ${c.rollbacks} rollbacks, ${c.policyErrors + c.controllerErrors + c.driverErrors} errors\n`,
  );
}

export function register(program: Command): void {
  program
    .command('demo')
    .description('run ballast on a simulated host with a live view (no root, no VMs)')
    .option('--scenario <name|file>', 'simulator scenario', 'demo')
    .option('--speed <x>', 'simulated seconds per real second', '10')
    .option('--duration <seconds>', 'stop after this many real seconds')
    .option('--seed <n>', 'random seed of the simulated world', '1')
    .option('--policy <file>', 'policy file (repeatable, concatenated in order; default: the shipped default.policy)', (v: string, acc: string[] = []) => [
      ...acc,
      v,
    ])
    .option('--stats-interval <s>', 'simulated seconds between collections', '5')
    .option('--policy-interval <s>', 'simulated seconds between policy cycles', '10')
    .option('--log', 'also write the full action log to stderr')
    .option('--dashboard <host:port|off>', 'serve the dashboard (and /metrics, the read-only API) here', '127.0.0.1:9489')
    .option('--api <path>', 'serve the JSON API on this unix socket (see docs/api.md)')
    .option('--mom-rpc <path>', "serve MOM's XML-RPC (what oVirt's vdsm calls) on this unix socket (see docs/ovirt.md)")
    .action(async (opts: DemoOptions) => {
      await demo(opts);
    });
}
