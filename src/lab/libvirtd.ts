// libvirtd for the lab: reuse one that answers, else start `libvirtd -d` ourselves (there is
// no service manager on the lab machines) and stop it later by its PID — never by name.
import { connect } from 'node:net';
import { existsSync, mkdirSync, readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { LIBVIRT_SOCK, LIBVIRT_URI, QEMU_CONF, RUN_DIR } from './paths.js';
import { killPid, pidAlive, pidComm, readPidFile, run, runOk, waitFor, withLockFile } from './proc.js';

export const LIBVIRTD_PIDFILE = join(RUN_DIR, 'libvirtd.pid');
const LIBVIRTD_LOG = '/var/log/libvirt/libvirtd.log';

export interface LibvirtdHandle {
  pid: number | null;
  /** True when this libvirtd was started by the ballast lab (its PID is in our PID file), so the
   *  lab may stop it. False for a libvirtd run by a service manager or someone else. */
  startedByUs: boolean;
  /** True when this very call started it. */
  startedNow: boolean;
}

/**
 * qemu.conf settings the lab needs from a libvirtd it starts: QEMU runs as root so it can read
 * the lab's kernel/initramfs wherever the repo lives, and QEMU's stdio goes to plain files so no
 * virtlogd is needed.
 */
export const LAB_QEMU_CONF: Record<string, string> = {
  user: '"root"',
  group: '"root"',
  stdio_handler: '"file"',
};

/**
 * Sets `key = value` lines in a libvirt config text: an active (uncommented) line for the key is
 * replaced in place, a missing key is appended. Pure; returns whether anything changed.
 */
export function mergeConfSettings(text: string, settings: Record<string, string>): { text: string; changed: boolean } {
  const lines = text.length ? text.replace(/\n$/, '').split('\n') : [];
  let changed = false;
  for (const [key, value] of Object.entries(settings)) {
    const want = `${key} = ${value}`;
    const re = new RegExp(`^\\s*${key}\\s*=`);
    const idx = lines.findIndex((l) => re.test(l));
    if (idx === -1) {
      lines.push(want);
      changed = true;
    } else if (lines[idx].replace(/\s+/g, ' ').trim() !== want) {
      lines[idx] = want;
      changed = true;
    }
  }
  return { text: lines.join('\n') + '\n', changed };
}

/** True when something accepts connections on libvirtd's socket. */
export function libvirtSocketAccepts(path = LIBVIRT_SOCK, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    if (!existsSync(path)) return resolve(false);
    const s = connect(path);
    const timer = setTimeout(() => {
      s.destroy();
      resolve(false);
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.end();
      resolve(true);
    });
    s.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}

/** True when libvirtd answers a real request on qemu:///system (its QEMU driver is up). */
export async function libvirtdAnswers(): Promise<boolean> {
  if (!(await libvirtSocketAccepts())) return false;
  try {
    const r = await run('virsh', ['-q', '-c', LIBVIRT_URI, 'uri'], { timeoutMs: 15_000 });
    return r.code === 0;
  } catch {
    return false;
  }
}

/** The PID of the libvirtd the lab started, if it is still alive. */
export function labLibvirtdPid(): number | null {
  const pid = readPidFile(LIBVIRTD_PIDFILE);
  return pid !== null && pidAlive(pid) && pidComm(pid) === 'libvirtd' ? pid : null;
}

function otherLibvirtdPid(): number | null {
  for (const f of ['/run/libvirtd.pid', '/var/run/libvirtd.pid']) {
    const pid = readPidFile(f);
    if (pid !== null && pidAlive(pid) && pidComm(pid) === 'libvirtd') return pid;
  }
  return null;
}

/** Host preparation a service manager's package scripts would normally have done. */
async function prepareHost(): Promise<void> {
  mkdirSync(RUN_DIR, { recursive: true });
  for (const d of ['/var/log/libvirt/qemu', '/var/lib/libvirt/qemu', '/var/cache/libvirt/qemu']) mkdirSync(d, { recursive: true });
  // libvirtd's QEMU driver resolves its compiled-in user before it reads qemu.conf, so the
  // account must exist even though qemu.conf makes QEMU run as root.
  if ((await run('getent', ['group', 'libvirt-qemu'])).code !== 0) await runOk('groupadd', ['--system', 'libvirt-qemu']);
  if ((await run('getent', ['passwd', 'libvirt-qemu'])).code !== 0) {
    await runOk('useradd', [
      '--system',
      '--no-create-home',
      '--home-dir',
      '/var/lib/libvirt',
      '--shell',
      '/usr/sbin/nologin',
      '-g',
      'libvirt-qemu',
      'libvirt-qemu',
    ]);
  }
  const old = existsSync(QEMU_CONF) ? readFileSync(QEMU_CONF, 'utf8') : '';
  const merged = mergeConfSettings(old, LAB_QEMU_CONF);
  if (merged.changed) {
    if (old && !existsSync(QEMU_CONF + '.ballast-orig')) copyFileSync(QEMU_CONF, QEMU_CONF + '.ballast-orig');
    mkdirSync('/etc/libvirt', { recursive: true });
    writeFileSync(QEMU_CONF, merged.text);
    process.stderr.write(`lab: set ${Object.keys(LAB_QEMU_CONF).join(', ')} in ${QEMU_CONF}\n`);
  }
}

function logTail(): string {
  try {
    return readFileSync(LIBVIRTD_LOG, 'utf8').trim().split('\n').slice(-8).join('\n');
  } catch {
    return '(no libvirtd log)';
  }
}

async function startOurs(): Promise<number> {
  await prepareHost();
  if (process.getuid && process.getuid() !== 0) throw new Error('starting libvirtd for qemu:///system needs root');
  process.stderr.write('lab: starting libvirtd -d\n');
  // `-d` forks; the daemon writes its own PID to the file once it runs.
  const r = await run('libvirtd', ['-d', '-p', LIBVIRTD_PIDFILE], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`libvirtd -d failed (exit ${r.code}): ${r.stderr.trim()}\n${logTail()}`);
  const started = Date.now();
  try {
    await waitFor(
      'libvirtd to answer on ' + LIBVIRT_SOCK,
      90_000,
      async () => {
        const pid = readPidFile(LIBVIRTD_PIDFILE);
        if (pid !== null && !pidAlive(pid)) throw new Error('libvirtd exited during startup');
        return (await libvirtdAnswers()) && pid !== null;
      },
      200,
    );
  } catch (e) {
    const pid = labLibvirtdPid();
    if (pid !== null) await killPid(pid);
    throw new Error(`${(e as Error).message}; libvirtd log:\n${logTail()}`);
  }
  const pid = labLibvirtdPid();
  if (pid === null) throw new Error(`libvirtd answers but its PID file ${LIBVIRTD_PIDFILE} names no live libvirtd`);
  process.stderr.write(`lab: libvirtd PID ${pid} answers after ${Date.now() - started} ms\n`);
  return pid;
}

/**
 * Makes sure a libvirtd answers on qemu:///system. Reuses a running one; otherwise starts
 * `libvirtd -d` with PID file /run/ballast-lab/libvirtd.pid. Safe to call from several
 * processes at once (a lock file serialises the start). To bring back a libvirtd you killed,
 * call this (or restartLibvirtd) rather than running `libvirtd -d` yourself.
 */
export async function ensureLibvirtd(opts: { killedGraceMs?: number } = {}): Promise<LibvirtdHandle> {
  mkdirSync(RUN_DIR, { recursive: true });
  if (await libvirtdAnswers()) {
    const ours = labLibvirtdPid();
    return { pid: ours ?? otherLibvirtdPid(), startedByUs: ours !== null, startedNow: false };
  }
  // A PID file naming a dead process means our libvirtd was killed (a clean stop removes the
  // file), most likely by a test that is about to start it again: give it time to, rather than
  // race it with a second `libvirtd -d`.
  const dead = readPidFile(LIBVIRTD_PIDFILE);
  if (dead !== null && !pidAlive(dead)) {
    const until = Date.now() + (opts.killedGraceMs ?? 15_000);
    while (Date.now() < until && !(await libvirtdAnswers())) await new Promise((r) => setTimeout(r, 250));
    if (await libvirtdAnswers()) {
      const ours = labLibvirtdPid();
      return { pid: ours ?? otherLibvirtdPid(), startedByUs: ours !== null, startedNow: false };
    }
  }
  return withLockFile(join(RUN_DIR, 'libvirtd.lock'), 180_000, async () => {
    if (await libvirtdAnswers()) {
      const ours = labLibvirtdPid();
      return { pid: ours ?? otherLibvirtdPid(), startedByUs: ours !== null, startedNow: false };
    }
    const stale = labLibvirtdPid();
    if (stale !== null) {
      // Our libvirtd is alive but does not answer (hung): replace it.
      process.stderr.write(`lab: libvirtd PID ${stale} does not answer; stopping it\n`);
      await killPid(stale);
    } else if (otherLibvirtdPid() !== null) {
      throw new Error(`a libvirtd not started by the lab (PID ${otherLibvirtdPid()}) runs but does not answer on ${LIBVIRT_SOCK}`);
    }
    const pid = await startOurs();
    return { pid, startedByUs: true, startedNow: true };
  });
}

/** Stops the libvirtd the lab started (by its PID). Returns false when there was none; a
 *  libvirtd the lab did not start is never touched. Running guests survive (QEMU outlives it). */
export async function stopLibvirtd(): Promise<boolean> {
  const pid = labLibvirtdPid();
  if (pid === null) return false;
  process.stderr.write(`lab: stopping libvirtd PID ${pid}\n`);
  await killPid(pid, 15_000);
  return true;
}

/** Kills the lab's libvirtd by PID and starts it again (for tests of reconnection). */
export async function restartLibvirtd(opts: { downMs?: number } = {}): Promise<LibvirtdHandle> {
  const pid = labLibvirtdPid();
  if (pid === null) {
    if (await libvirtdAnswers()) throw new Error('the running libvirtd was not started by the lab; refusing to restart it');
  } else {
    await killPid(pid, 15_000);
  }
  if (opts.downMs) await new Promise((r) => setTimeout(r, opts.downMs));
  return ensureLibvirtd({ killedGraceMs: 0 });
}

/** Clients connected to libvirtd right now (virt-admin over the admin socket, which does not
 *  count itself); null when that cannot be read. */
export async function libvirtdClientCount(): Promise<number | null> {
  try {
    const r = await run('virt-admin', ['-q', 'srv-clients-list', 'libvirtd'], { timeoutMs: 10_000 });
    if (r.code !== 0) return null;
    return r.stdout.split('\n').filter((l) => /^\s*\d+\s/.test(l)).length;
  } catch {
    return null;
  }
}

/**
 * True when nobody uses libvirtd: no domain runs on it and no client is connected. The lab
 * stops (or restarts) a libvirtd only then, so other tests' connections are never cut.
 */
export async function libvirtdIdle(): Promise<{ idle: boolean; why: string }> {
  const list = await run('virsh', ['-q', '-c', LIBVIRT_URI, 'list', '--name'], { timeoutMs: 15_000 });
  if (list.code !== 0) return { idle: false, why: `virsh list failed: ${list.stderr.trim()}` };
  const running = list.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  if (running.length) return { idle: false, why: `running domains: ${running.join(', ')}` };
  const clients = await libvirtdClientCount();
  if (clients === null) return { idle: false, why: 'cannot list libvirtd clients (virt-admin)' };
  if (clients > 0) return { idle: false, why: `${clients} client(s) connected` };
  return { idle: true, why: '' };
}
