// Shared helpers for real-VM lab tests. Several test files (node runs them in parallel
// processes) may use the lab at once, so each session:
//  - names its guests ballast-lab-<group>-N and only ever stops its own,
//  - holds a lease file in /run/ballast-lab/leases while it runs,
//  - stops libvirtd (by PID) on release only if a session of this same process started it,
//    no other lease is held, no domain at all runs on it and no client is connected.
// Lab tests that talk to libvirtd should hold a session (acquireLab) for as long as they do,
// so that no other test file's release stops libvirtd under them.
//
//   const lab = await acquireLab(t, { guests: 2, memMiB: 256 });
//   if (!lab) return;                       // skipped loudly (reason printed)
//   t.after(() => lab.release());
//   ... lab.guests[0].name, lab.consoleOf(name), lab.startQemu({...}) ...
import type { TestContext } from 'node:test';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify as toToml } from 'smol-toml';
import {
  labAvailable,
  ensureLibvirtd,
  stopLibvirtd,
  labLibvirtdPid,
  libvirtdIdle,
  startLabGuests,
  stopLabGuests,
  labGuestSummary,
  startQemuGuest,
  stopQemuGuest,
  RUN_DIR,
  LIBVIRT_URI,
  type LabBuild,
  type LibvirtdHandle,
  type LabGuest,
  type QemuGuest,
  type QemuGuestOptions,
  type ConsoleSummary,
  type StartGuestsOptions,
} from '../../src/lab/index.js';
import { pidAlive, waitFor, withLockFile } from '../../src/lab/proc.js';
import { libvirtdAnswers, LIBVIRTD_PIDFILE } from '../../src/lab/libvirtd.js';

export const LEASE_DIR = join(RUN_DIR, 'leases');

/** Skips a test with a reason nobody can miss. */
export function skipLoudly(t: Pick<TestContext, 'skip'>, reason: string): void {
  console.error(`LAB SKIPPED: ${reason}`);
  t.skip(`LAB SKIPPED: ${reason}`);
}

/** The lab's availability; skips `t` loudly and returns null when the lab cannot run. */
export async function requireLab(t: Pick<TestContext, 'skip'>, o: { libvirt?: boolean } = {}): Promise<{ build: LabBuild } | null> {
  const a = await labAvailable(o);
  if (!a.ok || !a.build) {
    skipLoudly(t, a.reason);
    return null;
  }
  return { build: a.build };
}

export interface LabSession {
  group: string;
  build: LabBuild;
  /** Null when the session was acquired with libvirt: false. */
  libvirtd: LibvirtdHandle | null;
  /** The libvirt guests started for this session (balloon driver bound, workload reporting). */
  guests: LabGuest[];
  qemuGuests: QemuGuest[];
  /** Starts more libvirt guests in this session's group (named ballast-lab-<group>-<suffix>). */
  startGuests(o: Omit<StartGuestsOptions, 'group'>): Promise<LabGuest[]>;
  /** Starts a plain QEMU guest with a QMP socket; stopped on release. */
  startQemu(o: Omit<QemuGuestOptions, 'name'> & { name?: string }): Promise<QemuGuest>;
  consoleOf(nameOrConsolePath: string): ConsoleSummary;
  /** Polls a guest's console until `until` returns a value (not undefined/false); fails after timeoutMs. */
  waitConsole<T>(nameOrConsolePath: string, until: (s: ConsoleSummary) => T | undefined | false, timeoutMs?: number): Promise<T>;
  release(): Promise<void>;
}

/**
 * A plain QEMU guest of `memMiB` that reads a disk of `diskMiB` into its page cache while a small
 * workload loops, for the tests of page cache (floors that know it, reclaim inside the guest);
 * resolves once the whole disk is in its cache. Its QMP socket lives in a temp folder removed
 * after the test.
 */
export async function startCacheGuest(
  t: Pick<TestContext, 'after'>,
  lab: LabSession,
  o: { memMiB: number; diskMiB: number } & Pick<QemuGuestOptions, 'guestAgent' | 'freePageReporting'>,
): Promise<QemuGuest> {
  const dir = mkdtempSync(join(tmpdir(), 'ballast-cache-lab-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const g = await lab.startQemu({
    memMiB: o.memMiB,
    qmpSocket: join(dir, 'g.qmp'),
    workload: 'alloc:32,touch:2,idle:3,loop',
    reportS: 2,
    meminfoS: 1,
    guestAgent: o.guestAgent,
    freePageReporting: o.freePageReporting,
    cacheDiskMiB: o.diskMiB,
    cacheS: 0,
  });
  await lab.waitConsole(g.consoleLog, (s) => s.other.some((l) => l.kind === 'cache' && Number(l.fields.kib) === o.diskMiB * 1024), 180_000);
  return g;
}

export interface AcquireOptions extends Partial<Omit<StartGuestsOptions, 'group' | 'count'>> {
  /** Libvirt guests to boot now (0: none). Default 0. */
  guests?: number;
  /** Start/reuse libvirtd. Default true. */
  libvirt?: boolean;
  /** Group name for this session's guests ([a-z0-9]+); default derived from the PID. */
  group?: string;
}

let sessionCounter = 0;
/** Set when a session of this process started libvirtd: only then may this process stop it. */
let libvirtdStartedHere = false;
const liveSessions = new Set<{ group: string; qemuPids: Set<number> }>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // If a test file dies without releasing, do not leave its guests running.
  process.on('exit', () => {
    for (const s of liveSessions) {
      const list = spawnSync('virsh', ['-q', '-c', LIBVIRT_URI, 'list', '--name'], { encoding: 'utf8' });
      for (const name of (list.stdout ?? '').split('\n').map((l) => l.trim())) {
        if (name.startsWith(`ballast-lab-${s.group}-`)) spawnSync('virsh', ['-q', '-c', LIBVIRT_URI, 'destroy', name]);
      }
      for (const pid of s.qemuPids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      rmSync(join(LEASE_DIR, `${process.pid}-${s.group}`), { force: true });
    }
  });
}

function liveLeases(): string[] {
  let names: string[] = [];
  try {
    names = readdirSync(LEASE_DIR);
  } catch {
    return [];
  }
  return names.filter((n) => {
    const pid = Number.parseInt(n.split('-')[0], 10);
    if (pidAlive(pid)) return true;
    rmSync(join(LEASE_DIR, n), { force: true }); // holder died: the lease is stale
    return false;
  });
}

/**
 * Sets up the lab for a test: image built, libvirtd answering, `guests` libvirt guests booted
 * with their balloon driver loaded. Returns null (after a loud skip) when the lab cannot run.
 */
export async function acquireLab(t: Pick<TestContext, 'skip'>, o: AcquireOptions = {}): Promise<LabSession | null> {
  const libvirt = o.libvirt ?? true;
  const avail = await requireLab(t, { libvirt });
  if (!avail) return null;
  const group = o.group ?? `p${process.pid}n${++sessionCounter}`;
  if (!/^[a-z0-9]+$/.test(group)) throw new Error(`bad lab group ${JSON.stringify(group)}: use a-z and 0-9`);
  mkdirSync(LEASE_DIR, { recursive: true });
  const lease = join(LEASE_DIR, `${process.pid}-${group}`);
  writeFileSync(lease, new Date().toISOString() + '\n');
  const tracked = { group, qemuPids: new Set<number>() };
  liveSessions.add(tracked);
  installExitHook();

  const qemuGuests: QemuGuest[] = [];
  let libvirtd: LibvirtdHandle | null = null;
  const session: LabSession = {
    group,
    build: avail.build,
    libvirtd: null,
    guests: [],
    qemuGuests,
    async startGuests(so) {
      if (!libvirtd) throw new Error('this lab session was acquired without libvirt');
      return startLabGuests({ ...so, group });
    },
    async startQemu(qo) {
      const name = qo.name ?? `${group}-q${qemuGuests.length + 1}`;
      const g = await startQemuGuest({ ...qo, name: name.startsWith(`${group}-`) ? name : `${group}-${name}` });
      qemuGuests.push(g);
      tracked.qemuPids.add(g.pid);
      return g;
    },
    consoleOf: (n) => labGuestSummary(n),
    waitConsole: (n, until, timeoutMs = 60_000) => waitFor(`console of ${n}`, timeoutMs, () => until(labGuestSummary(n)), 250),
    async release() {
      if (!liveSessions.has(tracked)) return;
      liveSessions.delete(tracked);
      for (const g of qemuGuests) await stopQemuGuest(g);
      if (libvirtd) await stopLabGuests({ group });
      rmSync(lease, { force: true });
      // Last one out stops the libvirtd this process started — unless anything still runs on it.
      if (
        libvirtd &&
        libvirtdStartedHere &&
        process.env.BALLAST_LAB_KEEP_LIBVIRTD !== '1' &&
        labLibvirtdPid() !== null &&
        liveLeases().length === 0 &&
        (await libvirtdIdle()).idle
      ) {
        await stopLibvirtd();
        libvirtdStartedHere = false;
      }
    },
  };
  try {
    if (libvirt) {
      libvirtd = await ensureLibvirtd();
      if (libvirtd.startedNow) libvirtdStartedHere = true;
      session.libvirtd = libvirtd;
    }
    if (o.guests) {
      if (!libvirtd) throw new Error('guests under libvirt need libvirt: true');
      session.guests = await startLabGuests({ ...o, count: o.guests, group });
    }
  } catch (e) {
    await session.release();
    throw e;
  }
  return session;
}

/** Tells the fixture that this process (re)started libvirtd itself, so the last session of this
 *  process to release stops it when idle, as if the fixture had started it. */
export function adoptLibvirtd(): void {
  libvirtdStartedHere = true;
}

/** Other lab sessions alive right now (other test processes holding a lease). */
export function otherLeases(): string[] {
  return liveLeases().filter((n) => !n.startsWith(`${process.pid}-`));
}

/** A gap between two polls longer than this counts as this much waiting (see until). */
const MAX_POLL_GAP_MS = 10_000;

/** Polls `f` every 200 ms until it returns something truthy; throws after `ms` of waiting. A gap
 *  of more than 10 s between two polls counts as 10 s: the machine was frozen (seen twice in CI:
 *  a test's daemon ran 50 s of cycles while 160 s passed on the clock), and a freeze must not
 *  use up the wait of what was running fine before and after it. */
export async function until<T>(what: string, ms: number, f: () => Promise<T | null | undefined | false> | T | null | undefined | false): Promise<T> {
  let waited = 0;
  let last = Date.now();
  for (;;) {
    const v = await f();
    if (v) return v;
    const now = Date.now();
    waited += Math.min(now - last, MAX_POLL_GAP_MS);
    last = now;
    if (waited > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** True once no other process holds a lab lease (waits up to 180 s): a test that kills
 *  libvirtd must not do it under another suite's guests. */
export async function othersDone(): Promise<boolean> {
  if (otherLeases().length) console.error(`other lab sessions hold leases (${otherLeases().join(', ')}): waiting up to 180 s before killing libvirtd`);
  return until('other lab sessions to end', 180_000, () => otherLeases().length === 0).then(
    () => true,
    () => false,
  );
}

/**
 * Starts libvirtd again the way the lab does (`libvirtd -d` with the lab's PID file, under the
 * lab's start lock), with its stdio detached. Another suite may have brought it back first:
 * then that one is used.
 */
export async function startLibvirtdAgain(): Promise<void> {
  await withLockFile(join(RUN_DIR, 'libvirtd.lock'), 120_000, async () => {
    if (await libvirtdAnswers()) return;
    const child = spawn('libvirtd', ['-d', '-p', LIBVIRTD_PIDFILE], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d));
    const code = await new Promise<number | null>((r) => child.on('exit', r));
    if (code !== 0 && !(await libvirtdAnswers())) throw new Error(`libvirtd -d exited ${code}: ${stderr.trim()}`);
    // Ours now: the fixture may stop it when the lab is idle at release.
    if (code === 0) adoptLibvirtd();
  });
  await until('libvirtd to answer again', 60_000, () => libvirtdAnswers());
}

type TomlTable = Record<string, string | number | boolean>;

/**
 * Writes DIR/ballast.toml for a lab `ballast run`: the libvirt driver sampled every second,
 * the policy every second from DIR/policies, KSM left alone and a JSON log (spawnDaemon reads
 * it), with each test's own keys merged over those, table by table. Returns its path.
 */
export function writeDaemonConfig(dir: string, sections: Record<string, TomlTable> = {}): string {
  const base: Record<string, TomlTable> = {
    hypervisor: { driver: 'libvirt', stats_period: 1 },
    engine: { stats_interval: 1, policy_interval: 1, policy_dir: join(dir, 'policies') },
    ksm: { enabled: false },
    log: { format: 'json', level: 'info' },
  };
  for (const [name, keys] of Object.entries(sections)) base[name] = { ...base[name], ...keys };
  const path = join(dir, 'ballast.toml');
  writeFileSync(path, toToml(base) + '\n');
  return path;
}

export interface DaemonRun {
  proc: ChildProcess;
  /** Every stderr line, parsed (the config must set log.format = "json"); other lines as { event: 'non-json', line }. */
  logs: Record<string, unknown>[];
  exited: Promise<number | null>;
  logText(): string;
}

/** `ballast run --config FILE` from the source tree, its JSON log collected as it comes. */
export function spawnDaemon(config: string, onRecord?: (rec: Record<string, unknown>) => void): DaemonRun {
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'run', '--config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  const logs: Record<string, unknown>[] = [];
  let buf = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      let rec: Record<string, unknown>;
      try {
        rec = JSON.parse(line) as Record<string, unknown>;
      } catch {
        rec = { event: 'non-json', line };
      }
      logs.push(rec);
      onRecord?.(rec);
    }
  });
  return { proc, logs, exited, logText: () => logs.map((l) => JSON.stringify(l)).join('\n') };
}
