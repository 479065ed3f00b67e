// ballast as its own process for the libvirt rows (`--via libvirt`): `ballast run` with a
// generated config against the run's libvirtd, the memory domain as its host, the same
// policies and safeguards as the in-process manager of the QMP rows. A process of its own so
// that its CPU time and memory over the window are its own (the QMP rows' manager shares the
// experiment's process, which also tails consoles and samples counters).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { REPO_ROOT } from '../../lab/paths.js';
import { shippedPolicy } from '../../policy/index.js';
import { managerPolicies } from './manager.js';
import { SpawnedManager, type ProcessManagerReport } from './process-manager.js';

export interface BallastProcessConfigOptions {
  /** MOM's style (balloon + KSM policies, basic guards only) or ballast's own. */
  style: 'mom' | 'ballast';
  uri: string;
  socket: string;
  qemuPidDir: string;
  domainDir: string;
  policyDir: string;
  statsIntervalS: number;
  policyIntervalS: number;
  guestPsi: boolean;
  /** Reclaim inside the guests ([reclaim] on). */
  reclaim?: boolean;
}

const q = (s: string) => JSON.stringify(s);

/** The `ballast run` config of a libvirt row (pure). MOM's style is the in-process manager's
 *  MOM_STYLE_SAFEGUARDS as config keys. */
export function ballastProcessConfig(o: BallastProcessConfigOptions): string {
  const mom = o.style === 'mom';
  return `# Written by ballast's lab experiment for one run.
[hypervisor]
driver = "libvirt"
uri = ${q(o.uri)}
socket = ${q(o.socket)}
qemu_pid_dir = ${q(o.qemuPidDir)}
stats_period = ${Math.max(1, Math.floor(o.statsIntervalS))}
guest_psi = ${o.guestPsi}

[engine]
stats_interval = ${o.statsIntervalS}
policy_interval = ${o.policyIntervalS}
policy_dir = ${q(o.policyDir)}

[host]
memory_domain = ${q(o.domainDir)}
${o.reclaim ? '\n[reclaim]\nenabled = true\n' : ''}${
  mom
    ? `
[safeguards]
min_guest_mib = 0
headroom_mib = 0
max_step_percent = 100
rollback_window = 0
cache_step_percent = "off"
cache_stall_percent = "off"
psi_stop_percent = "off"
rollback_psi_percent = "off"
quiet_growth_percent = 0
`
    : ''
}
[api]
socket = ""

[log]
format = "json"
level = "info"
`;
}

export interface BallastLogCounts {
  balloonActions: number;
  rollbacks: number;
  vmemActions: number;
  vmemUnplugs: number;
  /** Reclaims inside guests it asked for and the guests carried out in full. */
  reclaimActions: number;
  errors: number;
  ksmRunSeen: boolean;
}

/** What `ballast run` did, from its JSON log at level info (pure): applied actions are
 *  `action` records (`rollback` for rollbacks); a cycle with more than 16 applied actions
 *  logs them at debug and says how many in a `cycle_summary`. */
export function countBallastLog(text: string): BallastLogCounts {
  const c: BallastLogCounts = { balloonActions: 0, rollbacks: 0, vmemActions: 0, vmemUnplugs: 0, reclaimActions: 0, errors: 0, ksmRunSeen: false };
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    let r: Record<string, unknown>;
    try {
      r = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    if (r.level === 'error') c.errors++;
    if ((r.event === 'action' || r.event === 'rollback') && r.result === 'applied') {
      if (r.control === 'balloon_target') c.balloonActions++;
      if (r.control === 'vmem_target') {
        c.vmemActions++;
        if (typeof r.to === 'number' && typeof r.from === 'number' && r.to < r.from) c.vmemUnplugs++;
      }
      if (r.control === 'cache_target') c.reclaimActions++;
      if (r.event === 'rollback') c.rollbacks++;
      if (r.control === 'ksm_run' && r.to === 1) c.ksmRunSeen = true;
    }
    if (r.event === 'cycle_summary' && r.actions && typeof r.actions === 'object') {
      const a = r.actions as Record<string, number>;
      c.balloonActions += a['balloon_target:applied'] ?? 0;
      c.vmemActions += a['vmem_target:applied'] ?? 0;
      c.reclaimActions += a['cache_target:applied'] ?? 0;
      // A summarised cycle names only its five biggest moves: unplugs among the rest go uncounted.
    }
  }
  return c;
}

/** How to run this checkout's CLI: the built one, or from source when this module is. */
function cliCommand(): { command: string; args: string[] } {
  const fromSource = fileURLToPath(import.meta.url).endsWith('.ts');
  return fromSource
    ? // The loader (tsx) carries over; a test runner's own flags must not.
      { command: process.execPath, args: [...process.execArgv.filter((a) => !a.startsWith('--test')), join(REPO_ROOT, 'src', 'cli', 'main.ts')] }
    : { command: process.execPath, args: [join(REPO_ROOT, 'bin', 'ballast.js')] };
}

export interface BallastProcessOptions extends Omit<BallastProcessConfigOptions, 'policyDir'> {
  vmem: boolean;
  workDir: string;
  /** Guests it must have found before the run goes on. */
  guests: number;
}

export class BallastProcess {
  private constructor(private readonly proc: SpawnedManager) {}

  get pid(): number {
    return this.proc.pid;
  }

  static async start(o: BallastProcessOptions): Promise<BallastProcess> {
    const policyDir = join(o.workDir, 'policies');
    mkdirSync(policyDir, { recursive: true });
    for (const [i, name] of managerPolicies(o.style, o.vmem).entries())
      writeFileSync(join(policyDir, `${10 * (i + 1)}-${name}.policy`), shippedPolicy(name).text);
    const conf = join(o.workDir, 'ballast.toml');
    writeFileSync(conf, ballastProcessConfig({ ...o, policyDir }));
    const cli = cliCommand();
    const proc = await SpawnedManager.start({
      what: 'ballast run',
      command: cli.command,
      args: [...cli.args, 'run', '--config', conf],
      // Its instance lock goes with the run, not in /run/ballast beside a real daemon's.
      env: { ...process.env, BALLAST_RUNTIME_DIR: join(o.workDir, 'runtime') },
      log: join(o.workDir, 'ballast.log'),
      ready: (log) => /"event":"started"/.test(log) && (log.match(/"event":"guest_appeared"/g)?.length ?? 0) >= o.guests,
      readyTimeoutMs: 60_000,
    });
    return new BallastProcess(proc);
  }

  markWindow(): void {
    this.proc.markWindow();
  }

  async stop(): Promise<ProcessManagerReport> {
    const { usage, windowLog, ksmError, exitedEarly } = await this.proc.stop();
    const c = countBallastLog(windowLog);
    return {
      manager: 'ballast',
      pid: this.proc.pid,
      usage,
      balloonActions: c.balloonActions,
      rollbacks: c.rollbacks,
      vmemActions: c.vmemActions,
      vmemUnplugs: c.vmemUnplugs,
      reclaimActions: c.reclaimActions,
      errors: c.errors,
      ksmRunSeen: c.ksmRunSeen,
      ksmRestoreError: ksmError,
      exitedEarly,
      log: this.proc.o.log,
    };
  }

  killNow(): void {
    this.proc.killNow();
  }
}
