// What a killed experiment leaves behind, on the real kernel: a swap area on a loop device, a
// swap file, memory cgroups with children. The next experiment's sweep removes all of it, and
// leaves what a live experiment owns alone (here: this test's own PID).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { memoryCgroupMount } from '../../src/experiments/lab-memknobs/domain.js';
import { sweepStale } from '../../src/experiments/lab-memknobs/stale.js';
import { pauseHostKsm } from '../../src/experiments/lab-memknobs/setup.js';
import { Cleanup } from '../../src/experiments/lab-memknobs/cleanup.js';
import { skipLoudly } from './fixture.js';

const sh = (cmd: string, args: string[]): string => {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.error?.message}`);
  return r.stdout.trim();
};

test("a dead experiment's swap device, swap file and cgroups are removed by the next one; a live one's are left", async (t) => {
  if (process.getuid?.() !== 0) return skipLoudly(t, 'needs root (swapon, losetup, cgroups)');
  const mount = await memoryCgroupMount();
  if (!mount) return skipLoudly(t, 'no memory cgroup controller mounted');
  // A PID that is certainly gone: a shell that has exited.
  const dead = Number(sh('sh', ['-c', 'echo $$']));
  const dir = mkdtempSync('/var/tmp/ballast-stale-test-');
  const file = join(dir, `ballast-lab-experiment-${dead}.swap`);
  const orphan = join(dir, `ballast-lab-experiment-${dead + 1_000_000}.swap`);
  const mine = join(dir, `ballast-lab-experiment-${process.pid}.swap`);
  const cg = join(mount.mountPoint, `ballast-lab-experiment-${dead}-ballast-1`);
  const live = join(mount.mountPoint, `ballast-lab-experiment-${process.pid}-none-1`);
  let loop = '';
  t.after(() => {
    if (loop && readFileSync('/proc/swaps', 'utf8').includes(`${loop} `)) spawnSync('swapoff', [loop]);
    if (loop) spawnSync('losetup', ['-d', loop]);
    for (const d of [join(cg, 'g1'), cg, live]) if (existsSync(d)) rmdirSync(d);
    rmSync(dir, { recursive: true, force: true });
  });
  sh('fallocate', ['-l', '8M', file]);
  sh('chmod', ['600', file]);
  loop = sh('losetup', ['--find', '--show', file]);
  sh('mkswap', [loop]);
  // The lowest priority: nothing the machine runs meanwhile swaps there.
  sh('swapon', ['--priority', '-1000', loop]);
  sh('fallocate', ['-l', '1M', orphan]);
  sh('fallocate', ['-l', '1M', mine]);
  mkdirSync(join(cg, 'g1'), { recursive: true });
  mkdirSync(live);
  const said: string[] = [];
  const removed = await sweepStale(dir, (m) => said.push(m));
  assert.ok(!readFileSync('/proc/swaps', 'utf8').includes(`${loop} `), `swap on ${loop} switched off; said: ${said.join(' | ')}`);
  const backing = spawnSync('losetup', ['--list', '--noheadings', '--output', 'BACK-FILE', loop], { encoding: 'utf8' }).stdout.trim();
  assert.equal(backing, '', `${loop} detached`);
  loop = '';
  assert.ok(!existsSync(file) && !existsSync(orphan), 'both dead swap files deleted');
  assert.ok(!existsSync(cg), "the dead experiment's cgroup and its child removed");
  assert.ok(existsSync(mine) && existsSync(live), "a live experiment's file and cgroup left alone");
  assert.ok(removed.some((r) => r.startsWith('swap /dev/loop')) && removed.includes(`cgroup ${cg}`), removed.join(', '));
  assert.ok(said.some((m) => m.startsWith('lab: removed what experiments that are no longer running left behind')));
});

test('KSM left scanning on the host is stopped for an experiment and started again after it', async (t) => {
  const run = '/sys/kernel/mm/ksm/run';
  if (!existsSync(run)) return skipLoudly(t, `${run} does not exist (kernel without KSM)`);
  if (process.getuid?.() !== 0) return skipLoudly(t, 'needs root to write KSM knobs');
  const found = readFileSync(run, 'utf8').trim();
  t.after(() => writeFileSync(run, found));
  writeFileSync(run, '1');
  const said: string[] = [];
  const cleanup = new Cleanup((m) => said.push(m));
  pauseHostKsm(cleanup, (m) => said.push(m));
  assert.equal(readFileSync(run, 'utf8').trim(), '0', 'stopped for the runs');
  assert.ok(
    said.some((m) => m.startsWith('ksm: it was running on this host; stopped')),
    said.join(' | '),
  );
  await cleanup.runAll();
  assert.equal(readFileSync(run, 'utf8').trim(), '1', 'running again as found');
  // Found stopped, it is left alone and nothing is put back.
  writeFileSync(run, '0');
  const quiet = new Cleanup(() => {});
  pauseHostKsm(quiet, (m) => said.push(m));
  await quiet.runAll();
  assert.equal(readFileSync(run, 'utf8').trim(), '0');
});
