import { test, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import { FakeLibvirtd, guest } from './fake-libvirtd.js';
import { MultiLibvirtHypervisor, type MultiLibvirtOptions } from '../../../src/hypervisor/libvirt/multi.js';
import { UNIX_PATH_MAX } from '../../../src/hypervisor/libvirt/socket-client.js';
import { MessageStatus, MessageType, encodeFrame, type Frame } from '../../../src/hypervisor/libvirt/framing.js';
import { Proc, encRet } from '../../../src/hypervisor/libvirt/protocol.js';
import { XdrReader } from '../../../src/hypervisor/libvirt/xdr.js';
import { failureKind } from '../../../src/errors.js';
import type { LifecycleEvent } from '../../../src/types.js';

// Two daemons, each in its "pod": <root>/pods/<uid>/sock is a link to the fake's socket, as the
// kubelet's pod directory holds each virt-launcher's socket.
let root: string;
let a: FakeLibvirtd;
let b: FakeLibvirtd;
const drivers: MultiLibvirtHypervisor[] = [];
const SAME_UUID = guest(1).uuid;

function podSocket(uid: string, fake: FakeLibvirtd): string {
  mkdirSync(join(root, 'pods', uid), { recursive: true });
  const p = join(root, 'pods', uid, 'sock');
  symlinkSync(fake.path, p);
  return p;
}

function multi(o: Partial<MultiLibvirtOptions> = {}): MultiLibvirtHypervisor {
  const d = new MultiLibvirtHypervisor({
    socketGlob: join(root, 'pods', '*', 'sock'),
    uris: ['test:///default'],
    reconnectInitialMs: 20,
    reconnectMaxMs: 100,
    ...o,
  });
  drivers.push(d);
  return d;
}

const waitUntil = async (what: string, cond: () => boolean | Promise<boolean>, ms = 3000) => {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

beforeEach(async () => {
  root = mkdtempSync(join(tmpdir(), 'multi-libvirt-'));
  a = new FakeLibvirtd();
  b = new FakeLibvirtd();
  // The same UUID in both pods: ids must still differ.
  a.guests = [guest(1, { name: 'ns1_vm-a' })];
  b.guests = [guest(1, { name: 'ns2_vm-b', currentKiB: 300000 })];
  await a.start();
  await b.start();
  podSocket('uid-a', a);
  podSocket('uid-b', b);
});
afterEach(async () => {
  for (const d of drivers.splice(0)) await d.close();
  await a.dispose();
  await b.dispose();
  rmSync(root, { recursive: true, force: true });
});

test('two daemons as one host: ids prefixed by the pod key, each balloon to its own daemon', async () => {
  const d = multi();
  await d.connect();
  const s = await d.collect();
  assert.deepEqual(
    s.map((x) => [x.id, x.name, x.props.socket_key, x.stale]),
    [
      [`uid-a:${SAME_UUID}`, 'ns1_vm-a', 'uid-a', undefined],
      [`uid-b:${SAME_UUID}`, 'ns2_vm-b', 'uid-b', undefined],
    ],
  );
  assert.equal(s[1]!.stats.balloon_cur, 300000);
  await d.setBalloon(`uid-b:${SAME_UUID}`, 250000);
  await d.setBalloon(`uid-a:${SAME_UUID}`, 200000);
  assert.deepEqual(
    b.setMemory.map((x) => [x.name, x.kib]),
    [['ns2_vm-b', 250000]],
  );
  assert.deepEqual(
    a.setMemory.map((x) => [x.name, x.kib]),
    [['ns1_vm-a', 200000]],
  );
  await assert.rejects(d.setBalloon(`uid-zz:${SAME_UUID}`, 1000), (e: unknown) => failureKind(e) === 'gone' && /uid-zz/.test(String(e)));
  assert.deepEqual(d.connection(), { connected: true, reconnects: 0 });
});

test('sockets come and go: a new pod is picked up at the next collection, a vanished one drops its guests', async () => {
  const d = multi();
  await d.connect();
  assert.equal((await d.collect()).length, 2);
  const c = new FakeLibvirtd();
  c.guests = [guest(7, { name: 'ns3_vm-c' })];
  await c.start();
  try {
    podSocket('uid-c', c);
    assert.deepEqual(
      (await d.collect()).map((x) => x.id),
      [`uid-a:${SAME_UUID}`, `uid-b:${SAME_UUID}`, `uid-c:${guest(7).uuid}`],
    );
    unlinkSync(join(root, 'pods', 'uid-a', 'sock')); // the pod is deleted
    const after = await d.collect();
    assert.deepEqual(
      after.map((x) => x.id),
      [`uid-b:${SAME_UUID}`, `uid-c:${guest(7).uuid}`],
    );
    assert.ok(after.every((x) => x.stale === undefined));
    assert.deepEqual(
      d.sockets().map((x) => x.key),
      ['uid-b', 'uid-c'],
    );
    await assert.rejects(d.setBalloon(`uid-a:${SAME_UUID}`, 1000), (e: unknown) => failureKind(e) === 'gone');
    await waitUntil('the dropped connection closed', () => a.connections === 0);
  } finally {
    await c.dispose();
  }
});

test('a daemon that stops answering: only its guests go stale, and it is reconnected', async () => {
  const d = multi({ callTimeoutMs: 150, connectTimeoutMs: 150, keepaliveIntervalMs: 0 });
  await d.connect();
  await d.collect();
  b.silent = true;
  const s = await d.collect();
  assert.equal(s.find((x) => x.name === 'ns1_vm-a')!.stale, undefined, 'the other daemon is untouched');
  assert.match(s.find((x) => x.name === 'ns2_vm-b')!.stale ?? '', /libvirt/);
  assert.equal(d.connection().connected, false);
  b.silent = false;
  await waitUntil('daemon b reconnected', () => d.connection().connected);
  const back = await d.collect();
  assert.ok(back.every((x) => x.stale === undefined));
  assert.ok(d.connection().reconnects >= 1);
});

test('lifecycle events carry the prefixed id', async () => {
  const d = multi();
  const seen: LifecycleEvent[] = [];
  d.onEvent((e) => seen.push(e));
  await d.connect();
  await d.collect();
  b.emitLifecycle(b.guests[0]!, 5, 1); // stopped, destroyed
  await waitUntil('the event', () => seen.length > 0);
  assert.equal(seen[0]!.id, `uid-b:${SAME_UUID}`);
  assert.equal(seen[0]!.name, 'ns2_vm-b');
});

test('URIs: a daemon that refuses the first is asked the next, and that one first on reconnect', async () => {
  // A non-root virt-launcher's virtqemud serves only qemu:///session.
  for (const f of [a, b]) {
    f.intercept = (sock: Socket, fr: Frame) => {
      if (fr.header.proc !== Proc.CONNECT_OPEN) return false;
      const uri = new XdrReader(fr.payload).optional((x) => x.string());
      if (uri === 'qemu:///session') return false;
      const h = fr.header;
      const err = encRet.error({
        code: 1,
        domain: 10,
        message: `internal error: unexpected qemu URI path '${uri}', try qemu:///session`,
        level: 2,
        dom: null,
        str1: null,
        str2: null,
        str3: null,
        int1: 0,
        int2: 0,
      });
      sock.write(encodeFrame({ prog: h.prog, vers: h.vers, proc: h.proc, type: MessageType.REPLY, serial: h.serial, status: MessageStatus.ERROR }, err));
      return true;
    };
  }
  const d = multi({ uris: ['qemu:///system', 'qemu:///session'] });
  await d.connect();
  assert.equal((await d.collect()).length, 2);
  assert.deepEqual(
    d.sockets().map((x) => x.uri),
    ['qemu:///session', 'qemu:///session'],
  );
  assert.deepEqual(
    b.opens.map((o) => o.uri),
    ['qemu:///session'],
    'the refused URI never reaches the fake as an open (intercepted)',
  );
  await b.kill();
  await b.start();
  await waitUntil('daemon b reconnected', () => d.connection().connected && d.connection().reconnects >= 1);
  assert.deepEqual(
    b.opens.map((o) => o.uri),
    ['qemu:///session', 'qemu:///session'],
    'on reconnect the accepted URI is asked first',
  );
});

test(`a socket path longer than ${UNIX_PATH_MAX} bytes (a kubelet pod directory) is still reached`, async () => {
  const uid = '0b5e5f9a-1c2d-4e5f-8a9b-0c1d2e3f4a5b';
  const dir = join(root, 'kubelet', 'pods', uid, 'volumes', 'kubernetes.io~empty-dir', 'libvirt-runtime');
  mkdirSync(dir, { recursive: true });
  const long = join(dir, 'virtqemud-sock');
  assert.ok(Buffer.byteLength(long) > UNIX_PATH_MAX, `the test path is ${long.length} bytes`);
  // The socket moves with rename (same inode, still listening): no server can bind so long a path.
  renameSync(a.path, long);
  const d = multi({ socketGlob: join(root, 'kubelet', 'pods', '*', 'volumes', 'kubernetes.io~empty-dir', 'libvirt-runtime', 'virtqemud-sock') });
  await d.connect();
  const s = await d.collect();
  assert.deepEqual(
    s.map((x) => [x.id, x.stale]),
    [[`${uid}:${SAME_UUID}`, undefined]],
  );
  await d.setBalloon(s[0]!.id, 123456);
  assert.deepEqual(
    a.setMemory.map((x) => x.kib),
    [123456],
  );
});

test('connect rejects when the pattern cannot be scanned, and recovers when the directory appears', async () => {
  const d = multi({ socketGlob: join(root, 'later', '*', 'sock') });
  await assert.rejects(d.connect(), /later.*does not exist/);
  assert.deepEqual(await d.collect(), []);
  assert.equal(d.connection().connected, false);
  mkdirSync(join(root, 'later', 'uid-a'), { recursive: true });
  symlinkSync(a.path, join(root, 'later', 'uid-a', 'sock'));
  assert.deepEqual(
    (await d.collect()).map((x) => x.id),
    [`uid-a:${SAME_UUID}`],
  );
  assert.equal(d.connection().connected, true);
});

test('a bad pattern is refused at construction with the reason', () => {
  assert.throws(() => new MultiLibvirtHypervisor({ socketGlob: 'pods/*/sock' }), /must be an absolute path/);
});

test('URIs: hypervisor.uri is asked first, the other qemu URI after it', async () => {
  const d = multi({ uris: undefined, uri: 'qemu:///session' });
  await d.connect();
  assert.deepEqual(
    a.opens.map((o) => o.uri),
    ['qemu:///session'],
  );
  const e = multi({ uris: undefined });
  await e.connect();
  assert.deepEqual(
    b.opens.map((o) => o.uri),
    ['qemu:///session', 'qemu:///system'],
    'without uri: qemu:///system first',
  );
});

test('a hung daemon does not hold the others: its guest comes back stale after memberWaitMs, a hung new one is left to connect later', {
  timeout: 15_000,
}, async () => {
  // The per-call timeout stays at its 30 s default: only the wait per daemon bounds a collection.
  const d = multi({ memberWaitMs: 200, keepaliveIntervalMs: 0 });
  await d.connect();
  await d.collect();
  const statsCalls = () => b.calls.filter((x) => x.proc === Proc.CONNECT_GET_ALL_DOMAIN_STATS).length;
  const before = statsCalls();
  b.silent = true;
  const c = new FakeLibvirtd();
  c.guests = [guest(9, { name: 'ns3_vm-c' })];
  c.silent = true; // accepts the connection, never answers
  await c.start();
  try {
    podSocket('uid-c', c);
    const s = await d.collect();
    assert.deepEqual(
      s.map((x) => [x.name, x.stale === undefined]),
      [
        ['ns1_vm-a', true],
        ['ns2_vm-b', false],
      ],
    );
    assert.match(s[1]!.stale!, /did not answer within 200 ms; last sample kept/);
    // Asked again while the first call is still waiting: not asked twice, still stale.
    const again = await d.collect();
    assert.equal(again.find((x) => x.name === 'ns2_vm-b')!.stale, s[1]!.stale);
    assert.equal(statsCalls() - before, 1, 'one call into the hang, not one per collection');
  } finally {
    await d.close();
    await c.dispose();
  }
});
