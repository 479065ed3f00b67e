// `ballast run` with hypervisor.driver = "libvirt" on real lab guests while libvirtd is killed
// and started again: the daemon keeps running, reconnects, takes a policy changed meanwhile
// and applies it to the guests once libvirtd is back; SIGTERM stops it cleanly.
// The policy touches only this file's guests (by name), so other lab users are left alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { acquireLab, otherLeases, skipLoudly, spawnDaemon, until, othersDone, startLibvirtdAgain, writeDaemonConfig } from './fixture.js';
import { ensureLibvirtd, labLibvirtdPid, libvirtdAnswers } from '../../src/lab/libvirtd.js';
import { pidAlive } from '../../src/lab/proc.js';
import { LibvirtHypervisor } from '../../src/hypervisor/libvirt/index.js';

const policyFor = (names: string[], kib: number) => `# test policy: a fixed balloon target for this test's guests only
(defvar target ${kib})
(with Guests guest
  (if (or ${names.map((n) => `(== (guest.Prop "name") "${n}")`).join(' ')})
    (guest.Control "balloon_target" target)
    0))
`;

test('ballast run (libvirt) survives libvirtd being killed, reconnects and acts again', async (t) => {
  const lab = await acquireLab(t, { guests: 2, memMiB: 256, workload: '', meminfoS: 1, statsPeriodS: 1, bootTimeoutMs: 240_000 });
  if (!lab) return;
  const names = lab.guests.map((g) => g.name);
  const dir = mkdtempSync(join(tmpdir(), 'ballast-lv-daemon-'));
  const observer = new LibvirtHypervisor({ statsPeriodSec: 0 });
  let daemon: ChildProcess | null = null;
  t.after(async () => {
    if (daemon && daemon.exitCode === null) daemon.kill('SIGKILL');
    await observer.close();
    if (!(await libvirtdAnswers())) await ensureLibvirtd().catch(() => undefined);
    await lab.release();
    rmSync(dir, { recursive: true, force: true });
  });

  mkdirSync(join(dir, 'policies'));
  const policyPath = join(dir, 'policies', '50_target.policy');
  const first = 200 * 1024;
  const second = 224 * 1024;
  writeFileSync(policyPath, policyFor(names, first));
  const cfg = writeDaemonConfig(dir, {
    engine: { history_length: 2 },
    safeguards: { max_step_percent: 100, rollback_window: 0 },
    shutdown: { balloons: 'leave' },
  });

  const run = spawnDaemon(cfg);
  daemon = run.proc;
  const { logs, exited, logText } = run;

  await observer.connect();
  const balloonOf = async (want: number) => {
    const s = (await observer.collect()).filter((g) => names.includes(g.name));
    return s.length === names.length && s.every((g) => g.stats.balloon_cur === want && !g.stale);
  };
  await until(`the daemon to balloon both guests to ${first} KiB`, 90_000, () => balloonOf(first)).catch((e) => {
    throw new Error(`${(e as Error).message}\ndaemon log:\n${logText().slice(-4000)}`);
  });

  if (!(await othersDone()))
    return skipLoudly(t, `other lab sessions still hold leases after 180 s (${otherLeases().join(', ')}): not killing libvirtd under them`);
  const pid = labLibvirtdPid();
  if (pid === null) return skipLoudly(t, 'the running libvirtd was not started by the lab (no PID file of ours): not killing it');
  process.kill(pid, 'SIGKILL');
  await until('libvirtd to die', 10_000, () => !pidAlive(pid));
  await until('the daemon to log the lost connection', 30_000, () => logs.some((l) => l.event === 'driver' && /connection lost/.test(String(l.msg))));
  // The policy changes while libvirtd is down: the daemon takes it and keeps its loop going.
  writeFileSync(policyPath, policyFor(names, second));
  await new Promise((r) => setTimeout(r, 3000));
  assert.equal(daemon.exitCode, null, 'the daemon is still running with libvirtd gone');

  await startLibvirtdAgain();
  await until('the daemon to reconnect', 60_000, () => logs.some((l) => l.event === 'driver' && /re-established/.test(String(l.msg))));
  await until(`the daemon to balloon both guests to ${second} KiB after the reconnect`, 90_000, () => balloonOf(second)).catch((e) => {
    throw new Error(`${(e as Error).message}\ndaemon log:\n${logText().slice(-4000)}`);
  });
  assert.equal(daemon.exitCode, null);

  daemon.kill('SIGTERM');
  const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 20_000))]);
  assert.equal(code, 0, `clean exit on SIGTERM (log tail:\n${logText().slice(-2000)})`);
  const failed = logs.filter((l) => l.event === 'driver' && /reconnect failed/.test(String(l.msg))).length;
  console.error(
    `daemon: ${logs.length} log records, ${failed} failed reconnect attempts while libvirtd was down, then reconnected and ballooned ${names.join(', ')} to ${second} KiB`,
  );
  assert.ok(
    logs.some((l) => l.event === 'stopping'),
    'logged its stop',
  );
});
