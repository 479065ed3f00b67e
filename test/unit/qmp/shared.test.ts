// The QMP driver's shared mode against in-test QMP servers: a connection per collection and per
// action, closed each time; the facts of a QEMU learnt once per socket file; a socket that
// does not greet (another client on it), a batch cut at the hold cap, garbage; and the Proxmox
// VE layout (VM configs, the sockets that are not QMP).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QmpHypervisor } from '../../../src/hypervisor/qmp/hypervisor.js';
import { qmpSession } from '../../../src/hypervisor/qmp/session.js';
import { cleanup, type FakeQmp, fakeQmp } from './fake-server.js';

const MiB = 1048576;

/** A QEMU-like guest with a balloon; `open` counts connections not yet closed. */
function qemuLike(f: FakeQmp, o: { period?: number; silent?: string } = {}): { open: () => number; connections: () => number } {
  let open = 0;
  let total = 0;
  f.server.on('connection', (sock) => {
    open++;
    total++;
    sock.on('close', () => open--);
  });
  f.handle = (cmd) => {
    const r = (v: unknown) => ({ return: v, id: cmd.id });
    if (cmd.execute === o.silent) return null;
    switch (cmd.execute) {
      case 'query-name':
        return r({ name: 'qemu-says-so' });
      case 'query-memory-size-summary':
        return r({ 'base-memory': 256 * MiB });
      case 'query-cpus-fast':
        return r([{ 'thread-id': process.pid }]);
      case 'qom-list':
        return r(cmd.arguments!.path === '/machine/peripheral' ? [{ name: 'balloon0', type: 'child<virtio-balloon-pci>' }] : []);
      case 'query-balloon':
        return r({ actual: 192 * MiB });
      case 'query-memory-devices':
        return r([]);
      case 'qom-get':
        if (cmd.arguments!.property === 'free-page-reporting') return r(true);
        if (cmd.arguments!.property === 'guest-stats-polling-interval') return r(o.period ?? 0);
        return r({ stats: { 'stat-total-memory': 180 * MiB, 'stat-free-memory': 50 * MiB }, 'last-update': 1000 });
      default:
        return r({});
    }
  };
  return { open: () => open, connections: () => total };
}

async function settle(what: string, f: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !f(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(f(), what);
}

test('shared mode: a connection per collection, closed after it; facts learnt once; the period set only when nobody did', async (t) => {
  const f = await fakeQmp();
  t.after(() => cleanup(f));
  const q = qemuLike(f);
  const h = new QmpHypervisor({ socketDir: f.dir, mode: 'shared', statsPeriodS: 3 });
  t.after(() => h.close());
  await h.connect();
  assert.equal(q.connections(), 0, 'connect() opens nothing: shared sockets are opened per collection');

  const [s] = await h.collect();
  assert.equal(s!.id, 'vm');
  assert.equal(s!.stale, undefined);
  assert.equal(s!.stats.balloon_cur, 192 * 1024);
  assert.equal(s!.stats.balloon_max, 256 * 1024);
  assert.equal(s!.stats.mem_available, 180 * 1024);
  assert.equal(s!.props.qemu_name, 'qemu-says-so');
  assert.equal(s!.props.free_page_reporting, 1);
  await settle('the collection closed its connection', () => q.open() === 0);
  assert.equal(q.connections(), 1);
  const set = f.received.filter((c) => c.execute === 'qom-set');
  assert.deepEqual(set[0]?.arguments, { path: '/machine/peripheral/balloon0', property: 'guest-stats-polling-interval', value: 3 }, 'nobody had set a period');

  f.received.length = 0;
  const [s2] = await h.collect();
  assert.equal(s2!.stale, undefined);
  assert.deepEqual(
    f.received.map((c) => c.execute).sort(),
    ['qmp_capabilities', 'qom-get', 'query-balloon', 'query-memory-devices', 'query-memory-size-summary'],
    'a known QEMU: one round of commands',
  );
  await settle('closed again', () => q.open() === 0);

  // The virtio-mem capability's listing is this collection's answer, not another connection.
  assert.deepEqual(await h.execute('vm', 'query-memory-devices'), []);
  assert.equal(q.connections(), 2);

  f.received.length = 0;
  await h.setBalloon('vm', 128 * 1024);
  assert.deepEqual(
    f.received.map((c) => [c.execute, c.arguments?.value]),
    [
      ['qmp_capabilities', undefined],
      ['balloon', 128 * MiB],
    ],
  );
  await settle('the action closed its connection', () => q.open() === 0);
  assert.equal(q.connections(), 3, 'a balloon action opens its own connection');
  const st = h.sessionStats();
  assert.equal(st.sessions, 3);
  assert.equal(st.busy + st.aborted, 0);
});

test('shared mode: a new QEMU on the same path is learnt anew; a period someone set is kept', async (t) => {
  const f = await fakeQmp();
  t.after(() => cleanup(f));
  qemuLike(f, { period: 2 });
  const h = new QmpHypervisor({ socketDir: f.dir, mode: 'shared' });
  t.after(() => h.close());
  await h.collect();
  assert.equal(f.received.filter((c) => c.execute === 'qom-set').length, 0, "Proxmox VE's 2 s stays");
  assert.equal(f.received.filter((c) => c.execute === 'query-name').length, 1);
  await h.collect();
  assert.equal(f.received.filter((c) => c.execute === 'query-name').length, 1, 'learnt once');
  // QEMU restarted: its socket file is a new one.
  await new Promise<void>((r) => f.server.close(() => r()));
  rmSync(f.path, { force: true });
  await f.start();
  qemuLike(f, { period: 2 });
  const [s] = await h.collect();
  assert.equal(s!.stale, undefined);
  assert.equal(f.received.filter((c) => c.execute === 'query-name').length, 2, 'a new socket file: learnt again');
});

test('shared mode: no greeting (another client holds the socket) is busy: stale, retried, nothing lost', async (t) => {
  const f = await fakeQmp();
  t.after(() => cleanup(f));
  const q = qemuLike(f);
  const h = new QmpHypervisor({ socketDir: f.dir, mode: 'shared', holdMs: 100 });
  t.after(() => h.close());
  const [fresh] = await h.collect();
  assert.equal(fresh!.stale, undefined);
  f.greeting = null;
  const [busy] = await h.collect();
  assert.match(busy!.stale ?? '', /no greeting within 100 ms \(another client holds the socket\); retried at the next collection/);
  assert.equal(busy!.id, 'vm');
  assert.equal(busy!.stats.balloon_cur, 192 * 1024, 'the last balloon size stays');
  assert.equal(busy!.stats.balloon_max, 256 * 1024);
  await settle('the waiting connection given up', () => q.open() === 0);
  assert.equal(h.sessionStats().busy, 1);
  assert.equal(h.connection().connected, true, 'busy is not a lost connection');
  f.greeting = `${JSON.stringify({ QMP: { version: { qemu: { major: 9, minor: 0, micro: 0 } }, capabilities: [] } })}\r\n`;
  const [again] = await h.collect();
  assert.equal(again!.stale, undefined, 'retried at the next collection');
});

test('shared mode: a batch that outlasts the hold cap is cut and the socket released; a garbled greeting is a clear error', async (t) => {
  const f = await fakeQmp();
  t.after(() => cleanup(f));
  const q = qemuLike(f, { silent: 'query-balloon' });
  const h = new QmpHypervisor({ socketDir: f.dir, mode: 'shared', holdMs: 150 });
  t.after(() => h.close());
  const [s] = await h.collect();
  // A guest never reached yet is shown, stale with the reason, without made-up numbers.
  assert.match(s!.stale ?? '', /cap 150 ms\): aborted; retried at the next collection/);
  assert.equal(s!.stats.balloon_cur, null);
  assert.equal(h.sessionStats().aborted, 1);
  await settle('the socket released at the cap', () => q.open() === 0);
  const again = qemuLike(f);
  await h.collect();
  assert.equal(again.open(), 0);
  // Now known: a later cut leaves a stale sample with the reason.
  qemuLike(f, { silent: 'qom-get' });
  const [cut] = await h.collect();
  assert.match(cut!.stale ?? '', /batch not done after holding the socket \d+ ms \(cap 150 ms\): aborted/);
  f.greeting = 'SSH-2.0-OpenSSH_9.2\r\n';
  const [garbled] = await h.collect();
  assert.match(garbled!.stale ?? '', /QMP: .*garbage on the socket|expected the QMP greeting/);
  assert.equal(garbled!.stats.balloon_cur, 192 * 1024);
  assert.equal(h.connection().connected, false, 'a peer that does not speak QMP is a problem, not busy');
});

test('qmpSession: measures the hold from the greeting; refused sockets keep their code', async (t) => {
  const f = await fakeQmp();
  t.after(() => cleanup(f));
  qemuLike(f);
  const r = await qmpSession(f.path, { waitMs: 1000, holdMs: 1000 }, (q) => q.execute('query-balloon'));
  assert.deepEqual(r.value, { actual: 192 * MiB });
  assert.ok(r.heldMs > 0 && r.waitedMs >= 0);
  const dead = join(f.dir, 'dead.sock');
  const s = createServer();
  await new Promise<void>((res) => s.listen(dead, () => res()));
  s.close();
  await assert.rejects(
    qmpSession(dead, { waitMs: 100, holdMs: 100 }, async () => 1),
    (e: Error & { code?: string }) => e.code === 'ECONNREFUSED' || e.code === 'ENOENT',
  );
});

test('Proxmox VE layout: <vmid>.qmp only, names and floors from the configs, balloon: 0 never touched, bad configs stale', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'ballast-pve-unit-'));
  const run = join(root, 'run');
  const etc = join(root, 'etc');
  mkdirSync(run);
  mkdirSync(etc);
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const vms: Record<string, FakeQmp> = {};
  for (const id of ['101', '102', '103', '104']) {
    vms[id] = await fakeQmp(join(run, `${id}.qmp`));
    qemuLike(vms[id]!);
  }
  t.after(async () => {
    for (const f of Object.values(vms)) await f.close();
  });
  // Sockets that are not QMP: a VNC display and a serial console (connecting would take it).
  let decoyConnections = 0;
  const decoys = ['101.vnc', '101.serial0', 'qsd-101.qmp'].map((n) => {
    const s = createServer((c) => {
      decoyConnections++;
      c.destroy();
    });
    s.listen(join(run, n));
    return s;
  });
  t.after(() => {
    for (const d of decoys) d.close();
  });
  await new Promise((r) => setTimeout(r, 50));
  writeFileSync(join(etc, '101.conf'), 'memory: 256\nballoon: 128\nname: web1\n\n[snap]\nballoon: 0\n');
  writeFileSync(join(etc, '102.conf'), 'memory: 256\nballoon: 0\nname: nope\n');
  writeFileSync(join(etc, '103.conf'), 'memory: 256\nballoon = 128\n');
  const logs: string[] = [];
  assert.throws(() => new QmpHypervisor({ socketDir: run, pveConfigDir: etc }), /needs the shared mode/);
  const h = new QmpHypervisor({ socketDir: run, mode: 'shared', pveConfigDir: etc, log: (level, msg) => logs.push(`${level}: ${msg}`) });
  t.after(() => h.close());
  const samples = await h.collect();
  const by = Object.fromEntries(samples.map((s) => [s.id, s]));
  assert.deepEqual(Object.keys(by).sort(), ['101', '103', '104'], 'balloon: 0 is left out, decoys are not guests');
  assert.equal(by['101']!.name, 'web1');
  assert.equal(by['101']!.stats.balloon_min, 128 * 1024);
  assert.equal(by['101']!.stale, undefined);
  assert.equal(by['101']!.props.vmid, '101');
  assert.equal(by['101']!.props.pvestatd_balloons, 1, 'balloon below memory and shares not 0: pvestatd balloons it too');
  assert.match(by['103']!.stale ?? '', /Proxmox VE config: .*103\.conf:2: not a "key: value" line/);
  assert.equal(by['103']!.stats.balloon_min, 256 * 1024, 'an unreadable config: the floor is the whole memory');
  assert.match(by['104']!.stale ?? '', /104\.conf: no such file/);
  assert.equal(vms['102']!.received.length, 0, 'a VM with ballooning off is never connected to');
  assert.equal(decoyConnections, 0);
  await assert.rejects(h.setBalloon('102', 200 * 1024), /ballooning off in its Proxmox VE config \(balloon: 0\)/);
  await assert.rejects(h.setBalloon('104', 200 * 1024), /config cannot be read/);
  assert.equal(vms['102']!.received.length + vms['104']!.received.filter((c) => c.execute === 'balloon').length, 0);

  // The config garbled later: its last good values stay, said once.
  writeFileSync(join(etc, '101.conf'), 'memory: 256\nballoon: lots\n');
  await h.collect();
  const [again] = (await h.collect()).filter((s) => s.id === '101');
  assert.equal(again!.stale, undefined);
  assert.equal(again!.stats.balloon_min, 128 * 1024);
  assert.equal(logs.filter((l) => /last good values stay/.test(l)).length, 1);
  assert.equal(logs.filter((l) => /pvestatd balloons this VM too/.test(l)).length, 1);
  // Handed over (shares: 0) and migrating: left alone while the lock holds.
  writeFileSync(join(etc, '101.conf'), 'memory: 256\nballoon: 128\nshares: 0\nlock: migrate\n');
  const before = vms['101']!.received.length;
  const [mig] = (await h.collect()).filter((s) => s.id === '101');
  assert.match(mig!.stale ?? '', /lock: migrate/);
  assert.equal(mig!.props.pvestatd_balloons, 0);
  assert.equal(vms['101']!.received.length, before, 'a migrating VM is not asked');
  await assert.rejects(h.setBalloon('101', 200 * 1024), /migrating/);
});

// A QMP server in a process of its own, so that it can die as QEMU does (SIGKILL leaves the
// socket file behind) and its PID is the one the driver verifies.
const CHILD_QMP = `
const { createServer } = require('node:net');
const path = process.argv.at(-1);
const server = createServer((s) => {
  s.write(JSON.stringify({ QMP: { version: { qemu: { major: 9, minor: 0, micro: 0 } }, capabilities: [] } }) + '\\r\\n');
  let buf = '';
  s.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\\n')) >= 0) {
      const c = JSON.parse(buf.slice(0, i));
      buf = buf.slice(i + 1);
      const r = {
        'query-cpus-fast': [{ 'thread-id': process.pid }],
        'query-memory-size-summary': { 'base-memory': 268435456 },
        'query-balloon': { actual: 268435456 },
      }[c.execute] ?? {};
      s.write(JSON.stringify({ return: r, id: c.id }) + '\\r\\n');
    }
  });
  s.on('error', () => {});
}).listen({ path, backlog: 1 }, () => process.stdout.write('ready\\n'));
`;

test('shared mode lifecycle: started at the first session; no greeting or a full backlog is busy; refused with it gone is destroyed; a vanished socket is stopped', async (t) => {
  const { spawn } = await import('node:child_process');
  const dir = mkdtempSync(join(tmpdir(), 'ballast-qmp-life-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const start = async (name: string) => {
    const p = spawn(process.execPath, ['-e', CHILD_QMP, join(dir, name)], { stdio: ['ignore', 'pipe', 'inherit'] });
    t.after(() => {
      if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    });
    await new Promise<void>((r) => p.stdout!.once('data', () => r()));
    return p;
  };
  const a = await start('a.qmp');
  const b = await start('b.qmp');
  const h = new QmpHypervisor({ socketDir: dir, mode: 'shared', holdMs: 200 });
  t.after(() => h.close());
  const events: string[] = [];
  h.onEvent((e) => events.push(`${e.kind}:${e.id}`));
  const first = await h.collect();
  assert.deepEqual(
    first.map((s) => [s.id, s.props.pid]),
    [
      ['a', a.pid],
      ['b', b.pid],
    ],
    'each PID verified against the process holding the socket',
  );
  assert.deepEqual(events.sort(), ['started:a', 'started:b']);
  // a stops answering (no greeting: busy, retried, stale).
  a.kill('SIGSTOP');
  t.after(() => a.kill('SIGCONT'));
  // b dies as a killed QEMU does: its socket file stays, connections are refused.
  b.kill('SIGKILL');
  await new Promise<void>((r) => b.once('exit', () => r()));
  const second = await h.collect();
  const byId = Object.fromEntries(second.map((s) => [s.id, s]));
  assert.match(byId.a?.stale ?? '', /no greeting within 200 ms \(another client holds the socket\); retried at the next collection/);
  assert.equal(byId.b, undefined, 'a refused socket whose QEMU is gone leaves the collection');
  assert.ok(events.includes('destroyed:b'));
  a.kill('SIGCONT');
  const third = await h.collect();
  assert.doesNotMatch(third.find((s) => s.id === 'a')?.stale ?? 'gone', /QMP|gone/, 'a answers again');
  // Stopped again with its listen backlog full (QEMU listens with a backlog of 1): connect()
  // itself fails with EAGAIN, busy as well.
  a.kill('SIGSTOP');
  const { createConnection } = await import('node:net');
  const queued = [0, 1, 2, 3].map(() => createConnection(join(dir, 'a.qmp')).on('error', () => undefined));
  t.after(() => {
    for (const q of queued) q.destroy();
  });
  await new Promise((r) => setTimeout(r, 50));
  const fourth = await h.collect();
  assert.match(fourth.find((s) => s.id === 'a')?.stale ?? 'gone', /backlog is full \(other clients are waiting\); retried at the next collection/);
  for (const q of queued) q.destroy();
  a.kill('SIGCONT');
  assert.ok(!events.includes('destroyed:a'));
  // The socket file goes (QEMU removes it on a clean exit): stopped.
  rmSync(join(dir, 'a.qmp'));
  assert.deepEqual(
    (await h.collect()).map((s) => s.id),
    [],
  );
  assert.ok(events.includes('stopped:a'));
});
