// MOM's CpuTune on real lab guests: `ballast run` (libvirt) with a policy in the shape of
// oVirt's 04-cputune sets vcpu_quota / vcpu_period, and libvirt's own view (`virsh schedinfo`)
// reads back exactly the policy's values; the daemon's guest fields show them too, so the
// policy stops asking. The policy touches only this test's guest, by name.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { acquireLab, spawnDaemon, until, writeDaemonConfig } from './fixture.js';
import { virsh } from '../../src/lab/guests.js';

async function schedinfo(name: string): Promise<Record<string, string>> {
  const out = await virsh(['schedinfo', name, '--live']);
  return Object.fromEntries(
    out
      .split('\n')
      .map((l) => l.split(':').map((x) => x.trim()))
      .filter((kv) => kv.length === 2 && kv[0]) as [string, string][],
  );
}

test("cputune on a libvirt guest: the scheduler parameters read back equal the policy's values", async (t) => {
  const lab = await acquireLab(t, { guests: 1, memMiB: 192, workload: '', meminfoS: 1, statsPeriodS: 1, bootTimeoutMs: 240_000 });
  if (!lab) return;
  const name = lab.guests[0]!.name;
  const dir = mkdtempSync(join(tmpdir(), 'ballast-cputune-'));
  let daemon: ChildProcess | null = null;
  t.after(async () => {
    if (daemon && daemon.exitCode === null) daemon.kill('SIGKILL');
    await virsh(['schedinfo', name, '--live', '--set', 'vcpu_quota=-1']).catch(() => undefined);
    await lab.release();
    rmSync(dir, { recursive: true, force: true });
  });

  const quota = 37_500;
  const period = 75_000;
  mkdirSync(join(dir, 'policies'));
  writeFileSync(
    join(dir, 'policies', '50_cputune.policy'),
    `# CpuTune for this test's guest only
(with Guests guest
  (if (== (guest.Prop "name") "${name}") {
    (if (!= guest.vcpu_quota ${quota}) (guest.Control "vcpu_quota" ${quota}.0) 0)
    (if (!= guest.vcpu_period ${period}) (guest.Control "vcpu_period" ${period}) 0)
  } 0))
`,
  );
  const cfg = writeDaemonConfig(dir, { cputune: { enabled: true } });
  const before = await schedinfo(name);
  assert.notEqual(before.vcpu_quota, String(quota), 'not already set');
  const run = spawnDaemon(cfg);
  daemon = run.proc;
  await until(`libvirt to hold vcpu_quota ${quota}, vcpu_period ${period}`, 90_000, async () => {
    const s = await schedinfo(name);
    return s.vcpu_quota === String(quota) && s.vcpu_period === String(period);
  }).catch((e) => {
    throw new Error(`${(e as Error).message}\nschedinfo: ${JSON.stringify(before)}\ndaemon log:\n${run.logText().slice(-4000)}`);
  });
  const applied = run.logs.filter((l) => l.event === 'action' && String(l.control).startsWith('vcpu_') && l.result === 'applied');
  assert.deepEqual(
    applied.map((l) => [l.control, l.to]).sort(),
    [
      ['vcpu_period', period],
      ['vcpu_quota', quota],
    ],
    'each set once',
  );
  // Held: a few more cycles ask nothing (the fields read back equal the policy's values).
  await new Promise((r) => setTimeout(r, 4000));
  assert.equal(run.logs.filter((l) => l.event === 'action' && String(l.control).startsWith('vcpu_')).length, 2, 'not set again');
  assert.ok(!run.logs.some((l) => l.event === 'control_fields_failed'), run.logText().slice(-2000));
  daemon.kill('SIGTERM');
  assert.equal(await run.exited, 0);
});
