// Who a QMP guest is, and which process it runs in, come from ballast's side of the socket:
// a QEMU that names itself after another guest (or its socket) must not receive that guest's
// balloon commands, and a QEMU that names another process's threads as its vCPUs must not get
// cgroup limits written for that process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { once } from 'node:events';
import { QmpHypervisor, type QmpLogFn } from '../../../src/hypervisor/qmp/hypervisor.js';
import { socketInodes } from '../../../src/hypervisor/qmp/peer.js';
import { cleanup, fakeQmp, type FakeQmp } from './fake-server.js';

const MiB = 1048576;

/** A QEMU-like guest that calls itself `name` and names `threads` as its vCPU threads. */
function behave(f: FakeQmp, name: string, threads: () => number[] = () => [process.pid]): void {
  f.handle = (cmd) => {
    const r = (v: unknown) => ({ return: v, id: cmd.id });
    switch (cmd.execute) {
      case 'query-name':
        return r({ name });
      case 'query-memory-size-summary':
        return r({ 'base-memory': 2048 * MiB });
      case 'query-cpus-fast':
        return r(threads().map((t) => ({ 'thread-id': t })));
      case 'qom-list':
        return r([]);
      case 'query-balloon':
        return r({ actual: 2048 * MiB });
      default:
        return r({});
    }
  };
}

const balloons = (f: FakeQmp) => f.received.filter((c) => c.execute === 'balloon').map((c) => c.arguments!.value);

test("a QEMU naming itself after another guest, or that guest's socket, steers only its own balloon", async (t) => {
  const victim = await fakeQmp();
  t.after(() => cleanup(victim));
  behave(victim, 'victim');
  // Sorted after the victim in the directory, so a lookup that tried names and paths in
  // socket order would meet the victim first.
  const byPath = await fakeQmp(join(victim.dir, 'x-evil.sock'));
  t.after(() => byPath.close());
  behave(byPath, victim.path);
  const byName = await fakeQmp(join(victim.dir, 'y-evil.sock'));
  t.after(() => byName.close());
  behave(byName, 'vm');
  const h = new QmpHypervisor({ socketDir: victim.dir });
  t.after(() => h.close());
  const samples = await h.collect();
  assert.deepEqual(
    samples.map((s) => [s.id, s.name, s.props.qemu_name]),
    [
      ['vm', 'vm', 'victim'],
      ['x-evil', 'x-evil', victim.path],
      ['y-evil', 'y-evil', 'vm'],
    ],
    "ids and names from the socket's file name; what QEMU says is only shown",
  );
  // What the engine does with a policy that shrinks every guest: one command per id.
  for (const s of samples) await h.setBalloon(s.id, 230 * 1024);
  assert.deepEqual(balloons(victim), [230 * MiB], 'the victim got exactly its own command');
  assert.deepEqual(balloons(byPath), [230 * MiB]);
  assert.deepEqual(balloons(byName), [230 * MiB]);
  await assert.rejects(h.setBalloon(victim.path, 100 * 1024), /no guest/, 'a socket path is not an id');
  await assert.rejects(h.setBalloon('vm@' + victim.path, 100 * 1024), /no guest/);
  assert.deepEqual(balloons(victim), [230 * MiB]);
});

test('two sockets with one stem are both managed, told apart by path, marked and logged once', async (t) => {
  const a = await fakeQmp();
  t.after(() => cleanup(a));
  const b = await fakeQmp(join(a.dir, 'vm.qmp'));
  t.after(() => b.close());
  behave(a, 'same');
  behave(b, 'same');
  const logs: Parameters<QmpLogFn>[] = [];
  const h = new QmpHypervisor({ socketDir: a.dir, log: (...args) => logs.push(args) });
  t.after(() => h.close());
  await h.collect();
  const samples = await h.collect();
  assert.deepEqual(
    samples.map((s) => [s.id, s.props.name_collides_with]),
    [
      ['vm', a.path],
      [a.path, b.path],
    ],
  );
  assert.equal(logs.filter((l) => /collision/.test(l[1])).length, 1, 'logged once, not each collection');
  await h.setBalloon(a.path, 512 * 1024);
  await h.setBalloon('vm', 1024 * 1024);
  assert.deepEqual(balloons(a), [512 * MiB]);
  assert.deepEqual(balloons(b), [1024 * MiB]);
  assert.throws(() => new QmpHypervisor({ sockets: [{ socket: a.path, name: b.path }] }), /must be non-empty and hold no "\/"/);
});

test('the QEMU PID is taken only when that process holds the socket and owns every vCPU thread it names', async (t) => {
  // Another process on the host: what a lying QEMU would point cgroup limits at.
  const other = spawn('sleep', ['60'], { stdio: 'ignore' });
  t.after(() => other.kill());
  await once(other, 'spawn');
  const honest = await fakeQmp();
  t.after(() => cleanup(honest));
  behave(honest, 'honest');
  const liar = await fakeQmp(join(honest.dir, 'liar.sock'));
  t.after(() => liar.close());
  behave(liar, 'liar', () => [other.pid!]);
  const mixed = await fakeQmp(join(honest.dir, 'mixed.sock'));
  t.after(() => mixed.close());
  behave(mixed, 'mixed', () => [process.pid, other.pid!]);
  const logs: Parameters<QmpLogFn>[] = [];
  const h = new QmpHypervisor({ socketDir: honest.dir, log: (...args) => logs.push(args) });
  t.after(() => h.close());
  const byId = new Map((await h.collect()).map((s) => [s.id, s]));
  // The fake QEMU is this test process: it does hold its socket.
  assert.equal(byId.get('vm')!.props.pid, process.pid);
  assert.equal(typeof byId.get('vm')!.stats.rss, 'number');
  const l = byId.get('liar')!;
  assert.equal(l.props.pid, undefined, 'no PID for cgroup limits or cpu.max');
  assert.equal(l.stats.rss, null);
  assert.match(String(l.props.pid_refused), new RegExp(`process ${other.pid} .*does not hold the QMP socket .*liar\\.sock`));
  const m = byId.get('mixed')!;
  assert.equal(m.props.pid, undefined);
  assert.match(String(m.props.pid_refused), new RegExp(`vCPU thread ${other.pid} is not a thread of process ${process.pid}`));
  await h.collect();
  assert.equal(logs.filter((x) => /PID not trusted/.test(x[1])).length, 2, 'each refusal logged once');
});

test('socketInodes reads /proc/net/unix: listening and accepted sockets by path, paths with spaces, others ignored', () => {
  const text = [
    'Num       RefCount Protocol Flags    Type St Inode Path',
    '0000000000000000: 00000002 00000000 00010000 0001 01 1001 /run/q/vm.sock',
    '0000000000000000: 00000003 00000000 00000000 0001 03 1002 /run/q/vm.sock',
    '0000000000000000: 00000003 00000000 00000000 0001 03 1003',
    '0000000000000000: 00000002 00000000 00010000 0001 01 1004 /run/q/vm.sock.old',
    '0000000000000000: 00000002 00000000 00010000 0001 01 1005 /run/q/my vm.sock',
    '',
  ].join('\n');
  assert.deepEqual([...socketInodes(text, new Set(['/run/q/vm.sock']))], ['1001', '1002']);
  assert.deepEqual([...socketInodes(text, new Set(['/run/q/my vm.sock']))], ['1005']);
});
