// The QMP driver against real QEMU: a bare machine (no guest OS) for the protocol, and a lab
// guest (kernel + initramfs with the balloon driver) for statistics and ballooning.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QmpHypervisor } from '../../src/hypervisor/qmp/index.js';
import type { LifecycleEvent } from '../../src/types.js';
import type { QmpEvent } from '../../src/hypervisor/qmp/client.js';
import { startQemuGuest, stopQemuGuest, type QemuGuest } from '../../src/lab/qemu.js';
import { skipLoudly as skip, until } from './fixture.js';

const QEMU = 'qemu-system-x86_64';
const haveQemu = spawnSync(QEMU, ['--version']).status === 0;

function bareQemu(dir: string, name: string, memMiB = 256, qemuName = name): ChildProcess {
  return spawn(
    QEMU,
    [
      '-accel',
      'tcg',
      '-machine',
      'q35',
      '-m',
      String(memMiB),
      '-nodefaults',
      '-display',
      'none',
      '-name',
      qemuName,
      '-device',
      'virtio-balloon-pci,id=balloon0',
      '-qmp',
      `unix:${join(dir, name + '.sock')},server=on,wait=off`,
    ],
    { stdio: 'ignore' },
  );
}

test('QMP driver on bare QEMU: discovery, balloon facts, pid and RSS, SHUTDOWN and kill events', async (t) => {
  if (!haveQemu) return skip(t, `${QEMU} is not installed`);
  const dir = mkdtempSync(join(tmpdir(), 'ballast-qmp-lab-'));
  const procs: ChildProcess[] = [];
  t.after(() => {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  const a = bareQemu(dir, 'bare-a', 256);
  const b = bareQemu(dir, 'bare-b', 192);
  procs.push(a, b);
  await until('both QMP sockets', 10000, () => existsSync(join(dir, 'bare-a.sock')) && existsSync(join(dir, 'bare-b.sock')));

  const h = new QmpHypervisor({ socketDir: dir, retryMs: 100 });
  const events: LifecycleEvent[] = [];
  const qmpEvents: string[] = [];
  h.onEvent((e) => events.push(e));
  h.onQmpEvent((g, e: QmpEvent) => qmpEvents.push(`${g}:${e.event}`));
  t.after(() => h.close());
  await h.connect();
  const samples = await h.collect();
  assert.deepEqual(
    samples.map((s) => s.name),
    ['bare-a', 'bare-b'],
  );
  const sa = samples[0]!;
  assert.equal(sa.stats.balloon_cur, 256 * 1024);
  assert.equal(sa.stats.balloon_max, 256 * 1024);
  assert.equal(samples[1]!.stats.balloon_max, 192 * 1024);
  assert.equal(sa.props.pid, a.pid, 'QEMU pid found through a vCPU thread');
  assert.ok((sa.stats.rss as number) > 10 * 1024, `rss ${sa.stats.rss} KiB`);
  assert.equal(sa.stats.vcpu_count, 1);
  assert.match(sa.stale ?? '', /no balloon statistics from the guest yet/, 'no guest OS, no stats: stale, not zeros');
  assert.deepEqual(events.map((e) => `${e.kind}:${e.name}`).sort(), ['started:bare-a', 'started:bare-b']);

  // Clean quit: SHUTDOWN arrives, then the guest leaves the collection.
  await h.execute('bare-a', 'quit');
  await until('SHUTDOWN of bare-a', 5000, () => events.some((e) => e.kind === 'stopped' && e.name === 'bare-a'));
  assert.ok(qmpEvents.includes('bare-a:SHUTDOWN'));
  await until('bare-a to exit', 5000, () => a.exitCode !== null || a.signalCode !== null);
  // Killed: no SHUTDOWN, the closed connection is reported as destroyed.
  b.kill('SIGKILL');
  await until('destroyed event for bare-b', 5000, () => events.some((e) => e.kind === 'destroyed' && e.name === 'bare-b'));
  const after = await h.collect();
  assert.deepEqual(
    after.map((s) => s.name),
    [],
    'gone guests are left out, not reported stale',
  );
  assert.equal(events.filter((e) => e.name === 'bare-a' && e.kind === 'destroyed').length, 0, 'a clean quit is not a destroy');
});

test("QMP driver on bare QEMU: a QEMU whose -name is another guest's socket path reaches only itself; PIDs from the socket's holder", async (t) => {
  if (!haveQemu) return skip(t, `${QEMU} is not installed`);
  const dir = mkdtempSync(join(tmpdir(), 'ballast-qmp-lab-'));
  const procs: ChildProcess[] = [];
  t.after(() => {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  const victimSocket = join(dir, 'victim.sock');
  // Sorted after the victim: a lookup by name or path in socket order meets the victim first.
  const victim = bareQemu(dir, 'victim', 256);
  const evil = bareQemu(dir, 'x-evil', 192, victimSocket);
  procs.push(victim, evil);
  await until('both QMP sockets', 10000, () => existsSync(victimSocket) && existsSync(join(dir, 'x-evil.sock')));
  const h = new QmpHypervisor({ socketDir: dir, retryMs: 100 });
  t.after(() => h.close());
  await h.connect();
  const samples = await h.collect();
  assert.deepEqual(
    samples.map((s) => [s.id, s.props.qemu_name, s.props.pid, s.stats.balloon_max]),
    [
      ['victim', 'victim', victim.pid, 256 * 1024],
      ['x-evil', victimSocket, evil.pid, 192 * 1024],
    ],
  );
  // Whatever the engine sends to a guest's id lands on that QEMU: it answers with its own -name.
  for (const s of samples) assert.deepEqual(await h.execute(s.id, 'query-name'), { name: s.props.qemu_name });
  await assert.rejects(h.execute(victimSocket, 'query-name'), /no guest/);
});

test('QMP driver on a lab guest: stats arrive, balloon changes actual, BALLOON_CHANGE, SHUTDOWN', async (t) => {
  if (!haveQemu) return skip(t, `${QEMU} is not installed`);
  const dir = mkdtempSync(join(tmpdir(), 'ballast-qmp-guest-'));
  const sock = join(dir, 'qmp-guest.sock');
  let guest: QemuGuest;
  try {
    // An idle guest (no workload): ballooning it is all that happens to its memory.
    guest = await startQemuGuest({ name: 'qmptest', memMiB: 256, qmpSocket: sock, workload: '', guestAgent: false });
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    return skip(t, `cannot start a lab guest: ${(e as Error).message}`);
  }
  const h = new QmpHypervisor({ sockets: [sock], statsPeriodS: 1, retryMs: 200 });
  t.after(async () => {
    await h.close();
    await stopQemuGuest(guest).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });
  const events: LifecycleEvent[] = [];
  const changes: number[] = [];
  h.onEvent((e) => events.push(e));
  h.onQmpEvent((_, e) => {
    if (e.event === 'BALLOON_CHANGE') changes.push(e.data.actual as number);
  });
  await h.connect();
  const t0 = Date.now();
  const fresh = await until('fresh balloon stats from the guest', 180000, async () => (await h.collect()).find((s) => !s.stale));
  const total = fresh.stats.mem_available as number;
  assert.ok(total > 150 * 1024 && total <= 256 * 1024, `guest MemTotal ${total} KiB`);
  assert.ok((fresh.stats.mem_unused as number) > 0 && (fresh.stats.mem_unused as number) <= total);
  assert.ok((fresh.stats.mem_free as number) >= (fresh.stats.mem_unused as number));
  assert.ok(typeof fresh.stats.minor_fault === 'number' && fresh.stats.minor_fault > 0);
  assert.equal(fresh.stats.balloon_cur, 256 * 1024);
  assert.equal(fresh.props.pid, guest.pid);
  assert.equal(fresh.name, 'qmp-guest', "name from the socket's file name");
  assert.equal(fresh.props.qemu_name, guest.name, "QEMU's -name shown beside it");

  const tStats = Date.now() - t0;
  const t1 = Date.now();
  await h.setBalloon(fresh.id, 160 * 1024);
  await until('BALLOON_CHANGE down to 160 MiB', 60000, () => changes.some((c) => c === 160 * 1048576));
  console.error(
    `qmp lab: first fresh stats after ${tStats} ms; balloon 256 -> 160 MiB confirmed by BALLOON_CHANGE after ${Date.now() - t1} ms; guest MemTotal ${total} KiB`,
  );
  const ballooned = await until('actual at 160 MiB', 30000, async () => (await h.collect()).find((s) => s.stats.balloon_cur === 160 * 1024));
  assert.equal(ballooned.stats.balloon_cur, 160 * 1024);
  const statsAfter = await until('guest MemTotal to shrink', 30000, async () => {
    const s = (await h.collect())[0];
    return s && !s.stale && (s.stats.mem_available as number) < total - 64 * 1024 ? s : null;
  });
  assert.ok((statsAfter.stats.mem_available as number) < total - 64 * 1024, 'the guest sees less memory');
  await h.setBalloon(fresh.id, 256 * 1024);
  await until('BALLOON_CHANGE back up', 60000, () => changes.at(-1) === 256 * 1048576);

  await h.execute(fresh.id, 'quit');
  await until('SHUTDOWN', 10000, () => events.some((e) => e.kind === 'stopped'));
});

test("QMP driver reads a lab guest's memory stall (PSI) through the guest agent's own socket", async (t) => {
  if (!haveQemu) return skip(t, `${QEMU} is not installed`);
  let guest: QemuGuest;
  try {
    guest = await startQemuGuest({ name: 'qmpagent', memMiB: 256, workload: 'alloc:64,touch:2,idle:2,loop', guestAgent: true });
  } catch (e) {
    return skip(t, `cannot start a lab guest: ${(e as Error).message}`);
  }
  t.after(() => stopQemuGuest(guest).catch(() => {}));
  if (!guest.qgaSocket) return skip(t, 'the lab image has no guest agent (qemu-guest-agent is not in the apt lists)');
  const h = new QmpHypervisor({ sockets: [{ socket: guest.qmpSocket, agentSocket: guest.qgaSocket }], guestPsi: true, statsPeriodS: 1, retryMs: 200 });
  t.after(() => h.close());
  await h.connect();
  // The agent starts with the guest's init; until it answers, samples come without PSI.
  const s = await until('psi_some_avg10 from the guest', 120000, async () => {
    const [g] = await h.collect();
    return typeof g?.stats.psi_some_avg10 === 'number' ? g : null;
  });
  assert.equal(s.props.agent_socket, guest.qgaSocket);
  for (const k of ['psi_some_avg10', 'psi_some_avg60', 'psi_full_avg10', 'psi_full_avg60']) {
    const v = s.stats[k];
    assert.ok(typeof v === 'number' && v >= 0 && v <= 100, `${k} = ${v}`);
  }
  assert.ok((s.stats.psi_full_avg10 as number) <= (s.stats.psi_some_avg10 as number), 'full stall is part of some stall');
  console.error(`qmp lab: guest PSI some/full avg10 ${s.stats.psi_some_avg10}/${s.stats.psi_full_avg10} % through ${guest.qgaSocket}`);
  // Every collection reads it again over the same agent connection.
  const again = await h.collect();
  assert.equal(typeof again[0]!.stats.psi_some_avg10, 'number');
});
