// Many libvirt daemons as one host, as on a KubeVirt node (issue 28 part 3): two "pods", each
// with its own unprivileged libvirtd serving only qemu:///session (KubeVirt's non-root
// virt-launcher) and one small TCG guest, their sockets under a kubelet-like pods directory
// whose paths are longer than a socket address. The driver finds both through the pattern,
// keeps their ids apart, sends each balloon to the right daemon; one daemon is stopped
// (SIGTERM: its socket goes, so does its guest) and started again (the guest comes back),
// then killed (SIGKILL: the socket stays, only its guest goes stale) and started again.
// Then `ballast run` with hypervisor.socket_glob balloons both guests by a policy.
// Skips loudly when the lab cannot run here (a failure in CI, where it runs as root).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireLab, skipLoudly, spawnDaemon, until, writeDaemonConfig } from './fixture.js';
import { PodLibvirtd } from '../../src/lab/pod-libvirtd.js';
import { waitGuestReady, labGuestSummary } from '../../src/lab/guests.js';
import { RUN_DIR } from '../../src/lab/paths.js';
import { waitFor } from '../../src/lab/proc.js';
import { MultiLibvirtHypervisor } from '../../src/hypervisor/libvirt/multi.js';
import { UNIX_PATH_MAX } from '../../src/hypervisor/libvirt/socket-client.js';
import type { GuestSample } from '../../src/types.js';

const MEM_MIB = 192;
// Pod UIDs as the kubelet names pod directories: the socket paths exceed a socket address.
const PODS = [
  { uid: '3f2a1c4e-0b6d-4e8f-9a7b-1c2d3e4f5a6b', guest: 'ballast-lab-kv-a', home: 'a' },
  { uid: '8d9e0f1a-2b3c-4d5e-8f6a-7b8c9d0e1f2a', guest: 'ballast-lab-kv-b', home: 'b' },
];
const base = join(RUN_DIR, `kv-${process.pid}`);
const root = join(base, 'kubelet');
const pods: PodLibvirtd[] = [];
let hv: MultiLibvirtHypervisor | null = null;

after(async () => {
  await hv?.close();
  for (const [i, p] of pods.entries()) {
    await p.destroyGuest(PODS[i]!.guest).catch(() => undefined);
    await p.remove().catch((e: Error) => console.error(`pod ${p.o.uid}: ${e.message}`));
  }
  rmSync(base, { recursive: true, force: true });
});

const byName = (s: GuestSample[], name: string) => s.find((g) => g.name === name);
const actualKiB = async (pod: PodLibvirtd, name: string) => {
  const line = (await pod.virsh(['dommemstat', name])).split('\n').find((l) => l.startsWith('actual '));
  return Number(line?.split(/\s+/)[1]);
};
const guestTotalKiB = (consolePath: string) => {
  const m = labGuestSummary(consolePath).meminfo;
  return m.length ? m[m.length - 1]!.totalKiB : null;
};

test('two libvirt daemons with their own sockets, managed as one host through a socket pattern', { timeout: 600_000 }, async (t) => {
  const lab = await requireLab(t);
  if (!lab) return;
  mkdirSync(base, { recursive: true });
  const t0 = Date.now();
  for (const p of PODS) pods.push(await PodLibvirtd.create({ root, uid: p.uid, home: join(base, p.home) }));
  const consoles = await Promise.all(
    pods.map((pod, i) => pod.startGuest(lab.build, { name: PODS[i]!.guest, memMiB: MEM_MIB, statsPeriodS: 1, meminfoS: 1, workload: '' })),
  );
  await Promise.all(consoles.map((c) => waitGuestReady(c, { timeoutMs: 240_000 })));
  console.error(`kubevirt-multi: 2 daemons and 2 guests ready in ${Date.now() - t0} ms`);
  for (const pod of pods) assert.ok(Buffer.byteLength(pod.socket) > UNIX_PATH_MAX, `${pod.socket} is longer than a socket address, as a kubelet pod path`);

  hv = new MultiLibvirtHypervisor({
    socketGlob: join(root, 'pods', '*', 'volumes', 'kubernetes.io~empty-dir', 'libvirt-runtime', 'libvirt-sock'),
    statsPeriodSec: 1,
    reconnectInitialMs: 200,
    reconnectMaxMs: 2000,
    log: (l, m, f) => console.error(`[multi ${l}] ${m} ${f ? JSON.stringify(f) : ''}`),
  });
  await hv.connect();
  // The balloon's guest statistics come with the period set on first sight.
  const first = await waitFor('both guests with fresh stats', 30_000, async () => {
    const s = await hv!.collect();
    return s.length === 2 && s.every((g) => g.stale === undefined) ? s : undefined;
  });
  const [ga, gb] = [byName(first, PODS[0]!.guest)!, byName(first, PODS[1]!.guest)!];
  assert.ok(ga && gb, 'both guests are seen');
  assert.ok(ga.id.startsWith(`${PODS[0]!.uid}:`) && gb.id.startsWith(`${PODS[1]!.uid}:`), `ids carry the pod UID: ${ga.id}, ${gb.id}`);
  assert.notEqual(ga.id, gb.id);
  assert.equal(ga.stats.balloon_cur, MEM_MIB * 1024);
  assert.deepEqual(
    hv.sockets().map((s) => [s.key, s.uri, s.connected]),
    PODS.map((p) => [p.uid, 'qemu:///session', true]),
    'each daemon refused qemu:///system and was opened on qemu:///session',
  );

  // Each balloon goes to its own daemon, and each guest sees its own.
  const targetA = 160 * 1024;
  const targetB = 144 * 1024;
  await hv.setBalloon(ga.id, targetA);
  await hv.setBalloon(gb.id, targetB);
  await waitFor(
    'each daemon to report its own target',
    30_000,
    async () => (await actualKiB(pods[0]!, PODS[0]!.guest)) === targetA && (await actualKiB(pods[1]!, PODS[1]!.guest)) === targetB,
  );
  await waitFor('each guest to see its balloon', 30_000, () => {
    const [ta, tb] = consoles.map(guestTotalKiB);
    return ta !== null && tb !== null && ta < (MEM_MIB - 24) * 1024 && tb < ta ? true : undefined;
  });

  // Pod B's daemon stops cleanly: its socket goes, and so does its guest; A is still managed.
  const tStop = Date.now();
  await pods[1]!.stop('SIGTERM');
  const without = await hv.collect();
  assert.deepEqual(
    without.map((g) => [g.id, g.stale]),
    [[ga.id, undefined]],
    'only the guest of the daemon that is still there',
  );
  await hv.setBalloon(ga.id, 176 * 1024);
  await waitFor('A ballooned while B is away', 30_000, async () => (await actualKiB(pods[0]!, PODS[0]!.guest)) === 176 * 1024);
  await assert.rejects(hv.setBalloon(gb.id, targetB), /socket is gone/);

  // B's daemon is back (its QEMU never stopped): the guest comes back under the same id.
  await pods[1]!.start();
  const back = await waitFor('B back with fresh stats', 30_000, async () => {
    const s = await hv!.collect();
    const b = byName(s, PODS[1]!.guest);
    return s.length === 2 && b && b.stale === undefined ? b : undefined;
  });
  assert.equal(back.id, gb.id);
  assert.equal(back.stats.balloon_cur, targetB, 'the guest kept its balloon across the restart');
  await hv.setBalloon(gb.id, 168 * 1024);
  await waitFor('B ballooned again', 30_000, async () => (await actualKiB(pods[1]!, PODS[1]!.guest)) === 168 * 1024);
  console.error(`kubevirt-multi: B stopped and back under management in ${Date.now() - tStop} ms`);

  // SIGKILL: the socket file stays and nothing answers: only B's guest goes stale, and the
  // driver reconnects by itself once the daemon is back.
  await pods[1]!.stop('SIGKILL');
  const staleB = await waitFor('B stale', 30_000, async () => {
    const s = await hv!.collect();
    return byName(s, PODS[1]!.guest)?.stale ? s : undefined;
  });
  assert.equal(byName(staleB, PODS[0]!.guest)?.stale, undefined, 'A stays fresh');
  assert.equal(hv.connection().connected, false);
  const reconnectsBefore = hv.connection().reconnects;
  await pods[1]!.start();
  await waitFor('B reconnected and fresh', 30_000, async () => {
    const s = await hv!.collect();
    return s.length === 2 && s.every((g) => g.stale === undefined) && hv!.connection().connected;
  });
  assert.ok(hv.connection().reconnects > reconnectsBefore, 'the same connection was re-established');
  await hv.setBalloon(gb.id, MEM_MIB * 1024);
  await waitFor('B deflated after the reconnect', 30_000, async () => (await actualKiB(pods[1]!, PODS[1]!.guest)) === MEM_MIB * 1024);
  console.error(`kubevirt-multi: whole run ${Date.now() - t0} ms`);
});

test('ballast run with hypervisor.socket_glob balloons the guests of both daemons by policy', { timeout: 300_000 }, async (t) => {
  if (pods.length !== 2 || pods.some((p) => !p.daemonPid)) return skipLoudly(t, 'the two pod daemons of the first test are not running');
  const dir = join(base, 'daemon');
  mkdirSync(join(dir, 'policies'), { recursive: true });
  const target = 150 * 1024;
  writeFileSync(
    join(dir, 'policies', '50_target.policy'),
    `(with Guests guest (if (or ${PODS.map((p) => `(== (guest.Prop "name") "${p.guest}")`).join(' ')}) (guest.Control "balloon_target" ${target}) 0))\n`,
  );
  const cfg = writeDaemonConfig(dir, {
    hypervisor: { socket_glob: join(root, 'pods', '*', 'volumes', 'kubernetes.io~empty-dir', 'libvirt-runtime', 'libvirt-sock'), uri: 'qemu:///session' },
    api: { socket: join(dir, 'api.sock') },
    safeguards: { max_step_percent: 100, rollback_window: 0 },
    shutdown: { balloons: 'leave' },
  });
  const run = spawnDaemon(cfg);
  t.after(() => {
    if (run.proc.exitCode === null) run.proc.kill('SIGKILL');
  });
  await until('the daemon to balloon both guests to 150 MiB', 90_000, async () => {
    const got = await Promise.all(pods.map((p, i) => actualKiB(p, PODS[i]!.guest)));
    return got.every((k) => k === target);
  }).catch((e) => {
    throw new Error(`${(e as Error).message}\ndaemon log:\n${run.logText().slice(-4000)}`);
  });
  const started = run.logs.find((l) => l.event === 'starting');
  assert.match(String(started?.hypervisor), /on every socket matching/);
  run.proc.kill('SIGTERM');
  assert.equal(await run.exited, 0, 'a clean stop');
});
