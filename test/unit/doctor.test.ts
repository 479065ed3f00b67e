// `ballast doctor`: each host check on fixture trees laid out like /proc and /sys, the guest
// checks on facts, the libvirt probe against the fake libvirtd, the QMP probe against a fake
// QEMU, and the real command on this machine (statuses not asserted: they are the machine's).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import { checkCgroup, checkKsm, checkPsi, checkQmpDir, checkSwap, checkThp, checkThpDefrag } from '../../src/doctor/checks.js';
import { checkGuestCgroup, guestChecks, parseMemballoon, type GuestFacts } from '../../src/doctor/guests.js';
import { majorMinor } from '../../src/host/swap-speed.js';
import { CHECK_IDS, exitCodeOf, runDoctor, type CheckResult } from '../../src/doctor/index.js';
import { formatDoctor } from '../../src/doctor/format.js';
import { defaultConfig, type Config } from '../../src/config/schema.js';
import { MessageStatus, MessageType, encodeFrame, type Frame } from '../../src/hypervisor/libvirt/framing.js';
import { XdrReader, XdrWriter } from '../../src/hypervisor/libvirt/xdr.js';
import { readDomain } from '../../src/hypervisor/libvirt/protocol.js';
import { FakeLibvirtd, guest } from './libvirt/fake-libvirtd.js';
import { cleanup, fakeQmp } from './qmp/fake-server.js';

const REPO = join(import.meta.dirname, '..', '..');

/** A fixture root holding the given files (path relative to / -> content). */
function tree(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'ballast-doctor-'));
  for (const [path, text] of Object.entries(files)) {
    const p = join(root, path);
    mkdirSync(join(p, '..'), { recursive: true });
    writeFileSync(p, text);
  }
  return root;
}

async function withTree<T>(files: Record<string, string>, fn: (root: string) => Promise<T>): Promise<T> {
  const root = tree(files);
  try {
    return await fn(root);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

const KSM = { 'sys/kernel/mm/ksm/run': '1\n', 'sys/kernel/mm/ksm/pages_sharing': '4096\n', 'sys/kernel/mm/ksm/pages_to_scan': '100\n' };
const THP = (enabled: string, defrag: string) => ({
  'sys/kernel/mm/transparent_hugepage/enabled': enabled,
  'sys/kernel/mm/transparent_hugepage/defrag': defrag,
});
const V2_MOUNT = '30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n';
const V2 = { 'proc/self/mountinfo': V2_MOUNT, 'sys/fs/cgroup/cgroup.controllers': 'cpuset cpu io memory pids\n' };
const V1 = {
  'proc/self/mountinfo':
    '35 25 0:30 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory\n' +
    '36 25 0:31 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:16 - cgroup2 cgroup2 rw\n',
  'sys/fs/cgroup/unified/cgroup.controllers': '',
};
const SWAP = 'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/zram0 partition\t4194300\t\t1024\t\t100\n';
const NO_SWAP = 'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n';
const PSI = 'some avg10=1.50 avg60=0.20 avg300=0.00 total=100\nfull avg10=0.50 avg60=0.00 avg300=0.00 total=50\n';
/** A host with nothing to complain about. */
const HEALTHY = {
  ...KSM,
  ...THP('always [madvise] never\n', 'always defer defer+madvise [madvise] never\n'),
  ...V2,
  'proc/swaps': SWAP,
  'proc/pressure/memory': PSI,
};

const denied = (code: string) => async () => code;

test('THP: never warns (guests lose huge pages; ballast keeps them whole); always and madvise are ok and say what each mechanism needs', async () => {
  await withTree(THP('[always] madvise never\n', '[always] defer defer+madvise madvise never\n'), async (root) => {
    const r = await checkThp(root);
    assert.equal(r.status, 'ok');
    assert.match(r.message, /docs\/host\.md#what-a-balloon-step-gives-back-to-the-host/);
    assert.match(r.message, /free-page-reporting=on/);
    assert.match(r.message, /online_movable/);
    assert.equal((await checkThpDefrag(root)).status, 'warn');
  });
  await withTree(THP('always madvise [never]\n', 'always defer defer+madvise madvise [never]\n'), async (root) => {
    const r = await checkThp(root);
    assert.equal(r.status, 'warn');
    assert.match(r.message, /virtio-mem/);
    assert.match(r.fix!, /madvise > \/sys\/kernel\/mm\/transparent_hugepage\/enabled/);
    assert.equal((await checkThpDefrag(root)).status, 'ok');
  });
  await withTree(THP('always [madvise] never\n', 'always defer defer+madvise [madvise] never\n'), async (root) => {
    assert.equal((await checkThp(root)).status, 'ok');
  });
  await withTree({}, async (root) => {
    assert.equal((await checkThp(root)).status, 'ok');
    assert.equal((await checkThpDefrag(root)).status, 'ok');
  });
});

test('KSM: missing warns (skip when not enabled), present and writable is ok, not writable fails', async () => {
  await withTree({}, async (root) => {
    const r = await checkKsm(root, true);
    assert.equal(r.status, 'warn');
    assert.match(r.fix!, /CONFIG_KSM|ksm\.enabled = false/);
    assert.equal((await checkKsm(root, false)).status, 'skip');
  });
  await withTree(KSM, async (root) => {
    const ok = await checkKsm(root, true);
    assert.equal(ok.status, 'ok');
    assert.match(ok.message, /ksmd running, 4096 pages sharing/);
    const eacces = await checkKsm(root, true, denied('EACCES'));
    assert.equal(eacces.status, 'fail');
    assert.match(eacces.fix!, /root|CAP_SYS_ADMIN/);
    assert.match((await checkKsm(root, true, denied('EROFS'))).fix!, /read-only/);
    assert.equal((await checkKsm(root, false, denied('EACCES'))).status, 'skip');
  });
});

test('cgroup: v2 with memory is ok; v1 fails for cgroup control and warns without it; none mounted likewise', async () => {
  await withTree(V2, async (root) => assert.equal((await checkCgroup(root, true)).status, 'ok'));
  await withTree(V1, async (root) => {
    const on = await checkCgroup(root, true);
    assert.equal(on.status, 'fail');
    assert.match(on.message, /cgroup v1/);
    assert.match(on.fix!, /systemd\.unified_cgroup_hierarchy=1/);
    assert.equal((await checkCgroup(root, false)).status, 'warn');
  });
  await withTree({ 'proc/self/mountinfo': V2_MOUNT, 'sys/fs/cgroup/cgroup.controllers': 'cpu io pids\n' }, async (root) => {
    assert.equal((await checkCgroup(root, true)).status, 'fail');
    assert.equal((await checkCgroup(root, false)).status, 'warn');
  });
  await withTree({}, async (root) => assert.equal((await checkCgroup(root, true)).status, 'skip'));
});

test('swap and PSI: missing warns, present is ok', async () => {
  await withTree({ 'proc/swaps': SWAP, 'proc/pressure/memory': PSI }, async (root) => {
    const swap = await checkSwap(root);
    assert.equal(swap.status, 'ok');
    assert.match(swap.message, /1 swap area\(s\), 4096 MiB, 1 MiB used/);
    const psi = await checkPsi(root);
    assert.equal(psi.status, 'ok');
    assert.match(psi.message, /some avg10=1\.5%/);
  });
  await withTree({ 'proc/swaps': NO_SWAP }, async (root) => {
    assert.equal((await checkSwap(root)).status, 'warn');
    const psi = await checkPsi(root);
    assert.equal(psi.status, 'warn');
    assert.match(psi.fix!, /CONFIG_PSI/);
  });
  await withTree({}, async (root) => assert.equal((await checkSwap(root)).status, 'warn'));
});

test("swap: says how ballast's guard will treat the swap the kernel uses first (its device's rotational flag)", async () => {
  for (const [flag, says] of [
    ['1', /on a rotational device, so ballast treats it as slow/],
    ['0', /on a non-rotational device: cold page cache may go to it/],
  ] as const) {
    await withTree({ swapfile: '', 'proc/swaps': '' }, async (root) => {
      // A swap file's device is its filesystem's: the fixture's own, given the flag here.
      const majMin = majorMinor(statSync(join(root, 'swapfile'), { bigint: true }).dev);
      mkdirSync(join(root, 'sys/dev/block', majMin, 'queue'), { recursive: true });
      writeFileSync(join(root, 'sys/dev/block', majMin, 'queue/rotational'), `${flag}\n`);
      writeFileSync(join(root, 'proc/swaps'), 'Filename Type Size Used Priority\n/swapfile file 1048572 0 -2\n');
      const swap = await checkSwap(root);
      assert.equal(swap.status, 'ok');
      assert.match(swap.message, says);
    });
  }
});

test('memballoon XML: model, stats period and free page reporting', () => {
  const xml = (mb: string) => `<domain type='kvm'><name>g</name><devices><disk type='file'/>${mb}</devices></domain>`;
  assert.deepEqual(parseMemballoon(xml(`<memballoon model='virtio' freePageReporting='on'><stats period='5'/><address type='pci'/></memballoon>`)), {
    model: 'virtio',
    statsPeriod: 5,
    freePageReporting: true,
  });
  assert.deepEqual(parseMemballoon(xml(`<memballoon model='virtio'/>`)), { model: 'virtio', statsPeriod: 0, freePageReporting: false });
  assert.deepEqual(parseMemballoon(xml(`<memballoon model='none'/>`)), { model: 'none', statsPeriod: 0, freePageReporting: false });
  assert.deepEqual(parseMemballoon(xml('')), { model: '', statsPeriod: 0, freePageReporting: false });
});

test('guest checks: what is missing warns with its fix, what cannot be seen is skipped', () => {
  const ctx = { statsPeriod: 5, readOnly: false, driver: 'libvirt' as const };
  const by = (rs: CheckResult[]) => Object.fromEntries(rs.map((r) => [r.id.split(':')[2], r]));
  const good: GuestFacts = { name: 'vm1', balloon: 'virtio', statsPeriod: 5, statsArriving: true, freePageReporting: true, pid: 1 };
  assert.deepEqual(
    guestChecks(good, ctx).map((r) => [r.id, r.status]),
    [
      ['guest:vm1:balloon', 'ok'],
      ['guest:vm1:stats', 'ok'],
      ['guest:vm1:free_page_reporting', 'ok'],
    ],
  );

  const none = by(guestChecks({ ...good, balloon: 'none', statsArriving: false }, ctx));
  assert.equal(none.balloon!.status, 'warn');
  assert.match(none.balloon!.fix!, /<memballoon model='virtio'><stats period='5'\/>/);
  assert.equal(none.stats!.status, 'skip');

  const noPeriod = by(guestChecks({ ...good, statsPeriod: 0, statsArriving: false, freePageReporting: false }, ctx));
  assert.equal(noPeriod.stats!.status, 'warn');
  assert.match(noPeriod.stats!.fix!, /virsh dommemstat vm1 --period 5 --live --config/);
  assert.match(noPeriod.stats!.message, /`ballast run` sets it to 5 s/);
  assert.equal(noPeriod.free_page_reporting!.status, 'warn');
  assert.match(noPeriod.free_page_reporting!.fix!, /freePageReporting='on'/);

  const noDriver = by(guestChecks({ ...good, statsArriving: false }, ctx));
  assert.match(noDriver.stats!.fix!, /modprobe virtio_balloon/);

  // Without the domain XML: a balloon that reports stats is there; free page reporting unseen.
  const noXml = by(guestChecks({ ...good, balloon: null, statsPeriod: null, freePageReporting: null }, ctx));
  assert.deepEqual([noXml.balloon!.status, noXml.stats!.status, noXml.free_page_reporting!.status], ['ok', 'ok', 'skip']);
  assert.equal(by(guestChecks({ ...good, balloon: null, statsPeriod: null, statsArriving: false, freePageReporting: null }, ctx)).balloon!.status, 'skip');
});

test("guest cgroup: the guest's own v2 cgroup with writable limits is ok; unwritable, root or missing pid fails", async () => {
  const scope = 'sys/fs/cgroup/machine.slice/vm1.scope';
  const files = {
    ...V2,
    'proc/4242/cgroup': '0::/machine.slice/vm1.scope\n',
    'proc/4242/status': 'Name:\tqemu\n',
    [`${scope}/cgroup.procs`]: '4242\n',
    [`${scope}/memory.high`]: 'max\n',
    [`${scope}/memory.max`]: 'max\n',
    'proc/77/cgroup': '0::/\n',
    'proc/77/status': 'Name:\tqemu\n',
    'sys/fs/cgroup/cgroup.procs': '1\n77\n',
  };
  await withTree(files, async (root) => {
    const ok = await checkGuestCgroup(root, { name: 'vm1', pid: 4242 });
    assert.equal(ok.status, 'ok', ok.message);
    assert.match(ok.message, /cgroup v2 \/machine\.slice\/vm1\.scope: memory\.high and memory\.max writable/);
    const ro = await checkGuestCgroup(root, { name: 'vm1', pid: 4242 }, undefined, denied('EROFS'));
    assert.equal(ro.status, 'fail');
    assert.match(ro.message, /memory\.high \(EROFS\)/);
    assert.equal((await checkGuestCgroup(root, { name: 'vm2', pid: 77 })).status, 'fail');
    const noPid = await checkGuestCgroup(root, { name: 'vm3', pid: null }, '/run/libvirt/qemu');
    assert.equal(noPid.status, 'fail');
    assert.match(noPid.message, /no QEMU pid known/);
  });
});

/** Answers DOMAIN_GET_XML_DESC (the fake has no such call) with `xml(name)`. */
function serveXml(fake: FakeLibvirtd, xml: (id: number) => string | null): void {
  fake.intercept = (sock: Socket, f: Frame) => {
    if (f.header.proc !== 14) return false;
    const text = xml(readDomain(new XdrReader(f.payload)).id);
    if (text === null) return false; // the fake's "not supported" error
    const h = f.header;
    sock.write(
      encodeFrame(
        { prog: h.prog, vers: h.vers, proc: h.proc, type: MessageType.REPLY, serial: h.serial, status: MessageStatus.OK },
        new XdrWriter().string(text).toBuffer(),
      ),
    );
    return true;
  };
}

function config(over: (c: Config) => void = () => {}): Config {
  const c = defaultConfig();
  over(c);
  return c;
}

test('libvirt: guests from the fake libvirtd, with and without their domain XML; every host check id present', async () => {
  const fake = new FakeLibvirtd();
  await fake.start();
  const root = tree(HEALTHY);
  try {
    fake.guests = [guest(1, { name: 'good' }), guest(2, { name: 'bare', guestStats: false }), guest(3, { name: 'noxml' })];
    const mb = (attrs: string, stats: string) => `<domain><devices><memballoon model='virtio'${attrs}>${stats}</memballoon></devices></domain>`;
    serveXml(fake, (id) => (id === 1 ? mb(` freePageReporting='on'`, `<stats period='5'/>`) : id === 2 ? mb('', '') : null));
    const cfg = config((c) => (c.hypervisor.socket = fake.path));
    const results = await runDoctor(cfg, { root, timeoutMs: 2000 });
    const st = Object.fromEntries(results.map((r) => [r.id, r.status]));
    for (const id of CHECK_IDS) assert.ok(id in st, `missing ${id}`);
    assert.equal(st.hypervisor, 'ok');
    assert.equal(st.guests, 'ok');
    assert.deepEqual([st['guest:good:balloon'], st['guest:good:stats'], st['guest:good:free_page_reporting']], ['ok', 'ok', 'ok']);
    assert.deepEqual([st['guest:bare:balloon'], st['guest:bare:stats'], st['guest:bare:free_page_reporting']], ['ok', 'warn', 'warn']);
    assert.deepEqual([st['guest:noxml:balloon'], st['guest:noxml:stats'], st['guest:noxml:free_page_reporting']], ['ok', 'ok', 'skip']);
    assert.equal(st['guest:good:cgroup'], undefined, 'no cgroup check while host.cgroup_limits is off');
    assert.deepEqual([st.ksm, st.thp, st.thp_defrag, st.cgroup, st.swap, st.psi], ['ok', 'ok', 'ok', 'ok', 'ok', 'ok']);
    assert.equal(exitCodeOf(results), 0);
    assert.equal(fake.periods.size, 0, 'the doctor changes nothing');
  } finally {
    await fake.dispose();
    rmSync(root, { recursive: true, force: true });
  }
});

test('libvirt socket_glob (KubeVirt): every matching daemon probed, guests named by pod; one hung daemon warns on its own; no match warns; a wrong pattern fails', async () => {
  const pods = mkdtempSync(join(tmpdir(), 'ballast-doctor-pods-'));
  const fakes = [new FakeLibvirtd(), new FakeLibvirtd(), new FakeLibvirtd()];
  const root = tree(HEALTHY);
  try {
    for (const [i, f] of fakes.entries()) {
      await f.start();
      f.guests = [guest(1, { name: `vm${i}` })];
      mkdirSync(join(pods, `pod-${i}`));
      symlinkSync(f.path, join(pods, `pod-${i}`, 'virtqemud-sock'));
    }
    fakes[2]!.silent = true;
    const cfg = config((c) => (c.hypervisor.socket_glob = join(pods, '*', 'virtqemud-sock')));
    const results = await runDoctor(cfg, { root, timeoutMs: 500 });
    const by = Object.fromEntries(results.map((r) => [r.id, r]));
    assert.equal(by.hypervisor!.status, 'warn', by.hypervisor!.message);
    assert.match(by.hypervisor!.message, /2 of 3 libvirt daemon\(s\) matching/);
    assert.equal(by['hypervisor:pod-2']?.status, 'warn', 'the hung daemon is its own check');
    assert.equal(by['guest:pod-0:vm0:balloon']?.status, 'ok');
    assert.equal(by['guest:pod-1:vm1:balloon']?.status, 'ok');
    assert.equal(by['guest:pod-2:vm2:balloon'], undefined);
    assert.equal(exitCodeOf(results), 0, 'one pod down does not block ballast');

    const none = await runDoctor(
      config((c) => (c.hypervisor.socket_glob = join(pods, '*', 'no-such-sock'))),
      { root, timeoutMs: 500 },
    );
    assert.equal(none.find((r) => r.id === 'hypervisor')!.status, 'warn');
    const wrong = await runDoctor(
      config((c) => (c.hypervisor.socket_glob = join(pods, 'missing-*', 'x', '*'))),
      { root, timeoutMs: 500 },
    );
    const hv = wrong.find((r) => r.id === 'hypervisor')!;
    assert.equal(hv.status, 'fail');
    assert.match(hv.message, /socket_glob/);
    assert.equal(exitCodeOf(wrong), 1);
  } finally {
    for (const f of fakes) await f.dispose();
    rmSync(pods, { recursive: true, force: true });
    rmSync(root, { recursive: true, force: true });
  }
});

test('libvirt unreachable fails with a fix, and the run exits 1; the table shows it', async () => {
  const root = tree({ ...HEALTHY, ...THP('always madvise [never]\n', 'always [madvise] never\n') });
  try {
    const cfg = config((c) => (c.hypervisor.socket = join(root, 'no-such-sock')));
    const results = await runDoctor(cfg, { root, timeoutMs: 1000 });
    const hv = results.find((r) => r.id === 'hypervisor')!;
    assert.equal(hv.status, 'fail');
    assert.match(hv.message, /ENOENT/);
    assert.match(hv.fix!, /start libvirtd/);
    assert.equal(results.find((r) => r.id === 'guests')!.status, 'skip');
    assert.equal(exitCodeOf(results), 1);
    const table = formatDoctor(results, 'header');
    assert.match(table, /^FAIL {3}hypervisor/m);
    assert.match(table, /^WARN {3}thp /m);
    assert.match(table, /^ +fix: start libvirtd/m);
    assert.match(table, /1 fail, 1 skip: something blocks ballast \(exit 1\)/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('qmp: a missing directory fails, an empty one warns, a guest behind a socket is checked', async () => {
  const missing = await checkQmpDir('/nonexistent/ballast-qmp');
  assert.equal(missing.check.status, 'fail');
  const empty = mkdtempSync(join(tmpdir(), 'ballast-doctor-qmp-'));
  const root = tree(HEALTHY);
  const q = await fakeQmp(join(empty, 'vm1.sock'));
  try {
    q.handle = (cmd) => {
      const ret = (v: unknown) => ({ return: v, id: cmd.id });
      const prop = cmd.arguments?.property;
      if (cmd.execute === 'query-name') return ret({ name: 'vm1' });
      if (cmd.execute === 'query-cpus-fast') return ret([]);
      if (cmd.execute === 'qom-list')
        return ret(cmd.arguments?.path === '/machine/peripheral' ? [{ name: 'balloon0', type: 'child<virtio-balloon-pci>' }] : []);
      if (cmd.execute === 'qom-get' && prop === 'guest-stats-polling-interval') return ret(0);
      if (cmd.execute === 'qom-get' && prop === 'guest-stats') return ret({ stats: {}, 'last-update': 0 });
      if (cmd.execute === 'qom-get' && prop === 'free-page-reporting') return ret(true);
      return ret({});
    };
    const results = await runDoctor(
      config((c) => {
        c.hypervisor.driver = 'qmp';
        c.hypervisor.qmp_dir = empty;
      }),
      { root, timeoutMs: 1000 },
    );
    const st = Object.fromEntries(results.map((r) => [r.id, r.status]));
    assert.equal(st.hypervisor, 'ok');
    assert.deepEqual([st['guest:vm1:balloon'], st['guest:vm1:stats'], st['guest:vm1:free_page_reporting']], ['ok', 'warn', 'ok']);
    assert.ok(!q.received.some((c) => c.execute === 'qom-set'), 'the doctor changes nothing');
  } finally {
    await cleanup(q);
  }
  // QEMU's monitor serves one client at a time: a busy one sends no greeting.
  const busy = await fakeQmp(join(empty, 'busy.sock'));
  busy.greeting = null;
  try {
    const results = await runDoctor(
      config((c) => {
        c.hypervisor.driver = 'qmp';
        c.hypervisor.qmp_dir = empty;
      }),
      { root, timeoutMs: 200 },
    );
    const r = results.find((x) => x.id === 'guest:busy.sock:qmp')!;
    assert.equal(r.status, 'warn');
    assert.match(r.message, /no greeting/);
  } finally {
    await busy.close();
  }
  rmSync(join(empty, 'busy.sock'), { force: true });
  try {
    assert.equal((await checkQmpDir(empty)).check.status, 'warn');
  } finally {
    rmSync(empty, { recursive: true, force: true });
    rmSync(root, { recursive: true, force: true });
  }
});

test('`ballast doctor --json` on this machine: valid JSON, every check id, exit code from the statuses', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'doctor', '--json', '--timeout', '1'], { cwd: REPO, encoding: 'utf8' });
  const out = JSON.parse(r.stdout) as { ok: boolean; results: CheckResult[]; counts: Record<string, number> };
  const ids = out.results.map((x) => x.id);
  for (const id of CHECK_IDS) assert.ok(ids.includes(id), `missing ${id}`);
  for (const x of out.results) assert.ok(['ok', 'warn', 'fail', 'skip'].includes(x.status), `${x.id}: ${x.status}`);
  const failed = out.results.some((x) => x.status === 'fail');
  assert.equal(r.status, failed ? 1 : 0, r.stderr);
  assert.equal(out.ok, !failed);
});
