// The pure parts of the lab's libvirt rows: which guests a set of runs needs (momd only on
// libvirt, with a MOM checkout), momd's and `ballast run`'s generated configs, what their
// logs say they did, and a process's CPU time and RSS from /proc.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { guestsVia, parseVia } from '../../../src/experiments/lab-memknobs/via.js';
import {
  checkMomCheckout,
  checkVdsmCheckout,
  countMomdLog,
  momdCheckouts,
  momdConfig,
  momdPolicies,
} from '../../../src/experiments/lab-memknobs/momd-manager.js';
import { ballastProcessConfig, countBallastLog } from '../../../src/experiments/lab-memknobs/ballast-process.js';
import { parseStatTimes, parseStatusRss } from '../../../src/host/process.js';
import { processManagerReport } from '../../../src/experiments/lab-memknobs/libvirt-run.js';
import { configParts, ALL_CONFIGS, CONFIG_TITLES } from '../../../src/experiments/lab-memknobs/plan.js';
import { parseConfigText as parseConfig } from '../../../src/config/load.js';
import { toSafeguardConfig } from '../../../src/daemon/convert.js';
import { MOM_STYLE_SAFEGUARDS } from '../../../src/experiments/lab-memknobs/manager.js';

test('momd is a config of its own, with a title', () => {
  assert.ok(ALL_CONFIGS.includes('momd'));
  assert.match(CONFIG_TITLES.momd, /MOM's own daemon/);
  assert.equal(configParts('momd').manager, 'momd');
});

test('guestsVia: momd needs --mom and runs every row on libvirt guests; qmp stays the default', () => {
  assert.equal(guestsVia(['none', 'ballast'], {}), 'qmp');
  assert.equal(guestsVia(['none', 'ballast'], { via: 'libvirt' }), 'libvirt');
  assert.equal(guestsVia(['momd', 'ballast'], { mom: '/tmp/mom' }), 'libvirt');
  assert.throws(() => guestsVia(['momd'], {}), /--mom PATH/);
  assert.throws(() => guestsVia(['momd'], { mom: '/tmp/mom', via: 'qmp' }), /only libvirt/);
  assert.throws(() => guestsVia(['ballast'], { mom: '/tmp/mom' }), /add momd to --configs/);
  assert.throws(() => guestsVia(['momd'], { mom: '/tmp/mom', thp: 'off' }), /--thp off/);
  // pvestatd's rule drives libvirt guests through ballast's libvirt driver, beside momd.
  assert.equal(guestsVia(['momd', 'proxmox'], { mom: '/tmp/mom' }), 'libvirt');
  assert.throws(() => guestsVia(['mom+psi'], { via: 'libvirt' }), /mom\+psi/);
  assert.equal(parseVia(undefined), undefined);
  assert.throws(() => parseVia('kvm'), /qmp or libvirt/);
});

test('checkMomCheckout: refuses a path without MOM, names what is missing', (t) => {
  assert.throws(() => checkMomCheckout(undefined), /--mom PATH/);
  const dir = mkdtempSync(join(tmpdir(), 'mom-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  assert.throws(() => checkMomCheckout(dir), /not a MOM checkout \(no momd\.in/);
  for (const f of ['momd.in', 'mom/__init__.py', 'mom/HypervisorInterfaces/libvirtInterface.py', 'doc/balloon.rules', 'doc/ksm.rules']) {
    mkdirSync(join(dir, f, '..'), { recursive: true });
    writeFileSync(join(dir, f), '');
  }
  assert.equal(checkMomCheckout(dir), dir);
});

test("momdConfig: libvirt at the run's daemon, the domain as the host, MOM's collectors and controllers", () => {
  const c = momdConfig({
    uri: 'qemu+unix:///session?socket=/run/x/sock',
    domainDir: '/sys/fs/cgroup/memory/d',
    policyDir: '/run/m/p',
    statsIntervalS: 2,
    policyIntervalS: 4,
  });
  assert.match(c, /^hypervisor-interface: libvirt$/m);
  assert.match(c, /^libvirt-hypervisor-uri: qemu\+unix:\/\/\/session\?socket=\/run\/x\/sock$/m);
  assert.match(c, /^host-monitor-interval: 2$/m);
  assert.match(c, /^guest-monitor-interval: 2$/m);
  assert.match(c, /^policy-engine-interval: 4$/m);
  assert.match(c, /^controllers: Balloon, KSM$/m);
  assert.match(c, /^policy-dir: \/run\/m\/p$/m);
  assert.match(c, /^\[host\]\ncollectors: DomainMemory, HostKSM$/m);
  assert.match(c, /^\[guest\]\ncollectors: GuestQemuProc, GuestMemory, GuestBalloon$/m);
  assert.match(c, /^\[Collector: DomainMemory\]\ndomain: \/sys\/fs\/cgroup\/memory\/d$/m);
  assert.match(c, /^rpc-port: -1$/m);
});

test("countMomdLog: MOM's Balloon and KSM controller lines, and errors", () => {
  const log = [
    '2026-12-05 10:00:01,000 - mom.GuestMonitor.Thread - INFO - GuestMonitor-ballast-lab-x1-1 starting',
    '2026-12-05 10:00:05,000 - mom.Controllers.Balloon - INFO - Ballooning guest:ballast-lab-x1-1 from 393216 to 373555',
    '2026-12-05 10:00:09,000 - mom.Controllers.Balloon - INFO - Ballooning guest:ballast-lab-x1-2 from 393216 to 373555',
    "2026-12-05 10:00:09,000 - mom.Controllers.KSM - INFO - Updating KSM configuration: {'run': 1, 'sleep_millisecs': 200}",
    '2026-12-05 10:00:13,000 - mom.GuestMonitor - ERROR - Guest Monitor initialization failed',
    'Traceback (most recent call last):',
  ].join('\n');
  assert.deepEqual(countMomdLog(log), { balloonActions: 2, ksmUpdates: 1, ksmRunSeen: true, errors: 2 });
  assert.deepEqual(countMomdLog(''), { balloonActions: 0, ksmUpdates: 0, ksmRunSeen: false, errors: 0 });
});

test('ballastProcessConfig: a valid ballast config; MOM style is the in-process basic guards', () => {
  const base = {
    uri: 'qemu:///session',
    socket: '/run/x/libvirt-sock',
    qemuPidDir: '/run/x/run/libvirt/qemu/run',
    domainDir: '/sys/fs/cgroup/memory/d',
    policyDir: '/run/m/p',
    statsIntervalS: 2,
    policyIntervalS: 4,
    guestPsi: false,
  };
  const b = parseConfig(ballastProcessConfig({ ...base, style: 'ballast' }));
  assert.equal(b.hypervisor.driver, 'libvirt');
  assert.equal(b.hypervisor.socket, '/run/x/libvirt-sock');
  assert.equal(b.hypervisor.qemu_pid_dir, '/run/x/run/libvirt/qemu/run');
  assert.equal(b.hypervisor.stats_period, 2);
  assert.equal(b.engine.stats_interval, 2);
  assert.equal(b.engine.policy_interval, 4);
  assert.equal(b.host.memory_domain, '/sys/fs/cgroup/memory/d');
  assert.equal(b.api.socket, '');
  assert.equal(b.safeguards.headroom_mib, 64, "ballast's own safeguards: the defaults");
  assert.equal(b.reclaim.enabled, false, 'reclaim inside guests only in the reclaim rows');
  assert.equal(parseConfig(ballastProcessConfig({ ...base, style: 'ballast', reclaim: true })).reclaim.enabled, true);
  const m = parseConfig(ballastProcessConfig({ ...base, style: 'mom' }));
  assert.equal(m.safeguards.min_guest_mib, 0);
  assert.equal(m.safeguards.headroom_mib, 0);
  assert.equal(m.safeguards.max_step_percent, 100);
  assert.equal(m.safeguards.rollback_window, 0);
  assert.equal(m.safeguards.cache_step_percent, 'off');
  assert.equal(m.safeguards.psi_stop_percent, 'off');
  assert.equal(m.safeguards.quiet_growth_percent, 0);
  assert.equal(b.safeguards.quiet_growth_percent, 25);
  // The process rows' MOM style is the in-process manager's, key by key.
  const asRun = toSafeguardConfig(m);
  for (const [k, v] of Object.entries(MOM_STYLE_SAFEGUARDS)) assert.deepEqual(asRun[k as keyof typeof asRun], v, k);
});

test('countBallastLog: applied balloon, virtio-mem, reclaim and rollback records, summarised cycles, errors', () => {
  const rec = (o: object) => JSON.stringify({ ts: '2026-12-05T10:00:00.000Z', level: 'info', ...o });
  const log = [
    rec({ event: 'started' }),
    rec({ event: 'action', control: 'balloon_target', result: 'applied', from: 393216, to: 353894 }),
    rec({ level: 'warn', event: 'rollback', control: 'balloon_target', result: 'applied', from: 353894, to: 393216 }),
    rec({ event: 'action', control: 'vmem_target', result: 'applied', from: 262144, to: 131072 }),
    rec({ event: 'action', control: 'ksm_run', result: 'applied', from: 0, to: 1 }),
    rec({ event: 'action', control: 'cache_target', result: 'applied', from: 131072, to: 104858 }),
    rec({ event: 'action', control: 'cache_target', result: 'unchanged', from: 16384, to: 15000 }),
    rec({ event: 'cycle_summary', actions: { 'balloon_target:applied': 17, 'balloon_target:failed': 1, 'cache_target:applied': 2 } }),
    rec({ level: 'error', event: 'action_failed', control: 'balloon_target', result: 'failed' }),
    'not json',
  ].join('\n');
  assert.deepEqual(countBallastLog(log), { balloonActions: 19, rollbacks: 1, vmemActions: 1, vmemUnplugs: 1, reclaimActions: 3, errors: 1, ksmRunSeen: true });
});

test('parseStatTimes: fields counted after the last parenthesis of the command name', () => {
  // A command name with spaces and parentheses, as a python thread may have.
  const stat = '4242 (py (mom) d) S 1 4242 4242 0 -1 4194560 1000 0 0 0 1234 567 89 10 20 0 7 0 100 1000000 2000 18446744073709551615';
  assert.deepEqual(parseStatTimes(stat), { utime: 1234, stime: 567, cutime: 89, cstime: 10 });
  assert.equal(parseStatTimes('garbage'), null);
});

test('parseStatusRss: VmRSS in kB, null when absent', () => {
  assert.equal(parseStatusRss('Name:\tpython3\nVmPeak:\t 50000 kB\nVmRSS:\t   31337 kB\n'), 31337);
  assert.equal(parseStatusRss('Name:\tkthreadd\n'), null);
});

test('processManagerReport: what a process manager did not count is NaN (null in JSON), never 0', () => {
  const usage = { pid: 1, cpuS: 1.5, rssPeakMiB: 40, rssMeanMiB: 38, samples: 10, windowS: 10 };
  const common = { pid: 1, usage, balloonActions: 5, errors: 0, ksmRunSeen: false, ksmRestoreError: null, exitedEarly: false, log: null };
  const momd = processManagerReport({ ...common, manager: 'momd', rollbacks: null, vmemActions: null, vmemUnplugs: null, momCommit: 'abc' });
  assert.equal(momd.balloonActions, 5);
  assert.equal(momd.rollbacks, 0, 'MOM has no rollbacks');
  assert.ok(Number.isNaN(momd.cycles));
  assert.equal(JSON.parse(JSON.stringify(momd)).cycles, null);
  const b = processManagerReport({ ...common, manager: 'ballast', rollbacks: 2, vmemActions: 0, vmemUnplugs: 0 });
  assert.equal(b.rollbacks, 2);
  assert.ok(Number.isNaN(b.vetoes));
});

test("domainXml: a libvirt guest's page-cache disk is raw, read-only and uncached on the host", async () => {
  const { domainXml } = await import('../../../src/lab/guests.js');
  const xml = domainXml({
    name: 'ballast-lab-x1-1',
    memMiB: 384,
    kernel: '/k',
    initrd: '/i',
    consolePath: '/c',
    statsPeriodS: 2,
    emulator: '/usr/bin/qemu-system-x86_64',
    freePageReporting: true,
    disk: '/run/x/g1.disk',
  });
  assert.match(
    xml,
    /<disk type='file' device='disk'>\s*<driver name='qemu' type='raw' cache='none'\/>\s*<source file='\/run\/x\/g1\.disk'\/>\s*<target dev='vda' bus='virtio'\/>\s*<readonly\/>/,
  );
  assert.match(xml, /<memballoon model='virtio' freePageReporting='on'>/);
  assert.doesNotMatch(domainXml({ name: 'g', memMiB: 256, kernel: '/k', initrd: '/i', consolePath: '/c', statsPeriodS: 2, emulator: '/q' }), /<disk/);
});

test('SpawnedManager: waits for its log to say it runs, measures the window, stops it by PID, puts KSM back', async () => {
  const { SpawnedManager } = await import('../../../src/experiments/lab-memknobs/process-manager.js');
  const { pidAlive } = await import('../../../src/lab/proc.js');
  const dir = mkdtempSync(join(tmpdir(), 'spawned-'));
  const ksm = join(dir, 'ksm');
  mkdirSync(ksm);
  for (const [k, v] of [
    ['run', '0'],
    ['pages_to_scan', '100'],
    ['sleep_millisecs', '20'],
  ])
    writeFileSync(join(ksm, k!), `${v}\n`);
  const log = join(dir, 'm.log');
  const m = await SpawnedManager.start({
    what: 'a fake manager',
    command: 'sh',
    // Changes a KSM knob as a manager would, says it is up, logs once in the window.
    args: ['-c', `echo 1 > ${ksm}/run; echo up; sleep 0.5; echo 'in the window'; exec sleep 60`],
    log,
    ready: (text) => text.includes('up'),
    readyTimeoutMs: 10_000,
    ksmDir: ksm,
  });
  m.markWindow();
  await new Promise((r) => setTimeout(r, 1200));
  const out = await m.stop();
  assert.equal(out.exitedEarly, false);
  assert.match(out.windowLog, /in the window/);
  assert.doesNotMatch(out.windowLog, /up/, 'only what it logged after the window opened');
  assert.ok(out.usage.rssMeanMiB !== null && out.usage.samples >= 1);
  assert.ok(out.usage.cpuS !== null && out.usage.cpuS >= 0);
  assert.equal(pidAlive(m.pid), false, 'stopped');
  assert.equal((await import('node:fs')).readFileSync(join(ksm, 'run'), 'utf8').trim(), '0', 'KSM put back as found');
  assert.equal(out.ksmError, null);
  assert.equal(await m.stop(), await m.stop(), 'once');

  await assert.rejects(
    SpawnedManager.start({
      what: 'a failing manager',
      command: 'sh',
      args: ['-c', 'echo bad config; exit 3'],
      log: join(dir, 'f.log'),
      ready: () => false,
      readyTimeoutMs: 10_000,
      ksmDir: ksm,
    }),
    /a failing manager exited at start; its log .* ends:\nbad config/,
  );
});

test("--vdsm: momd's policy directory is vdsm's mom.d as vdsm loads it, linked; a path without it is refused", async (t) => {
  const mom = momdPolicies('/m');
  assert.deepEqual(
    mom.links.map((l) => [l.from, l.name]),
    [
      ['/m/doc/balloon.rules', '10-balloon.policy'],
      ['/m/doc/ksm.rules', '20-ksm.policy'],
    ],
  );
  assert.deepEqual(mom.written, []);
  const v = momdPolicies('/m', '/v');
  assert.deepEqual(
    v.links.map((l) => l.name),
    ['00-defines.policy', '02-balloon.policy', '03-ksm.policy'],
  );
  assert.ok(v.links.every((l) => l.from === `/v/static/etc/vdsm/mom.d/${l.name}`));
  // 01-parameters is what vdsm sets in its place over MOM's RPC (the file ships balloonEnabled 0).
  assert.deepEqual(
    v.written.map((w) => w.name),
    ['01-parameters.policy'],
  );
  assert.match(v.written[0]!.text, /^\(set balloonEnabled True\)$/m);
  assert.match(v.written[0]!.text, /^\(set ksmEnabled True\)$/m);

  const dir = mkdtempSync(join(tmpdir(), 'vdsm-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  assert.throws(() => checkVdsmCheckout(dir), /not a vdsm checkout \(no static\/etc\/vdsm\/mom\.d\/00-defines\.policy/);
  mkdirSync(join(dir, 'static/etc/vdsm/mom.d'), { recursive: true });
  for (const n of ['00-defines', '01-parameters', '02-balloon', '03-ksm']) writeFileSync(join(dir, `static/etc/vdsm/mom.d/${n}.policy`), '');
  assert.equal(checkVdsmCheckout(dir), dir);
  await assert.rejects(momdCheckouts(['ballast'], { vdsm: dir }), /--vdsm gives the momd row its policies: name momd in --configs/);
  assert.deepEqual(await momdCheckouts(['ballast'], {}), { mom: undefined, vdsm: undefined });
});
