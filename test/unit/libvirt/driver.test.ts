import { test, beforeEach, afterEach } from 'node:test';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { FakeLibvirtd, guest } from './fake-libvirtd.js';
import { LibvirtHypervisor, type LibvirtHypervisorOptions } from '../../../src/hypervisor/libvirt/index.js';
import { DomainNotFoundError, LibvirtConnectionError } from '../../../src/hypervisor/libvirt/errors.js';
import { NO_GUEST_STATS } from '../../../src/hypervisor/libvirt/mapping.js';
import { Proc, StatsTypes, readDomain } from '../../../src/hypervisor/libvirt/protocol.js';
import { MessageStatus, MessageType, encodeFrame, type Frame } from '../../../src/hypervisor/libvirt/framing.js';
import { XdrReader, XdrWriter } from '../../../src/hypervisor/libvirt/xdr.js';
import type { Socket } from 'node:net';
import type { LifecycleEvent } from '../../../src/types.js';

let fake: FakeLibvirtd;
const drivers: LibvirtHypervisor[] = [];
function driver(o: LibvirtHypervisorOptions = {}) {
  const d = new LibvirtHypervisor({ socketPath: fake.path, uri: 'test:///default', reconnectInitialMs: 20, reconnectMaxMs: 100, ...o });
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
const MEMINFO =
  'MemTotal:         480000 kB\nMemFree:          200000 kB\nMemAvailable:     300000 kB\nBuffers:            1000 kB\nCached:            50000 kB\n';

beforeEach(async () => {
  fake = new FakeLibvirtd();
  fake.guests = [guest(1), guest(2, { guestStats: false }), guest(3, { guestStats: false, agentMeminfo: MEMINFO })];
  await fake.start();
});
afterEach(async () => {
  for (const d of drivers.splice(0)) await d.close();
  await fake.dispose();
});

test('collect: one all-domain-stats call, MOM fields in KiB, balloon_min from config', async () => {
  fake.guests = [guest(1), guest(2, { vcpus: 2 }), guest(3)]; // all with balloon stats: no agent calls
  writeFileSync(join(fake.dir, 'g1.pid'), '4242\n');
  const d = driver({ balloonMin: { g1: 131072 }, defaultBalloonMin: 65536, qemuPidDir: fake.dir });
  await d.connect();
  await d.collect(); // first sight: the bulk call, plus one vcpu-group call for the new guests
  assert.deepEqual(fake.statsGroupsAsked, [StatsTypes.STATE | StatsTypes.BALLOON, StatsTypes.VCPU]);
  const before = fake.calls.length;
  const s = await d.collect();
  const calls = fake.calls.slice(before);
  assert.deepEqual(
    calls.map((c) => c.proc),
    [Proc.CONNECT_GET_ALL_DOMAIN_STATS],
    'steady state: exactly one RPC per collection',
  );
  assert.equal(s[1]!.stats.vcpu_count, 2);
  assert.deepEqual(
    s.map((x) => x.name),
    ['g1', 'g2', 'g3'],
  );
  const g1 = s[0]!;
  assert.equal(g1.id, '00000000-0000-0000-0000-000000000001');
  assert.equal(g1.stale, undefined);
  assert.deepEqual(
    {
      cur: g1.stats.balloon_cur,
      max: g1.stats.balloon_max,
      min: g1.stats.balloon_min,
      unused: g1.stats.mem_unused,
      avail: g1.stats.mem_available,
      free: g1.stats.mem_free,
      majf: g1.stats.major_fault,
      minf: g1.stats.minor_fault,
      rss: g1.stats.rss,
      vcpu: g1.stats.vcpu_count,
    },
    { cur: 262144, max: 524288, min: 131072, unused: 100000, avail: 250000, free: 120000, majf: 11, minf: 2222, rss: 272144, vcpu: 1 },
  );
  assert.equal(s[1]!.stats.balloon_min, 65536);
  assert.equal(g1.props.state, 'running');
  assert.equal(g1.props.pid, 4242, "QEMU pid from libvirtd's PID file");
  assert.equal('pid' in s[1]!.props, false);
});

test('stats period is set once per newly seen guest', async () => {
  const d = driver({ statsPeriodSec: 3 });
  await d.connect();
  await d.collect();
  await d.collect();
  const periodCalls = fake.calls.filter((c) => c.proc === Proc.DOMAIN_SET_MEMORY_STATS_PERIOD).length;
  assert.equal(periodCalls, 3);
  assert.equal(fake.periods.get('g2'), 3);
  fake.guests.push(guest(4));
  await d.collect();
  assert.equal(fake.calls.filter((c) => c.proc === Proc.DOMAIN_SET_MEMORY_STATS_PERIOD).length, 4);
});

test('read-only: no stats period is set (the domain keeps its own)', async () => {
  const d = driver({ readOnly: true, statsPeriodSec: 3 });
  await d.connect();
  assert.equal((await d.collect()).length, 3);
  assert.equal(fake.calls.filter((c) => c.proc === Proc.DOMAIN_SET_MEMORY_STATS_PERIOD).length, 0);
  assert.deepEqual(fake.opens, [{ uri: 'test:///default', flags: 1 }], 'opened with VIR_CONNECT_RO');
});

test('a guest without balloon stats is stale with the reason; the agent fills in when present', async () => {
  const d = driver();
  await d.connect();
  const [, g2, g3] = await d.collect();
  assert.match(g2!.stale!, /no guest memory statistics/);
  assert.match(g2!.stale!, /guest agent unavailable: .*not configured/);
  assert.equal(g2!.stats.mem_unused, null);
  assert.equal(g2!.stats.balloon_cur, 262144, 'host-side balloon numbers are still there');
  assert.equal(g3!.stale, undefined);
  assert.equal(g3!.props.stats_source, 'guest-agent');
  assert.deepEqual([g3!.stats.mem_unused, g3!.stats.mem_available, g3!.stats.mem_free], [200000, 300000, 251000]);
  const d2 = driver({ agentFallback: false });
  await d2.connect();
  assert.equal((await d2.collect())[2]!.stale, NO_GUEST_STATS);
});

test("guest_psi: each guest's /proc/pressure/memory through its agent; one without PSI or agent is logged once and left out", async () => {
  fake.guests = [
    guest(1, { agentMeminfo: MEMINFO, agentPsi: 'some avg10=12.50 avg60=3.10 avg300=0.40 total=123\nfull avg10=1.00 avg60=0.20 avg300=0.00 total=9\n' }),
    guest(2, { agentMeminfo: MEMINFO }),
    guest(3),
  ];
  const logs: string[] = [];
  const d = driver({ guestPsi: true, log: (_level, msg, fields) => logs.push(`${msg} ${JSON.stringify(fields)}`) });
  await d.connect();
  const [g1, g2, g3] = await d.collect();
  assert.deepEqual([g1!.stats.psi_some_avg10, g1!.stats.psi_some_avg60, g1!.stats.psi_full_avg10], [12.5, 3.1, 1]);
  assert.equal(g2!.stats.psi_some_avg10, undefined, 'no PSI file in the guest: no field, not a zero');
  assert.equal(g3!.stats.psi_some_avg10, undefined, 'no agent');
  assert.equal(g2!.stale, undefined, 'a guest without PSI is not stale for it');
  await d.collect();
  assert.equal(logs.filter((l) => l.startsWith('no guest PSI')).length, 2, `once per guest: ${logs.join(' | ')}`);
  assert.ok(
    logs.some((l) => /No such file/.test(l)),
    "the reason is the agent's",
  );
  const off = driver();
  await off.connect();
  assert.equal((await off.collect())[0]!.stats.psi_some_avg10, undefined, 'off by default');
});

test("guestReclaim: '<KiB>K' written to the guest's memory.reclaim through its agent; EAGAIN is short; no file, no agent or no guest are errors", async () => {
  fake.guests = [
    guest(1, { agentMeminfo: MEMINFO, agentReclaim: 'ok' }),
    guest(2, { agentMeminfo: MEMINFO, agentReclaim: 'short' }),
    guest(3, { agentMeminfo: MEMINFO }),
    guest(4),
  ];
  const d = driver();
  await d.connect();
  const ids = (await d.collect()).map((g) => g.id);
  const r = d.capabilities.guestReclaim!;
  assert.equal(await r.reclaim(ids[0]!, 32768), 'done');
  assert.deepEqual(fake.guests[0]!.agentWrites, ['/sys/fs/cgroup/memory.reclaim: 32768K']);
  assert.equal(await r.reclaim(ids[1]!, 1024), 'short');
  const missing = await r.reclaim(ids[2]!, 1024).catch((e: unknown) => e);
  assert.equal((missing as { kind?: string }).kind, 'unsupported');
  assert.match(String(missing), /no \/sys\/fs\/cgroup\/memory\.reclaim/);
  await assert.rejects(r.reclaim(ids[3]!, 1024), /not configured/);
  fake.guests = fake.guests.slice(0, 1);
  await assert.rejects(r.reclaim(ids[3]!, 1024), DomainNotFoundError);
});

test('setBalloon sets memory live; a vanished guest gives DomainNotFoundError', async () => {
  const d = driver();
  await d.connect();
  const s = await d.collect();
  await d.setBalloon(s[0]!.id, 200000);
  assert.deepEqual(fake.setMemory, [{ name: 'g1', kib: 200000, flags: 1 }]);
  assert.equal((await d.collect())[0]!.stats.balloon_cur, 200000);
  fake.guests[1]!.id = -1; // destroyed behind our back
  await assert.rejects(d.setBalloon(s[1]!.id, 200000), DomainNotFoundError);
  await assert.rejects(d.setBalloon(s[0]!.id, -5), RangeError);
});

test('a guest that vanished disappears from the next collection', async () => {
  const d = driver();
  await d.connect();
  assert.equal((await d.collect()).length, 3);
  fake.guests = fake.guests.slice(1);
  assert.deepEqual(
    (await d.collect()).map((x) => x.name),
    ['g2', 'g3'],
  );
});

test('lifecycle events arrive through onEvent', async () => {
  const d = driver();
  const got: LifecycleEvent[] = [];
  d.onEvent((e) => got.push(e));
  await d.connect();
  fake.emitLifecycle(fake.guests[0]!, 5, 1);
  fake.emitLifecycle(fake.guests[1]!, 2, 0);
  await waitUntil('events', () => got.length === 2);
  assert.deepEqual(got[0], { kind: 'destroyed', id: '00000000-0000-0000-0000-000000000001', name: 'g1', detail: 'destroyed' });
  assert.equal(got[1]!.kind, 'started');
});

test('libvirtd killed: collect keeps going with stale samples, then reconnects and re-registers events', async () => {
  const d = driver();
  const got: LifecycleEvent[] = [];
  d.onEvent((e) => got.push(e));
  await d.connect();
  const fresh = await d.collect();
  assert.equal(fresh.length, 3);

  await fake.kill();
  await waitUntil('driver to notice', () => !d.status().connected);
  const stale = await d.collect();
  assert.equal(stale.length, 3);
  for (const s of stale) assert.match(s.stale!, /libvirtd not connected/);
  assert.equal(stale[0]!.stats.balloon_cur, 262144, 'last sample kept');
  await assert.rejects(d.setBalloon(fresh[0]!.id, 1000), LibvirtConnectionError);

  await new Promise((r) => setTimeout(r, 150)); // a few failed attempts with backoff
  assert.ok(d.status().reconnectAttempt >= 2, `attempts: ${d.status().reconnectAttempt}`);
  await fake.start();
  await waitUntil('reconnect', () => d.status().connected);
  assert.equal(d.status().reconnects, 1);
  assert.deepEqual(d.connection(), { connected: true, reconnects: 1 }, 'what /metrics reports');
  const again = await d.collect();
  assert.equal(again[0]!.stale, undefined);
  fake.emitLifecycle(fake.guests[2]!, 5, 0);
  await waitUntil('event after reconnect', () => got.length === 1);
  assert.equal(got[0]!.kind, 'stopped');
});

test('connect() to a dead socket rejects clearly, and the driver connects once libvirtd appears', async () => {
  await fake.kill();
  const d = driver();
  await assert.rejects(d.connect(), /cannot connect to libvirtd at .*: (ENOENT|ECONNREFUSED)/);
  assert.deepEqual(await d.collect(), []);
  await fake.start();
  await waitUntil('background connect', () => d.status().connected);
  assert.equal((await d.collect()).length, 3);
});

test('a hung daemon (no replies) is dropped and reconnected', async () => {
  const d = driver({ callTimeoutMs: 100, keepaliveIntervalMs: 0 });
  await d.connect();
  await d.collect();
  fake.silent = true;
  const s = await d.collect();
  assert.match(s[0]!.stale!, /no reply from libvirtd/);
  fake.silent = false;
  await waitUntil('reconnect', () => d.status().reconnects === 1 && d.status().connected);
  assert.equal((await d.collect())[0]!.stale, undefined);
});

test('the balloon device from the domain XML, read once per domain: model and free page reporting as guest props', async () => {
  fake.guests = [guest(1), guest(2), guest(3)];
  const asked: number[] = [];
  fake.intercept = (sock: Socket, f: Frame) => {
    if (f.header.proc !== Proc.DOMAIN_GET_XML_DESC) return false;
    const id = readDomain(new XdrReader(f.payload)).id;
    asked.push(id);
    if (id === 3) return false; // the fake's "not supported": an old daemon
    const balloon = id === 1 ? "<memballoon model='virtio' freePageReporting='on'><stats period='5'/></memballoon>" : "<memballoon model='none'/>";
    const h = f.header;
    const xml = `<domain type='qemu'><name>g${id}</name><devices>${balloon}</devices></domain>`;
    sock.write(
      encodeFrame(
        { prog: h.prog, vers: h.vers, proc: h.proc, type: MessageType.REPLY, serial: h.serial, status: MessageStatus.OK },
        new XdrWriter().string(xml).toBuffer(),
      ),
    );
    return true;
  };
  const d = driver();
  await d.connect();
  const s = await d.collect();
  await d.collect();
  assert.deepEqual(asked.sort(), [1, 2, 3], 'once per domain, not every collection (a refusal too)');
  const props = new Map(s.map((g) => [g.name, g.props]));
  assert.equal(props.get('g1')!.free_page_reporting, 1);
  assert.equal(props.get('g1')!.balloon_model, 'virtio');
  assert.equal(props.get('g2')!.free_page_reporting, 0);
  assert.equal(props.get('g2')!.balloon_model, 'none');
  assert.equal(props.get('g3')!.free_page_reporting, undefined, 'unknown when the daemon would not say');
});
