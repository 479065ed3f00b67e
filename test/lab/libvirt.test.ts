// The libvirt driver against a real libvirtd and real QEMU guests of the lab (TCG):
// listing, one all-domain stats call, ballooning seen from inside the guest, the guest agent,
// libvirtd's errors, re-chunked and garbage streams, libvirtd killed mid-run, and lifecycle
// events when guests are destroyed. Guests are named ballast-lab-lv<N>: other suites' guests
// are never touched. Skips loudly when the lab cannot run here.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, createConnection, type Server, type Socket } from 'node:net';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureLibvirtd, labLibvirtdPid, libvirtdAnswers } from '../../src/lab/libvirtd.js';
import { labGuestSummary, virsh } from '../../src/lab/guests.js';
import { acquireLab, otherLeases, type LabSession, skipLoudly, until, othersDone, startLibvirtdAgain } from './fixture.js';
import { pidAlive } from '../../src/lab/proc.js';
import { LibvirtHypervisor } from '../../src/hypervisor/libvirt/index.js';
import { LibvirtClient, DEFAULT_SOCKET, DEFAULT_RO_SOCKET } from '../../src/hypervisor/libvirt/client.js';
import { agentPing, agentReadFile } from '../../src/hypervisor/libvirt/agent.js';
import { statsFromMeminfo } from '../../src/hypervisor/libvirt/mapping.js';
import { DomainNotFoundError, LibvirtConnectionError, LibvirtError, LibvirtProtocolError } from '../../src/hypervisor/libvirt/errors.js';
import { Affect, ListFlags, Proc, StatsTypes, uuidToString } from '../../src/hypervisor/libvirt/protocol.js';
import type { GuestSample, LifecycleEvent } from '../../src/types.js';

const COUNT = 3;
const MEM_KIB = 256 * 1024;
let unavailable: string | null = null;
let names: string[] = [];
let agentInImage = false;
const hv = new LibvirtHypervisor({ statsPeriodSec: 1, log: (l, m, f) => console.error(`[libvirt ${l}] ${m} ${f ? JSON.stringify(f) : ''}`) });
const events: LifecycleEvent[] = [];

/** The guest's own MemTotal (KiB) from its latest console meminfo line. */
function guestTotalKiB(name: string): number | null {
  const m = labGuestSummary(name).meminfo;
  return m.length ? m[m.length - 1]!.totalKiB : null;
}

const mine = (s: GuestSample[]) => s.filter((g) => names.includes(g.name));

let session: LabSession | null = null;

before(async () => {
  // One lab session (lease) for the whole file: other test files' releases leave libvirtd up.
  try {
    session = await acquireLab(
      { skip: (msg?: string) => void (unavailable = String(msg ?? 'lab unavailable').replace(/^LAB SKIPPED: /, '')) },
      { guests: COUNT, memMiB: MEM_KIB / 1024, workload: '', meminfoS: 1, statsPeriodS: 1, bootTimeoutMs: 240_000, freePageReporting: true },
    );
    if (!session) return;
    names = session.guests.map((g) => g.name);
    agentInImage = session.guests.every((g) => labGuestSummary(g.name).guestAgent === 'started');
    hv.onEvent((e) => events.push(e));
    await hv.connect();
  } catch (e) {
    unavailable = `lab could not start: ${(e as Error).message}`;
  }
});

after(async () => {
  await hv.close();
  if (session && !(await libvirtdAnswers())) await ensureLibvirtd().catch((e) => console.error(`cannot clean up lab guests: ${e}`));
  await session?.release();
});

test('the driver lists the lab guests and reads their balloon stats in one all-domain call', async (t) => {
  if (unavailable) return skipLoudly(t, unavailable);
  const c = hv.rawClient!;
  const listed = (await c.listAllDomains(ListFlags.ACTIVE)).map((d) => d.name);
  for (const n of names) assert.ok(listed.includes(n), `${n} listed (got ${listed.join(', ')})`);
  for (const n of names) {
    const dom = await c.lookupByName(n);
    assert.equal((await c.lookupByUuid(uuidToString(dom.uuid))).name, n, 'lookup by uuid finds the same domain');
    const info = await c.getInfo(dom);
    assert.equal(info.maxMem, MEM_KIB);
    assert.equal(info.state, 1, 'running');
  }

  // The guests' balloon drivers report within a period or two.
  const samples = await until('fresh balloon stats of all lab guests', 30_000, async () => {
    const s = mine(await hv.collect());
    return s.length === COUNT && s.every((g) => !g.stale) ? s : null;
  });
  const before = c.stats.callsSent;
  const again = mine(await hv.collect());
  assert.equal(c.stats.callsSent - before, 1, 'a collection of known guests is exactly one RPC');
  assert.equal(again.length, COUNT);
  for (const g of samples) {
    console.error(`lab guest ${g.name}: ${JSON.stringify(g.stats)}`);
    assert.equal(g.stats.balloon_cur, MEM_KIB);
    assert.equal(g.stats.balloon_max, MEM_KIB);
    assert.equal(g.stats.balloon_min, 0);
    const avail = g.stats.mem_available!;
    const unused = g.stats.mem_unused!;
    assert.ok(avail > 100_000 && avail <= MEM_KIB, `mem_available ${avail} KiB is the guest's total`);
    assert.ok(unused > 0 && unused <= avail, `mem_unused ${unused}`);
    assert.ok(g.stats.mem_free! >= unused, 'mem_free = unused + caches');
    assert.ok(g.stats.rss! > 0);
    assert.equal(g.stats.vcpu_count, 1);
    assert.equal(g.props.balloon_model, 'virtio', 'balloon facts from the domain XML');
    assert.equal(g.props.free_page_reporting, 1, 'free page reporting seen as on');
    const cmdline = readFileSync(`/proc/${g.props.pid}/cmdline`, 'utf8');
    assert.match(cmdline, new RegExp(`guest=${g.name}[,\\0]`), 'props.pid is the QEMU process of this guest');
    // The guest's own view (console) agrees with the balloon's "available".
    const total = guestTotalKiB(g.name);
    assert.ok(total !== null && Math.abs(total - avail) < 1024, `console MemTotal ${total} vs available ${avail}`);
  }
});

test('a balloon target set through the driver changes the guest memory the guest itself reports', async (t) => {
  if (unavailable) return skipLoudly(t, unavailable);
  const name = names[0]!;
  const s = mine(await hv.collect()).find((g) => g.name === name)!;
  const totalBefore = guestTotalKiB(name)!;
  const target = 160 * 1024;
  await hv.setBalloon(s.id, target);
  const shrunk = await until(`${name} to report less memory`, 60_000, () => {
    const t2 = guestTotalKiB(name);
    return t2 !== null && t2 <= totalBefore - 90 * 1024 ? t2 : null;
  });
  console.error(`lab ${name}: console MemTotal ${totalBefore} KiB -> ${shrunk} KiB after balloon target ${target} KiB`);
  // The balloon's own numbers follow within a stats period or two.
  await until('balloon_cur at the target and available shrunk', 20_000, async () =>
    mine(await hv.collect()).find((g) => g.name === name && g.stats.balloon_cur === target && g.stats.mem_available! <= totalBefore - 90 * 1024),
  );

  await hv.setBalloon(s.id, MEM_KIB);
  const grown = await until(`${name} to grow back`, 60_000, () => {
    const t2 = guestTotalKiB(name);
    return t2 !== null && t2 >= totalBefore - 1024 ? t2 : null;
  });
  console.error(`lab ${name}: console MemTotal back to ${grown} KiB`);
});

test('memory stats, stats period and the guest agent passthrough on a real guest', async (t) => {
  if (unavailable) return skipLoudly(t, unavailable);
  const c = hv.rawClient!;
  const dom = await c.lookupByName(names[1]!);
  await c.setMemoryStatsPeriod(dom, 1, Affect.LIVE);
  const stats = await c.memoryStats(dom);
  const tags = new Map(stats.map((s) => [s.tag, s.val]));
  assert.equal(tags.get(6), MEM_KIB, 'actual balloon');
  assert.ok((tags.get(5) ?? 0) > 100_000, 'available');
  // virsh reads the same numbers (the balloon refreshes every second: compare the stable ones).
  const v = await virsh(['dommemstat', names[1]!]);
  assert.match(v, new RegExp(`^actual ${MEM_KIB}$`, 'm'));
  assert.match(v, new RegExp(`^available ${tags.get(5)}$`, 'm'));
  if (!agentInImage) return skipLoudly(t, 'the lab image has no qemu guest agent: passthrough not exercised');
  await until('guest agent to answer', 30_000, () =>
    agentPing(c, dom).then(
      () => true,
      () => false,
    ),
  );
  const meminfo = statsFromMeminfo(await agentReadFile(c, dom, '/proc/meminfo'));
  assert.ok(Math.abs(meminfo.mem_total_guest! - (tags.get(5) ?? 0)) < 1024, 'agent MemTotal = balloon available');
  const raw = await c.agentCommand(dom, '{"execute":"guest-info"}', 5);
  assert.match(raw!, /"version"/);
  // hypervisor.guest_psi: the guest's own memory stall, read through the agent with the stats.
  const psi = new LibvirtHypervisor({ statsPeriodSec: 1, guestPsi: true });
  t.after(() => psi.close());
  await psi.connect();
  const g = (await psi.collect()).find((x) => x.name === names[1])!;
  for (const k of ['psi_some_avg10', 'psi_some_avg60', 'psi_full_avg10', 'psi_full_avg60']) {
    const v = g.stats[k];
    assert.ok(typeof v === 'number' && v >= 0 && v <= 100, `guest ${k} = ${v}: a share of time, in percent`);
  }
});

test("reclaim inside a real guest through libvirt's agent passthrough: memory.reclaim takes the write, and more than the guest holds comes back short", async (t) => {
  if (unavailable) return skipLoudly(t, unavailable);
  if (!agentInImage) return skipLoudly(t, 'the lab image has no qemu guest agent: reclaim not exercised');
  const g = mine(await hv.collect()).find((x) => x.name === names[0])!;
  const reclaim = hv.capabilities.guestReclaim!;
  // The agent starts with the guest's init: the first answer may take a moment.
  const first = await until('the guest agent to take a reclaim', 60_000, () => reclaim.reclaim(g.id, 1024).catch(() => null));
  assert.ok(first === 'done' || first === 'short', `a 1 MiB reclaim: ${first}`);
  assert.equal(await reclaim.reclaim(g.id, 4 * 1024 * 1024), 'short', '4 GiB from a small guest: its kernel frees what it can and says EAGAIN');
  await assert.rejects(reclaim.reclaim('00000000-0000-0000-0000-000000000000', 1024), /not found|no domain/i, 'no such guest');
});

test("libvirtd's errors surface with its message and code; read-only socket refuses writes", async (t) => {
  if (unavailable) return skipLoudly(t, unavailable);
  const c = hv.rawClient!;
  await assert.rejects(c.lookupByName('ballast-lab-no-such-guest'), (e: unknown) => {
    assert.ok(e instanceof DomainNotFoundError);
    assert.equal(e.code, 42);
    assert.match(e.message, /Domain not found: no domain with matching name 'ballast-lab-no-such-guest'/);
    return true;
  });
  const dom = await c.lookupByName(names[1]!);
  await assert.rejects(c.setMemoryFlags(dom, MEM_KIB * 4, Affect.LIVE), (e: unknown) => {
    assert.ok(e instanceof LibvirtError);
    console.error(`libvirtd said: [${e.code}] ${e.message}`);
    assert.match(e.message, /memory|max/i);
    return true;
  });
  await assert.rejects(hv.setBalloon('00000000-0000-0000-0000-00000000dead', MEM_KIB), DomainNotFoundError);

  const ro = await LibvirtClient.connect({ readOnly: true });
  try {
    assert.equal(ro.socketPath, DEFAULT_RO_SOCKET);
    const d = await ro.lookupByName(names[1]!);
    assert.equal((await ro.getInfo(d)).maxMem, MEM_KIB);
    await assert.rejects(ro.setMemoryFlags(d, MEM_KIB, Affect.LIVE), (e: unknown) => e instanceof LibvirtError && /read.only/i.test(e.message));
  } finally {
    await ro.close();
  }
  await assert.rejects(LibvirtClient.connect({ socketPath: '/run/ballast-lab/no-libvirt-here.sock' }), (e: unknown) => {
    assert.ok(e instanceof LibvirtConnectionError);
    assert.match(e.message, /cannot connect to libvirtd at \/run\/ballast-lab\/no-libvirt-here\.sock: ENOENT/);
    return true;
  });
});

/** A unix-socket proxy to libvirtd that re-chunks what libvirtd sends (1..7-byte pieces, or
 *  everything coalesced) and can inject garbage: the client must cope with any cutting. */
function chunkingProxy(dir: string, mode: 'tiny' | 'coalesce' | 'garbage'): Promise<{ path: string; server: Server }> {
  const path = join(dir, `${mode}.sock`);
  const server = createServer((down: Socket) => {
    const up = createConnection(DEFAULT_SOCKET);
    down.pipe(up);
    let backlog: Buffer[] = [];
    let seen = 0;
    up.on('data', (chunk: Buffer) => {
      seen += chunk.length;
      if (mode === 'tiny') {
        for (let i = 0; i < chunk.length; ) {
          const n = 1 + ((i * 7 + seen) % 7);
          down.write(chunk.subarray(i, i + n));
          i += n;
        }
      } else if (mode === 'coalesce') {
        backlog.push(chunk);
        setTimeout(() => {
          if (backlog.length) down.write(Buffer.concat(backlog));
          backlog = [];
        }, 30);
      } else {
        down.write(chunk);
        if (seen > 200) down.write(Buffer.from('\x00\x00\x00\x05garbage-not-a-record'));
      }
    });
    up.on('close', () => down.destroy());
    down.on('close', () => up.destroy());
    up.on('error', () => down.destroy());
    down.on('error', () => up.destroy());
  });
  return new Promise((res) => server.listen(path, () => res({ path, server })));
}

test('keepalive with the real daemon: our PINGs are answered, its PINGs get our PONGs', async (t) => {
  if (unavailable) return skipLoudly(t, unavailable);
  // A quiet client (no PINGs of its own) hears libvirtd's PINGs: libvirtd pings a client that
  // asked about the keepalive feature after 5 s of silence (its default keepalive_interval).
  const quiet = await LibvirtClient.connect({ keepaliveIntervalMs: 0 });
  // A chatty one pings after 1 s of silence and gets PONGs back.
  const chatty = await LibvirtClient.connect({ keepaliveIntervalMs: 1000, keepaliveCount: 3 });
  try {
    await until('a PING from libvirtd', 20_000, () => quiet.stats.pingsReceived >= 1);
    assert.ok(quiet.stats.pongsSent >= 1, 'answered with PONG');
    await until('PONGs to our PINGs', 10_000, () => chatty.stats.pongsReceived >= 2);
    assert.ok(chatty.stats.pingsSent >= 2);
    console.error(`keepalive: quiet client ${JSON.stringify(quiet.stats)}; chatty client ${JSON.stringify(chatty.stats)}`);
    assert.equal(quiet.isOpen && chatty.isOpen, true, 'both connections stay up');
    assert.ok((await quiet.listAllDomains()).length >= 1);
  } finally {
    await quiet.close();
    await chatty.close();
  }
});

test('records cut into tiny pieces or coalesced by the transport, and garbage, against the real daemon', async (t) => {
  if (unavailable) return skipLoudly(t, unavailable);
  const dir = mkdtempSync(join(tmpdir(), 'ballast-lv-proxy-'));
  try {
    for (const mode of ['tiny', 'coalesce'] as const) {
      const { path, server } = await chunkingProxy(dir, mode);
      const c = await LibvirtClient.connect({ socketPath: path });
      const [stats, doms, a, b] = await Promise.all([
        c.getAllDomainStats(StatsTypes.BALLOON | StatsTypes.STATE, ListFlags.ACTIVE),
        c.listAllDomains(),
        c.lookupByName(names[0]!),
        c.lookupByName(names[2]!),
      ]);
      assert.ok(
        names.every((n) => stats.some((r) => r.dom.name === n)),
        `${mode}: bulk stats of every guest`,
      );
      assert.ok(doms.length >= COUNT);
      assert.deepEqual([a.name, b.name], [names[0], names[2]], `${mode}: replies matched to their calls`);
      await assert.rejects(c.lookupByName('ballast-lab-nope'), DomainNotFoundError);
      await c.close();
      server.close();
    }
    const { path, server } = await chunkingProxy(dir, 'garbage');
    const closed = new Promise<Error | null>((resolve) => {
      LibvirtClient.connect({ socketPath: path }).then(
        (c) => {
          c.onClose(resolve);
          // Keep calling until the injected garbage arrives.
          const loop = (): Promise<void> => c.listAllDomains().then(loop, () => undefined);
          loop();
        },
        (e) => resolve(e as Error),
      );
    });
    const err = await closed;
    assert.ok(err instanceof LibvirtProtocolError, `garbage -> protocol error (got ${String(err)})`);
    assert.match(err.message, /invalid record length 5/);
    server.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('libvirtd killed mid-run: the driver keeps collecting (stale), reconnects when libvirtd is back', async (t) => {
  if (unavailable) return skipLoudly(t, unavailable);
  // Killing libvirtd disturbs every other lab user: wait for other sessions to finish, and
  // rather skip than kill it under them.
  if (!(await othersDone()))
    return skipLoudly(t, `other lab sessions still hold leases after 180 s (${otherLeases().join(', ')}): not killing libvirtd under them`);
  const pid = labLibvirtdPid();
  if (pid === null) return skipLoudly(t, 'the running libvirtd was not started by the lab (no PID file of ours): not killing it');
  const fresh = mine(await hv.collect());
  assert.equal(fresh.length, COUNT);
  const reconnectsBefore = hv.status().reconnects;

  // A collection loop runs all along, as the daemon's would.
  const log: { t: number; stale: number; n: number }[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const s = mine(await hv.collect());
      log.push({ t: Date.now(), stale: s.filter((g) => g.stale).length, n: s.length });
      await new Promise((r) => setTimeout(r, 250));
    }
  })();

  let after: GuestSample[];
  try {
    process.kill(pid, 'SIGKILL'); // only the libvirtd our PID file names
    await until('libvirtd to die', 10_000, () => !pidAlive(pid));
    await until('the driver to notice', 15_000, () => !hv.status().connected);
    const during = mine(await hv.collect());
    assert.equal(during.length, COUNT, 'last samples kept');
    for (const g of during) assert.match(g.stale!, /libvirtd not connected/);
    await assert.rejects(hv.setBalloon(during[0]!.id, MEM_KIB), LibvirtConnectionError);
    await new Promise((r) => setTimeout(r, 1500)); // a few reconnect attempts fail meanwhile
    assert.ok(hv.status().reconnectAttempt >= 2, `backoff attempts ${hv.status().reconnectAttempt}`);

    await startLibvirtdAgain();
    assert.notEqual(labLibvirtdPid(), pid);
    await until('the driver to reconnect', 30_000, () => hv.status().connected);
    assert.ok(hv.status().reconnects > reconnectsBefore);
    after = await until('fresh samples after reconnect', 30_000, async () => {
      const s = mine(await hv.collect());
      return s.length === COUNT && s.every((g) => !g.stale) ? s : null;
    });
    await until('the running loop to see fresh samples', 10_000, () => log.length > 0 && log[log.length - 1]!.stale === 0);
  } finally {
    running = false;
    await loop;
  }
  console.error(
    `libvirtd restart: ${log.length} collections, ${log.filter((l) => l.stale).length} of them stale, driver status ${JSON.stringify(hv.status())}`,
  );
  assert.deepEqual(after.map((g) => g.id).sort(), fresh.map((g) => g.id).sort(), 'same guests (QEMU outlived libvirtd)');
  assert.ok(
    log.some((l) => l.stale === COUNT),
    'the loop saw stale samples while libvirtd was down',
  );
  assert.ok(
    log.every((l) => l.n === COUNT),
    'the loop never lost a guest',
  );
  // The balloon works again through the new connection.
  await hv.setBalloon(after[2]!.id, 200 * 1024);
  await until('balloon after reconnect', 30_000, async () => mine(await hv.collect()).find((g) => g.id === after[2]!.id && g.stats.balloon_cur === 200 * 1024));
});

// Runs after the restart above: the lifecycle callback registered on the new connection.
test('lifecycle events arrive when lab guests are destroyed', async (t) => {
  if (unavailable) return skipLoudly(t, unavailable);
  events.length = 0;
  const [a, b] = names.slice(1);
  await virsh(['destroy', a!]);
  const c = hv.rawClient!;
  await c.destroyDomain(await c.lookupByName(b!));
  const got = await until('destroyed events', 20_000, () => {
    const d = events.filter((e) => e.kind === 'destroyed' && (e.name === a || e.name === b));
    return d.length === 2 ? d : null;
  });
  assert.deepEqual(got.map((e) => e.name).sort(), [a, b].sort());
  for (const e of got) assert.equal(e.detail, 'destroyed');
  const left = mine(await hv.collect()).map((g) => g.name);
  assert.deepEqual(left, [names[0]]);
  // A guest that vanished: the typed error, which the engine treats as "gone", not as a failure.
  await assert.rejects(hv.setBalloon(got[0]!.id, MEM_KIB), DomainNotFoundError);
  const stale = await c.lookupByName(names[0]!);
  await c.destroyDomain(stale);
  await assert.rejects(c.getInfo(stale), DomainNotFoundError, 'a call on a domain destroyed since its lookup');
  assert.equal(hv.rawClient!.stats.eventsReceived > 0, true);
  void Proc;
});
