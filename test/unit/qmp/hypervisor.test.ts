// QmpHypervisor against in-test QMP servers shaped like QEMU with a balloon: discovery in a
// socket directory, stats mapping, stale samples, balloon command, a refused socket left out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { QmpHypervisor } from '../../../src/hypervisor/qmp/hypervisor.js';
import { cleanup, fakeQmp } from './fake-server.js';

const MiB = 1048576;

test('collects a QEMU-like guest: stats in KiB, balloon facts; balloon sends bytes; broken guest goes stale', async (t) => {
  const f = await fakeQmp();
  t.after(() => cleanup(f));
  let statsReply: unknown = {
    stats: { 'stat-total-memory': 200 * MiB, 'stat-free-memory': 50 * MiB, 'stat-disk-caches': 10 * MiB, 'stat-swap-in': 8192, 'stat-major-faults': 3 },
    'last-update': 1000,
  };
  f.handle = (cmd) => {
    const r = (v: unknown) => ({ return: v, id: cmd.id });
    switch (cmd.execute) {
      case 'query-name':
        return r({ name: 'fake1' });
      case 'query-memory-size-summary':
        return r({ 'base-memory': 256 * MiB });
      case 'query-cpus-fast':
        return r([{ 'thread-id': process.pid }, { 'thread-id': process.pid }]);
      case 'qom-list':
        return r(
          cmd.arguments!.path === '/machine/peripheral'
            ? [
                { name: 'type', type: 'string' },
                { name: 'balloon0', type: 'child<virtio-balloon-pci>' },
              ]
            : [],
        );
      case 'query-balloon':
        return r({ actual: 192 * MiB });
      case 'qom-get':
        if (cmd.arguments!.property === 'free-page-reporting') return r(true);
        return statsReply === 'error' ? { error: { class: 'GenericError', desc: 'boom' }, id: cmd.id } : r(statsReply);
      default:
        return r({});
    }
  };
  // A stale socket file nobody listens on: left out, not an error.
  const dead = createServer();
  await new Promise<void>((res) => dead.listen(join(f.dir, 'dead.sock'), () => res()));
  dead.close();
  const h = new QmpHypervisor({ socketDir: f.dir, statsPeriodS: 2 });
  t.after(() => h.close());
  const [s, ...rest] = await h.collect();
  assert.equal(rest.length, 0);
  assert.equal(s!.id, 'vm', "the socket's file name, not QEMU's -name");
  assert.equal(s!.name, 'vm');
  assert.equal(s!.props.qemu_name, 'fake1', "QEMU's -name is shown");
  assert.equal(s!.props.pid, process.pid, "pid from the vCPU thread's Tgid");
  assert.equal(s!.props.free_page_reporting, 1, "the balloon's free-page-reporting property");
  assert.equal(s!.stale, undefined);
  assert.deepEqual(
    { ...s!.stats, rss: typeof s!.stats.rss },
    {
      mem_available: 200 * 1024,
      mem_unused: 50 * 1024,
      mem_free: 60 * 1024,
      mem_usable: null,
      swap_in: 8,
      swap_out: null,
      major_fault: 3,
      minor_fault: null,
      htlb_pgalloc: null,
      htlb_pgfail: null,
      oom_kills: null,
      alloc_stalls: null,
      async_scan: null,
      direct_scan: null,
      async_reclaim: null,
      direct_reclaim: null,
      balloon_cur: 192 * 1024,
      balloon_max: 256 * 1024,
      balloon_min: 0,
      rss: 'number',
      vcpu_count: 2,
      io_tune: null,
      vcpu_user_limit: 100,
    },
  );
  const set = f.received.find((c) => c.execute === 'qom-set')!;
  assert.deepEqual(set.arguments, { path: '/machine/peripheral/balloon0', property: 'guest-stats-polling-interval', value: 2 });
  await h.setBalloon('vm', 128 * 1024);
  assert.deepEqual(f.received.at(-1), { execute: 'balloon', id: f.received.at(-1)!.id, arguments: { value: 128 * MiB } });
  await assert.rejects(h.setBalloon('vm', 0), /positive KiB/);
  await assert.rejects(h.setBalloon('nobody', 1000), /no guest nobody/);
  statsReply = 'error';
  const [st] = await h.collect();
  assert.match(st!.stale!, /GenericError: boom/);
  assert.equal(st!.stats.balloon_cur, 192 * 1024, 'last known balloon size kept');
  statsReply = { stats: {}, 'last-update': 0 };
  assert.match((await h.collect())[0]!.stale!, /no balloon statistics from the guest yet/);
});

test('QEMU restarted on the same socket: destroyed event, left out while down, reconnected with backoff', async (t) => {
  const f = await fakeQmp();
  t.after(() => cleanup(f));
  f.handle = (cmd) => {
    const r = (v: unknown) => ({ return: v, id: cmd.id });
    switch (cmd.execute) {
      case 'query-name':
        return r({ name: 'qemu-says-otherwise' });
      case 'query-memory-size-summary':
        return r({ 'base-memory': 128 * MiB });
      case 'query-cpus-fast':
        return r([]);
      case 'qom-list':
        return r([]);
      case 'query-balloon':
        return r({ actual: 128 * MiB });
      default:
        return r({});
    }
  };
  // A configured name is the guest's id: QEMU's own (below) is not.
  const h = new QmpHypervisor({ sockets: [{ socket: f.path, name: 'phoenix' }], retryMs: 50 });
  t.after(() => h.close());
  const kinds: string[] = [];
  h.onEvent((e) => kinds.push(`${e.kind}:${e.name}`));
  const first = await h.collect();
  assert.equal(first[0]!.stale, 'the guest has no virtio-balloon device');
  assert.equal(first[0]!.stats.balloon_cur, 128 * 1024);
  await f.close(); // QEMU dies: no SHUTDOWN
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(kinds, ['started:phoenix', 'destroyed:phoenix']);
  assert.deepEqual(await h.collect(), [], 'nothing listens: left out');
  assert.equal(h.connection().connected, false);
  await f.start(); // QEMU back on the same path
  let back: Awaited<ReturnType<typeof h.collect>> = [];
  for (let i = 0; i < 40 && (back.length === 0 || back[0]!.stale?.startsWith('QMP:')); i++) {
    await new Promise((r) => setTimeout(r, 25));
    back = await h.collect();
  }
  assert.equal(back[0]?.name, 'phoenix', 'reconnected after the backoff');
  assert.deepEqual(h.connection(), { connected: true, reconnects: 1 });
  assert.equal(kinds.filter((k) => k.startsWith('started')).length, 1, 'a reconnect is not a new guest start');
});

test('hypervisor.qmp_dir missing or not a directory: collect fails saying so (not an idle host with 0 guests); once created, it is scanned', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'ballast-qmpdir-'));
  t.after(() => rmSync(base, { recursive: true, force: true }));
  const dir = join(base, 'qmp');
  const h = new QmpHypervisor({ socketDir: dir });
  t.after(() => h.close());
  await assert.rejects(h.collect(), /QMP socket directory .*qmp does not exist \(hypervisor\.qmp_dir\)/);
  writeFileSync(dir, 'a file');
  await assert.rejects(h.collect(), /is not a directory/);
  rmSync(dir);
  mkdirSync(dir);
  assert.deepEqual(await h.collect(), []);
});

test("a guest with hotplugged memory (virtio-mem): balloon_max is its boot memory, the balloon's own coordinate, not boot + plugged", async (t) => {
  const f = await fakeQmp();
  t.after(() => cleanup(f));
  f.handle = (cmd) => {
    const r = (v: unknown) => ({ return: v, id: cmd.id });
    switch (cmd.execute) {
      case 'query-memory-size-summary':
        return r({ 'base-memory': 128 * MiB, 'plugged-memory': 256 * MiB });
      case 'query-cpus-fast':
        return r([{ 'thread-id': process.pid }]);
      case 'qom-list':
        return r(cmd.arguments!.path === '/machine/peripheral' ? [{ name: 'balloon0', type: 'child<virtio-balloon-pci>' }] : []);
      case 'query-balloon':
        // QEMU counts the balloon against boot memory only: fully deflated, actual is the base.
        return r({ actual: 128 * MiB });
      case 'qom-get':
        return r({ stats: { 'stat-total-memory': 349 * MiB, 'stat-free-memory': 200 * MiB }, 'last-update': 1 });
      default:
        return r({});
    }
  };
  const h = new QmpHypervisor({ socketDir: f.dir, statsPeriodS: 2 });
  t.after(() => h.close());
  const [s] = await h.collect();
  assert.equal(s!.stats.balloon_cur, 128 * 1024);
  assert.equal(s!.stats.balloon_max, 128 * 1024, 'not ballooned: cur equals max');
});
