// Real-VM lab: the image build and its cache, a guest under libvirtd that boots with its
// balloon driver and workload, ballooning seen from inside the guest, a plain QEMU guest with
// QMP, and libvirtd started/stopped by PID.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { connect } from 'node:net';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { acquireLab, adoptLibvirtd, requireLab, skipLoudly, otherLeases } from './fixture.js';
import {
  ensureLabBuilt,
  ensureLibvirtd,
  stopLibvirtd,
  libvirtdAnswers,
  libvirtdIdle,
  labLibvirtdPid,
  BALLOON_MODULES,
  libvirtGuestPid,
  memCgroupDirOf,
} from '../../src/lab/index.js';
import { virsh } from '../../src/lab/guests.js';
import { pidAlive, sleep, waitFor } from '../../src/lab/proc.js';

const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');

test('lab build: built once, then cached; the image is reproducible', async (t) => {
  const lab = await requireLab(t, { libvirt: false });
  if (!lab) return;
  const dir = mkdtempSync(join(tmpdir(), 'ballast-lab-build-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cold = await ensureLabBuilt({ dir });
  assert.equal(cold.rebuilt, true);
  const warm = await ensureLabBuilt({ dir });
  assert.equal(warm.rebuilt, false, 'second call with the same inputs does no work');
  assert.deepEqual(warm.manifest, cold.manifest);
  assert.deepEqual(
    cold.manifest.modules.filter((m) => BALLOON_MODULES.includes(m.name)).map((m) => m.name),
    BALLOON_MODULES,
  );
  // Same inputs, same bytes: the initramfs has fixed owners and times, the kernel is the package's.
  assert.equal(sha(cold.initrd), sha(lab.build.initrd));
  assert.equal(sha(cold.kernel), sha(lab.build.kernel));
  console.error(
    `lab build: cold ${cold.ms} ms (${cold.manifest.buildMs} ms building), cached ${warm.ms} ms; initramfs ${cold.manifest.initrdBytes} bytes; guest agent ${cold.manifest.guestAgent ? 'in' : 'out: ' + cold.manifest.guestAgentSkipped}`,
  );
});

test('a libvirt guest boots: balloon modules loaded, workload reporting, ballooning seen inside', async (t) => {
  const lab = await acquireLab(t, { guests: 1, memMiB: 256, workload: 'alloc:24,touch:3,idle:6,loop', statsPeriodS: 1, meminfoS: 1, group: 'labtest' });
  if (!lab) return;
  t.after(() => lab.release());
  const g = lab.guests[0];
  console.error(`lab guest ${g.name}: boot to first workload line ${g.bootMs} ms (TCG)`);
  const s = await waitFor('a workload rate line', 30_000, () => {
    const sum = lab.consoleOf(g.name);
    return sum.rates.length > 0 && sum.meminfo.length > 0 ? sum : undefined;
  });
  for (const m of BALLOON_MODULES) assert.ok(['loaded', 'builtin'].includes(s.modules[m]), `${m}: ${s.modules[m]}`);
  assert.equal(s.balloonBound, true);
  assert.ok(s.rates.length > 0 && s.rates[0].pagesPerS > 0, 'the workload reports a throughput');
  assert.ok(s.meminfo.length > 0);
  const before = s.meminfo.at(-1)!.totalKiB;
  assert.ok(before > 150 * 1024 && before <= 256 * 1024, `MemTotal ${before} KiB for a 256 MiB guest`);

  // Inflate the balloon to 160 MiB: the guest's own MemTotal must drop accordingly.
  await virsh(['setmem', g.name, '163840', '--live']);
  const after = await lab.waitConsole(g.name, (c) => {
    const m = c.meminfo.at(-1);
    return m && m.totalKiB < before - 64 * 1024 ? m.totalKiB : undefined;
  });
  assert.ok(after <= 160 * 1024, `MemTotal ${after} KiB after ballooning to 160 MiB`);
  // libvirt's "actual" follows the guest's inflation, which may still be finishing.
  const stats = await waitFor(
    'balloon actual to reach 163840 KiB',
    60_000,
    async () => {
      const out = await virsh(['dommemstat', g.name]);
      return /^actual 163840$/m.test(out) ? out : undefined;
    },
    500,
  );
  assert.match(stats, /^unused \d+$/m, 'balloon stats flow (stats period set)');
  if (lab.build.manifest.guestAgent) {
    // The guest agent answers through libvirt (the driver's fallback for guests without balloon stats).
    const info = await waitFor(
      'the guest agent to answer',
      30_000,
      async () => {
        try {
          return await virsh(['qemu-agent-command', g.name, '{"execute":"guest-get-memory-block-info"}'], 10_000);
        } catch {
          return undefined;
        }
      },
      1000,
    );
    assert.match(info, /"size":\d+/);
  } else {
    console.error(`LAB NOTE: guest agent not in the image: ${lab.build.manifest.guestAgentSkipped}`);
  }
  // Its QEMU is charged in a memory cgroup the host side can read (and limit).
  const pid = libvirtGuestPid(g.name);
  assert.ok(pid && pidAlive(pid), `QEMU PID of ${g.name}`);
  const dir = memCgroupDirOf(pid);
  const usage = Number(readFileSync(join(dir, existsSync(join(dir, 'memory.usage_in_bytes')) ? 'memory.usage_in_bytes' : 'memory.current'), 'utf8'));
  assert.ok(usage > 16 << 20, `memory charged in ${dir}: ${usage} bytes`);
});

test('a plain QEMU guest answers QMP and reports its balloon', async (t) => {
  const lab = await acquireLab(t, { libvirt: false, group: 'labtestq' });
  if (!lab) return;
  t.after(() => lab.release());
  const q = await lab.startQemu({ memMiB: 192, workload: 'alloc:16,touch:2,idle:8,loop' });
  console.error(`lab QEMU guest ${q.name}: boot to first workload line ${q.bootMs} ms (TCG), PID ${q.pid}`);
  assert.ok(pidAlive(q.pid));
  const replies = await new Promise<string>((resolve, reject) => {
    const s = connect(q.qmpSocket);
    let buf = '';
    let sent = false;
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      buf += d;
      if (!sent && buf.includes('"QMP"')) {
        sent = true;
        s.write('{"execute":"qmp_capabilities"}\n{"execute":"query-balloon","id":7}\n');
      }
      if (/"id": 7/.test(buf)) {
        s.end();
        resolve(buf);
      }
    });
    s.on('error', reject);
    setTimeout(() => reject(new Error('no QMP reply: ' + buf)), 10_000);
  });
  assert.match(replies, /"actual": 201326592/);
  const s = await waitFor('a workload rate line', 30_000, () => {
    const sum = lab.consoleOf(q.consoleLog);
    return sum.rates.length > 0 ? sum : undefined;
  });
  assert.equal(s.balloonBound, true);
  await lab.release();
  assert.equal(pidAlive(q.pid), false, 'stopped by PID on release');
});

test('libvirtd: started by the lab, reused, stopped by its PID', async (t) => {
  const lab = await acquireLab(t, { group: 'labd' }); // a lease: no other file's release stops libvirtd meanwhile
  if (!lab) return;
  t.after(() => lab.release());
  const first = await ensureLibvirtd();
  assert.ok(await libvirtdAnswers());
  if (!first.startedByUs) return skipLoudly(t, `libvirtd PID ${first.pid} was not started by the lab; not stopping it`);
  assert.equal(first.pid, labLibvirtdPid());
  assert.equal(readFileSync('/run/ballast-lab/libvirtd.pid', 'utf8').trim(), String(first.pid));
  const again = await ensureLibvirtd();
  assert.equal(again.pid, first.pid, 'a running libvirtd is reused');
  assert.equal(again.startedNow, false);
  // Stopping it under other users' feet would break their tests: only when nobody else is on it.
  // Other suites run in parallel: give them a minute to finish before giving up.
  let state = { idle: false, why: '' };
  const idleBy = Date.now() + 60_000;
  for (;;) {
    state = await libvirtdIdle();
    if (otherLeases().length > 0) state = { idle: false, why: `lab sessions of other processes: ${otherLeases().join(', ')}` };
    if (state.idle || Date.now() > idleBy) break;
    await sleep(2000);
  }
  if (!state.idle) return skipLoudly(t, `stop/start part: libvirtd is in use (${state.why})`);
  assert.equal(await stopLibvirtd(), true);
  assert.equal(pidAlive(first.pid!), false, 'stopped by PID');
  assert.equal(await libvirtdAnswers(), false);
  assert.equal(await stopLibvirtd(), false, 'nothing of ours left to stop');
  const t0 = Date.now();
  const back = await ensureLibvirtd();
  console.error(`lab libvirtd: restarted in ${Date.now() - t0} ms`);
  assert.equal(back.startedNow, true);
  assert.notEqual(back.pid, first.pid);
  assert.ok(await libvirtdAnswers());
  // Leave it running for other suites; this file's session stops it on release if it is then idle
  // and nobody else holds a lease.
  adoptLibvirtd();
});

test('ballast lab up | status | down', async (t) => {
  const lab = await acquireLab(t, { group: 'labcli' }); // holds a lease: the last session out stops libvirtd
  if (!lab) return;
  t.after(() => lab.release());
  const cli = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'lab', ...args], { encoding: 'utf8', timeout: 240_000 });
  const bad = cli(['up', '--guests', '9']);
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /--guests must be a whole number from 1 to 8/);
  const up = cli(['up', '--guests', '1', '--mem', '128', '--workload', 'alloc:8,touch:2,idle:20,loop']);
  assert.equal(up.status, 0, up.stderr);
  assert.match(up.stdout, /ballast-lab-1 {2}128 MiB {2}ready after \d+ ms/);
  const st = cli(['status', '--json']);
  assert.equal(st.status, 0, st.stderr);
  const s = JSON.parse(st.stdout) as {
    libvirtd: { answers: boolean };
    guests: { name: string; state: string; balloonBound: boolean; meminfo: { totalKiB: number } | null }[];
  };
  assert.equal(s.libvirtd.answers, true);
  const g = s.guests.find((x) => x.name === 'ballast-lab-1');
  assert.ok(g, st.stdout);
  assert.equal(g.state, 'running');
  assert.equal(g.balloonBound, true);
  assert.ok(g.meminfo && g.meminfo.totalKiB < 128 * 1024);
  const down = cli(['down', '--keep-libvirtd']);
  assert.equal(down.status, 0, down.stderr);
  assert.match(down.stdout, /stopped 1 guest\(s\): ballast-lab-1/);
  const after = JSON.parse(cli(['status', '--json']).stdout) as { guests: { name: string }[] };
  assert.equal(
    after.guests.some((x) => x.name === 'ballast-lab-1'),
    false,
  );
});
