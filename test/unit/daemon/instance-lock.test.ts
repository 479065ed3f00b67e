// Operator mistakes `ballast run` must catch at start: a second daemon on the same hypervisor
// (two managers would fight over every balloon), a token file other users can read, and
// relative paths resolved by different rules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { acquireInstanceLock, hypervisorKey, InstanceLockError } from '../../../src/daemon/instance-lock.js';
import { checkSecretFile } from '../../../src/config/secret-file.js';
import { loadConfigFile } from '../../../src/config/load.js';
import { defaultConfig } from '../../../src/config/schema.js';

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'ballast-lock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function startTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
}

test('one lock per hypervisor: the second holder is refused naming the first; released, it can be taken again', (t) => {
  const dir = tempDir(t);
  const a = acquireInstanceLock(dir, 'qmp /run/q');
  assert.throws(
    () => acquireInstanceLock(dir, 'qmp /run/q'),
    (e: Error) => e instanceof InstanceLockError && new RegExp(`another ballast daemon \\(PID ${process.pid}, .*\\) manages qmp /run/q`).test(e.message),
  );
  const other = acquireInstanceLock(dir, 'qmp /run/other');
  assert.notEqual(other.path, a.path);
  a.release();
  a.release();
  assert.equal(existsSync(a.path), false);
  const again = acquireInstanceLock(dir, 'qmp /run/q');
  again.release();
  other.release();
  assert.deepEqual(readdirSync(dir), [], 'no temporary or stale files left');
});

test("a lock whose owner is gone, or whose PID is now another process's, is taken over; a live owner's is not", async (t) => {
  const dir = tempDir(t);
  const first = acquireInstanceLock(dir, 'libvirt /x');
  const path = first.path;
  first.release();
  const dead = spawn('true');
  await once(dead, 'exit');
  const sleeper: ChildProcess = spawn('sleep', ['60'], { stdio: 'ignore' });
  t.after(() => sleeper.kill());
  await once(sleeper, 'spawn');
  const write = (pid: number, start: number | null) =>
    writeFileSync(path, JSON.stringify({ pid, start, hypervisor: 'libvirt /x', since: '2026-01-01T00:00:00.000Z' }));
  write(dead.pid!, null);
  acquireInstanceLock(dir, 'libvirt /x').release();
  write(sleeper.pid!, startTicks(sleeper.pid!) + 1); // the PID was recycled
  acquireInstanceLock(dir, 'libvirt /x').release();
  writeFileSync(path, 'garbage');
  acquireInstanceLock(dir, 'libvirt /x').release();
  write(sleeper.pid!, startTicks(sleeper.pid!));
  assert.throws(() => acquireInstanceLock(dir, 'libvirt /x'), new RegExp(`PID ${sleeper.pid}, since 2026-01-01`));
  assert.equal(JSON.parse(readFileSync(path, 'utf8')).pid, sleeper.pid, "the live owner's lock is left in place");
  // Releasing a lock that another process now holds leaves it alone.
  const mine = acquireInstanceLock(dir, 'libvirt /y');
  writeFileSync(mine.path, JSON.stringify({ pid: sleeper.pid, start: startTicks(sleeper.pid!), hypervisor: 'libvirt /y', since: 'x' }));
  mine.release();
  assert.equal(existsSync(mine.path), true);
});

test('what is locked: the QMP directory or the libvirt socket; nothing for the simulator or a read-only connection', () => {
  const h = defaultConfig().hypervisor;
  assert.equal(
    hypervisorKey(h),
    'libvirt /var/run/libvirt/libvirt-sock'.replace('/var/run', existsSync('/var/run/libvirt/libvirt-sock') ? '/run' : '/var/run'),
  );
  assert.equal(hypervisorKey({ ...h, uri: 'qemu+tcp://elsewhere/system' }), 'libvirt qemu+tcp://elsewhere/system');
  assert.equal(hypervisorKey({ ...h, readonly: true }), null);
  assert.equal(hypervisorKey({ ...h, driver: 'sim' }), null);
  assert.equal(hypervisorKey({ ...h, driver: 'qmp', qmp_dir: '/nonexistent/q/../q' }), 'qmp /nonexistent/q');
});

test('a token file readable or writable by group or others is refused with the fix; 0600 and 0400 pass', (t) => {
  const dir = tempDir(t);
  const f = join(dir, 'token');
  writeFileSync(f, 'x'.repeat(32));
  for (const mode of [0o644, 0o640, 0o604, 0o620]) {
    chmodSync(f, mode);
    assert.throws(() => checkSecretFile(f, 'api.token_file'), new RegExp(`api\\.token_file: .*token has mode 0${mode.toString(8)}: .*chmod 600 `));
  }
  for (const mode of [0o600, 0o400]) {
    chmodSync(f, mode);
    checkSecretFile(f, 'api.token_file');
  }
  assert.throws(() => checkSecretFile(join(dir, 'missing'), 'api.read_token_file'), /api\.read_token_file: cannot read/);
});

test('every relative path in a config file is relative to the file, token files and sockets included', (t) => {
  const dir = tempDir(t);
  const etc = join(dir, 'etc');
  mkdirSync(etc);
  const file = join(etc, 'ballast.toml');
  writeFileSync(
    file,
    '[hypervisor]\ndriver = "qmp"\nqmp_dir = "qmp"\nsocket = "libvirt.sock"\n[engine]\npolicy_dir = "policies"\n[api]\nsocket = "run/api.sock"\ntoken_file = "rw.token"\nread_token_file = "../ro.token"\n[mom_rpc]\nsocket = "mom.sock"\n',
  );
  const c = loadConfigFile(file);
  assert.deepEqual(
    [
      c.hypervisor.qmp_dir,
      c.hypervisor.socket,
      c.engine.policy_dir,
      c.api.socket,
      c.api.token_file,
      c.api.read_token_file,
      c.mom_rpc.socket,
      c.engine.record_file,
    ],
    [
      join(etc, 'qmp'),
      join(etc, 'libvirt.sock'),
      join(etc, 'policies'),
      join(etc, 'run/api.sock'),
      join(etc, 'rw.token'),
      join(dir, 'ro.token'),
      join(etc, 'mom.sock'),
      '',
    ],
  );
});

/** `ballast run` in its own process, with the runtime directory given. */
function ballastRun(config: string, runtimeDir: string): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'run', '--config', config], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, BALLAST_RUNTIME_DIR: runtimeDir },
  });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => {
    out += c;
  });
  child.stderr!.on('data', (c: Buffer) => {
    out += c;
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, output: () => out, exited };
}

test('ballast run: a second daemon on the same QMP directory exits with a clear error; a world-readable token file stops the start', async (t) => {
  const dir = tempDir(t);
  const runtime = join(dir, 'run');
  mkdirSync(join(dir, 'qmp'));
  mkdirSync(join(dir, 'policies'));
  const config = (name: string, extra = '') => {
    const f = join(dir, name);
    writeFileSync(
      f,
      `[hypervisor]\ndriver = "qmp"\nqmp_dir = "qmp"\n[engine]\npolicy_dir = "policies"\n[api]\nsocket = "${name}.sock"\n${extra}[ksm]\nenabled = false\nrestore_on_exit = false\n[log]\nformat = "json"\n`,
    );
    return f;
  };
  const first = ballastRun(config('a.toml'), runtime);
  t.after(() => first.child.kill('SIGKILL'));
  for (let i = 0; i < 200 && !existsSync(join(dir, 'a.toml.sock')); i++) await new Promise((r) => setTimeout(r, 100));
  assert.ok(existsSync(join(dir, 'a.toml.sock')), `the first daemon runs: ${first.output()}`);
  const second = ballastRun(config('b.toml'), runtime);
  assert.equal(await second.exited, 1, second.output());
  assert.match(second.output(), new RegExp(`another ballast daemon \\(PID ${first.child.pid}, .*\\) manages qmp ${dir}/qmp`));
  assert.equal(first.child.exitCode, null, 'the first daemon goes on');
  first.child.kill('SIGTERM');
  assert.equal(await first.exited, 0, first.output());
  assert.deepEqual(readdirSync(runtime), [], 'a clean stop leaves no lock');

  writeFileSync(join(dir, 'rw.token'), `${'t'.repeat(32)}\n`, { mode: 0o644 });
  chmodSync(join(dir, 'rw.token'), 0o644);
  const exposed = ballastRun(config('c.toml', 'listen = "127.0.0.1:0"\ntoken_file = "rw.token"\n'), runtime);
  assert.equal(await exposed.exited, 1, exposed.output());
  assert.match(exposed.output(), /api\.token_file: .*rw\.token has mode 0644: other users could read the token; chmod 600/);
});
