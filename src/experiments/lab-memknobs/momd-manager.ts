// The `momd` row: oVirt MOM's own daemon, from a checkout given with --mom (MOM's code and
// policy files never enter ballast), managing the run's libvirt guests through Debian's
// python3-libvirt, with MOM's shipped balloon and KSM rules (doc/balloon.rules,
// doc/ksm.rules) and the collectors of MOM's doc/mom-balloon+ksm.conf — except that its host
// is the run's memory domain (lab/momd-domain.py, DomainMemory: see there why), as ballast's
// rows have it. Intervals are the experiment's (statistics 2 s, policy 4 s by default), the
// same as the other managers', not MOM's 5 s / 10 s. With --vdsm, the policies are instead
// oVirt vdsm's mom.d as vdsm loads them (momdPolicies).
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { LAB_DIR } from '../../lab/paths.js';
import { run } from '../../lab/proc.js';
import { SpawnedManager, type ProcessManagerReport } from './process-manager.js';

/** Debian's python3: python3-libvirt installs there, whatever python3 comes first on PATH. */
export const MOMD_PYTHON = '/usr/bin/python3';
/** MOM's files the row needs from the checkout. */
const MOM_FILES = ['momd.in', 'mom/__init__.py', 'mom/HypervisorInterfaces/libvirtInterface.py', 'doc/balloon.rules', 'doc/ksm.rules'];

/** Refuses (before anything is set up) a --mom path that is no MOM checkout (sync). */
export function checkMomCheckout(path: string | undefined): string {
  if (!path) throw new Error("the momd row runs MOM's own daemon: give a MOM checkout with --mom PATH (git clone https://github.com/oVirt/mom)");
  const root = resolve(path);
  const missing = MOM_FILES.filter((f) => !existsSync(join(root, f)));
  if (missing.length) throw new Error(`--mom ${path}: not a MOM checkout (no ${missing.join(', ')})`);
  return root;
}

/** vdsm's MOM policies (static/etc/vdsm/mom.d) the row loads: its defines, parameters, balloon
 *  and KSM rules. Not 04-cputune and 05-iotune: their inputs (vcpu_user_limit, the disks' IO
 *  limits) come from vdsm's own hypervisor interface, which MOM's libvirt interface lacks. */
export const VDSM_POLICIES = ['00-defines', '01-parameters', '02-balloon', '03-ksm'] as const;
const VDSM_MOMD = 'static/etc/vdsm/mom.d';

/** What vdsm puts in place of mom.d's 01-parameters (which ships balloonEnabled 0) over MOM's
 *  RPC, setNamedPolicy('01-parameters', ...), for a cluster with memory balloon optimization
 *  and KSM on. */
export const VDSM_TUNING = '(set balloonEnabled True)\n(set ksmEnabled True)\n(set ksmMergeAcrossNodes True)\n';

/** Refuses (before anything is set up) a --vdsm path that is no vdsm checkout (sync). */
export function checkVdsmCheckout(path: string): string {
  const root = resolve(path);
  const missing = VDSM_POLICIES.map((n) => `${VDSM_MOMD}/${n}.policy`).filter((f) => !existsSync(join(root, f)));
  if (missing.length) throw new Error(`--vdsm ${path}: not a vdsm checkout (no ${missing.join(', ')})`);
  return root;
}

/** momd's policy directory (pure): files linked from the checkouts (never copied into ballast)
 *  and files written. MOM joins a directory's policies in name order into one program; with
 *  vdsm's, 01-parameters is what vdsm sets in its place once it has connected. */
export function momdPolicies(mom: string, vdsm?: string): { links: { from: string; name: string }[]; written: { name: string; text: string }[] } {
  if (!vdsm) {
    return {
      links: [
        { from: join(mom, 'doc', 'balloon.rules'), name: '10-balloon.policy' },
        { from: join(mom, 'doc', 'ksm.rules'), name: '20-ksm.policy' },
      ],
      written: [],
    };
  }
  return {
    links: VDSM_POLICIES.filter((n) => n !== '01-parameters').map((n) => ({ from: join(vdsm, VDSM_MOMD, `${n}.policy`), name: `${n}.policy` })),
    written: [{ name: '01-parameters.policy', text: VDSM_TUNING }],
  };
}

/** The checkouts a lab experiment's momd row runs from, checked before anything is set up:
 *  MOM's when the configs name momd (and Debian's python3 with libvirt), vdsm's when given. */
export async function momdCheckouts(configs: readonly string[], o: { mom?: string; vdsm?: string }): Promise<{ mom?: string; vdsm?: string }> {
  const mom = configs.includes('momd') ? checkMomCheckout(o.mom) : undefined;
  if (mom) await checkMomdPython();
  const vdsm = o.vdsm ? checkVdsmCheckout(o.vdsm) : undefined;
  if (vdsm && !mom) throw new Error('--vdsm gives the momd row its policies: name momd in --configs and give --mom');
  return { mom, vdsm };
}

/** Refuses when Debian's python3 cannot import libvirt, with the fix. */
export async function checkMomdPython(): Promise<void> {
  const r = await run(MOMD_PYTHON, ['-c', 'import libvirt'], { timeoutMs: 30_000 }).catch((e: Error) => ({ code: -1, stdout: '', stderr: e.message }));
  if (r.code !== 0)
    throw new Error(`momd needs libvirt's Python bindings for ${MOMD_PYTHON}: apt-get install -y python3-libvirt (${r.stderr.trim().split('\n').at(-1)})`);
}

/** The commit of the MOM checkout (git HEAD, with "+changes" when its tree differs). */
export async function momCommit(root: string): Promise<string> {
  const head = await run('git', ['-C', root, 'rev-parse', 'HEAD'], { timeoutMs: 15_000 }).catch(() => null);
  if (head?.code !== 0) return 'unknown (not a git checkout)';
  const dirty = await run('git', ['-C', root, 'status', '--porcelain', '--untracked-files=no'], { timeoutMs: 15_000 }).catch(() => null);
  return head.stdout.trim() + (dirty && dirty.code === 0 && dirty.stdout.trim() ? '+changes' : '');
}

export interface MomdConfigOptions {
  uri: string;
  domainDir: string;
  policyDir: string;
  statsIntervalS: number;
  policyIntervalS: number;
}

/** momd's config file (pure): MOM's doc/mom-balloon+ksm.conf settings, the lab's libvirtd,
 *  the experiment's intervals, the domain as the host. */
export function momdConfig(o: MomdConfigOptions): string {
  const s = Math.max(1, Math.round(o.statsIntervalS));
  const p = Math.max(1, Math.round(o.policyIntervalS));
  return `# Written by ballast's lab experiment for one run of oVirt MOM's momd.
[main]
main-loop-interval: 5
host-monitor-interval: ${s}
guest-monitor-interval: ${s}
guest-manager-interval: ${s}
hypervisor-interface: libvirt
libvirt-hypervisor-uri: ${o.uri}
policy-engine-interval: ${p}
controllers: Balloon, KSM
sample-history-length: 10
plot-dir:
rpc-port: -1
policy:
policy-dir: ${o.policyDir}
guest-manager-multi-thread: true

[logging]
log: stdio
verbosity: info

[host]
collectors: DomainMemory, HostKSM

[guest]
collectors: GuestQemuProc, GuestMemory, GuestBalloon

[Collector: DomainMemory]
domain: ${o.domainDir}
`;
}

export interface MomdLogCounts {
  balloonActions: number;
  ksmUpdates: number;
  /** A KSM update switched ksmd on. */
  ksmRunSeen: boolean;
  errors: number;
}

/** What momd did, from its log lines (pure): MOM's Balloon controller logs every target it
 *  sets ("Ballooning guest:NAME from A to B"), its KSM controller every change. */
export function countMomdLog(text: string): MomdLogCounts {
  let balloonActions = 0;
  let ksmUpdates = 0;
  let errors = 0;
  let ksmRunSeen = false;
  for (const line of text.split('\n')) {
    if (/ - mom\.Controllers\.Balloon - INFO - Ballooning guest:/.test(line)) balloonActions++;
    else if (/ - mom\.Controllers\.KSM - INFO - Updating KSM configuration/.test(line)) {
      ksmUpdates++;
      if (/'run': 1\b/.test(line)) ksmRunSeen = true;
    } else if (/ - (ERROR|CRITICAL) - |^Traceback /.test(line)) errors++;
  }
  return { balloonActions, ksmUpdates, ksmRunSeen, errors };
}

export interface MomdOptions {
  mom: string;
  uri: string;
  domainDir: string;
  statsIntervalS: number;
  policyIntervalS: number;
  /** A checkout of oVirt vdsm: its mom.d policies instead of MOM's doc/ rules. */
  vdsm?: string;
  /** A directory of the run's own for the config, the policy links and the log. */
  workDir: string;
  /** Guests momd must have found before the run goes on. */
  guests: number;
}

export class MomdManager {
  private constructor(
    private readonly proc: SpawnedManager,
    readonly commit: string,
    /** The vdsm checkout's commit, when its mom.d is the policy. */
    readonly vdsmCommit?: string,
  ) {}

  get pid(): number {
    return this.proc.pid;
  }

  static async start(o: MomdOptions): Promise<MomdManager> {
    const root = checkMomCheckout(o.mom);
    await checkMomdPython();
    const commit = await momCommit(root);
    const policyDir = join(o.workDir, 'policies');
    mkdirSync(policyDir, { recursive: true });
    // momd's policy-dir loads *.policy in name order: MOM's (or vdsm's) rules, linked, never copied.
    const vdsm = o.vdsm ? checkVdsmCheckout(o.vdsm) : undefined;
    const policies = momdPolicies(root, vdsm);
    for (const l of policies.links) symlinkSync(l.from, join(policyDir, l.name));
    for (const w of policies.written) writeFileSync(join(policyDir, w.name), w.text);
    const conf = join(o.workDir, 'mom.conf');
    writeFileSync(conf, momdConfig({ ...o, policyDir }));
    const proc = await SpawnedManager.start({
      what: 'momd',
      command: MOMD_PYTHON,
      args: ['-u', join(LAB_DIR, 'momd-domain.py'), root, '-c', conf],
      log: join(o.workDir, 'momd.log'),
      // Each guest gets a GuestMonitor thread once the guest manager lists it.
      ready: (log) => (log.match(/GuestMonitor-\S+ starting/g)?.length ?? 0) >= o.guests,
      readyTimeoutMs: 60_000,
    });
    return new MomdManager(proc, commit, vdsm ? await momCommit(vdsm) : undefined);
  }

  markWindow(): void {
    this.proc.markWindow();
  }

  async stop(): Promise<ProcessManagerReport> {
    const { usage, windowLog, ksmError, exitedEarly } = await this.proc.stop();
    const c = countMomdLog(windowLog);
    return {
      manager: 'momd',
      pid: this.proc.pid,
      usage,
      balloonActions: c.balloonActions,
      rollbacks: null,
      vmemActions: null,
      vmemUnplugs: null,
      errors: c.errors,
      ksmRunSeen: c.ksmRunSeen,
      ksmRestoreError: ksmError,
      exitedEarly,
      momCommit: this.commit,
      vdsmCommit: this.vdsmCommit,
      log: this.proc.o.log,
    };
  }

  killNow(): void {
    this.proc.killNow();
  }
}
