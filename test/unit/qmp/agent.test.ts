// The guest agent client over its own socket, against an agent in the test process that can
// misbehave: stale bytes and replies before the sync, silence, garbage, error replies.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { GuestAgentClient, GuestAgentCommandError, GuestAgentUnavailable } from '../../../src/hypervisor/qmp/agent.js';
import { AgentRetry, GuestAgentError, readGuestFile } from '../../../src/hypervisor/guest-agent.js';
import { QmpHypervisor } from '../../../src/hypervisor/qmp/index.js';
import { tempDir } from '../temp-dir.js';
import { fakeQmp } from './fake-server.js';

type Cmd = { execute: string; arguments?: Record<string, unknown> };

interface FakeAgent {
  path: string;
  received: string[];
  connections: number;
  /** What to send for a command: a reply object, raw bytes/string, or null for silence. */
  handle: (cmd: Cmd) => unknown;
  /** Sent before the 0xFF of a sync reply (what a dropped client left in the channel). */
  beforeSync: string;
  /** Answer nothing at all, not even a sync (a guest whose agent is not running). */
  mute: boolean;
  close(): Promise<void>;
}

async function fakeAgent(dir: string, name = 'vm.qga'): Promise<FakeAgent> {
  const sockets: Socket[] = [];
  const f: FakeAgent = {
    path: join(dir, name),
    received: [],
    connections: 0,
    handle: () => ({ return: {} }),
    beforeSync: '',
    mute: false,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  const server: Server = createServer((sock) => {
    sockets.push(sock);
    f.connections++;
    let buf = '';
    sock.on('data', (d) => {
      buf += d.toString('latin1').replace(/\xff/g, '');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const cmd = JSON.parse(buf.slice(0, nl)) as Cmd;
        buf = buf.slice(nl + 1);
        f.received.push(cmd.execute);
        if (f.mute) continue;
        if (cmd.execute === 'guest-sync-delimited') {
          sock.write(Buffer.concat([Buffer.from(f.beforeSync), Buffer.from([0xff]), Buffer.from(`${JSON.stringify({ return: cmd.arguments!.id })}\n`)]));
          continue;
        }
        const r = f.handle(cmd);
        if (r === null) continue;
        sock.write(typeof r === 'string' || Buffer.isBuffer(r) ? r : `${JSON.stringify(r)}\n`);
      }
    });
    sock.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(f.path, () => r()));
  return f;
}

test('guest agent: syncs past stale bytes and replies, then runs commands in order', async (t) => {
  const dir = tempDir('ballast-qga-');
  const agent = await fakeAgent(dir);
  t.after(() => agent.close());
  agent.beforeSync = '{"return": {"stale": true}}\n{"retu';
  agent.handle = (cmd) => ({ return: { echo: cmd.execute } });
  const c = new GuestAgentClient(agent.path, 500);
  t.after(() => c.close());
  const [a, b] = await Promise.all([c.execute('guest-ping'), c.execute('guest-info')]);
  assert.deepEqual(a, { echo: 'guest-ping' });
  assert.deepEqual(b, { echo: 'guest-info' }, 'replies matched in call order');
  assert.deepEqual(agent.received, ['guest-sync-delimited', 'guest-ping', 'guest-info'], 'one sync per connection');

  agent.handle = () => ({ error: { class: 'GenericError', desc: 'open failed: No such file' } });
  await assert.rejects(c.execute('guest-file-open', { path: '/nope' }), (e: unknown) => e instanceof GuestAgentCommandError && /open failed/.test(e.message));
  agent.handle = () => ({ return: 7 });
  assert.equal(await c.execute('guest-ping'), 7, 'an error reply keeps the connection');
  assert.equal(agent.connections, 1);
});

test('guest agent: silence times out, the late reply is not taken for the next command', async (t) => {
  const dir = tempDir('ballast-qga-');
  const agent = await fakeAgent(dir);
  t.after(() => agent.close());
  const c = new GuestAgentClient(agent.path, 200);
  t.after(() => c.close());
  let late: (() => void) | null = null;
  agent.handle = (cmd) => {
    if (cmd.execute === 'slow') {
      late = () => undefined;
      return null; // the agent answers never on this connection
    }
    return { return: cmd.execute };
  };
  await assert.rejects(c.execute('slow'), (e: unknown) => e instanceof GuestAgentUnavailable && /no reply to slow within 200 ms/.test(e.message));
  assert.ok(late);
  // The stale answer to "slow" arrives before the next sync's delimiter and is dropped.
  agent.beforeSync = `${JSON.stringify({ return: 'slow' })}\n`;
  assert.equal(await c.execute('fast'), 'fast');
  assert.equal(agent.connections, 2, 'reconnected after the timeout');
});

test('guest agent: garbage drops the connection; no socket and no agent are clear errors', async (t) => {
  const dir = tempDir('ballast-qga-');
  const agent = await fakeAgent(dir);
  t.after(() => agent.close());
  const c = new GuestAgentClient(agent.path, 300);
  t.after(() => c.close());
  agent.handle = () => 'this is not json\n';
  await assert.rejects(c.execute('guest-ping'), (e: unknown) => e instanceof GuestAgentError && /garbage/.test(e.message));
  agent.handle = () => ({ something: 'else' });
  await assert.rejects(c.execute('guest-ping'), /has no "return"/);
  agent.handle = () => ({ return: 'ok' });
  assert.equal(await c.execute('guest-ping'), 'ok', 'a new connection after garbage');

  const missing = new GuestAgentClient(join(dir, 'none.qga'), 300);
  await assert.rejects(missing.execute('guest-ping'), /no such socket/);
  // A socket with no agent behind it (QEMU's chardev accepts; the guest never answers).
  const mute = createServer(() => {});
  await new Promise<void>((r) => mute.listen(join(dir, 'mute.qga'), () => r()));
  t.after(() => mute.close());
  const m = new GuestAgentClient(join(dir, 'mute.qga'), 200);
  t.after(() => m.close());
  await assert.rejects(m.execute('guest-ping'), /no reply to guest-sync-delimited within 200 ms \(agent not running\?\)/);
});

test('guest files: read in chunks until eof, closed even on failure, size capped', async (t) => {
  const dir = tempDir('ballast-qga-');
  const agent = await fakeAgent(dir);
  t.after(() => agent.close());
  const c = new GuestAgentClient(agent.path, 500);
  t.after(() => c.close());
  const chunks = ['some avg10=1.50 avg60=0.20 avg300=0.00 total=1234\n', 'full avg10=0.50 avg60=0.00 avg300=0.00 total=99\n'];
  let reads = 0;
  agent.handle = (cmd) => {
    if (cmd.execute === 'guest-file-open') return { return: 42 };
    if (cmd.execute === 'guest-file-read') {
      const part = chunks[reads++];
      return { return: { count: part?.length ?? 0, 'buf-b64': Buffer.from(part ?? '').toString('base64'), eof: reads > chunks.length } };
    }
    return { return: {} };
  };
  const exec = (cmd: string, args?: Record<string, unknown>) => c.execute(cmd, args);
  assert.equal(await readGuestFile(exec, '/proc/pressure/memory'), chunks.join(''));
  assert.equal(agent.received.filter((x) => x === 'guest-file-close').length, 1);
  reads = 0;
  await assert.rejects(readGuestFile(exec, '/proc/pressure/memory', 60), /larger than 60 bytes/);
  assert.equal(agent.received.filter((x) => x === 'guest-file-close').length, 2, 'closed after the failure too');
  agent.handle = (cmd) => (cmd.execute === 'guest-file-open' ? { return: 'handle?' } : { return: {} });
  await assert.rejects(readGuestFile(exec, '/x'), /not a handle/);
});

test('QMP driver: a <stem>.qga socket is the agent of <stem>.qmp, read for guest PSI, never taken for QMP', async (t) => {
  const dir = tempDir('ballast-qmpdir-');
  const qmp = await fakeQmp(join(dir, 'web1.qmp'));
  t.after(() => qmp.close());
  qmp.handle = (cmd) => {
    const r: Record<string, unknown> = {
      'query-name': { name: 'web1' },
      'query-memory-size-summary': { 'base-memory': 512 * 2 ** 20 },
      'query-cpus-fast': [],
      'qom-list': [],
      'query-balloon': { actual: 256 * 2 ** 20 },
    };
    return { return: r[cmd.execute] ?? {}, id: cmd.id };
  };
  const h = new QmpHypervisor({ socketDir: dir, guestPsi: true, retryMs: 50 });
  t.after(() => h.close());
  const started: string[] = [];
  h.onEvent((e) => {
    if (e.kind === 'started') started.push(e.name);
  });
  const [before] = await h.collect();
  assert.equal(before!.stats.psi_some_avg10, undefined, 'no agent socket yet');
  // QEMU creates the agent's socket beside the QMP one, not necessarily at the same moment.
  const agent = await fakeAgent(dir, 'web1.qga');
  t.after(() => agent.close());
  const psi = 'some avg10=12.50 avg60=3.00 avg300=1.00 total=5000\nfull avg10=4.00 avg60=1.00 avg300=0.00 total=2000\n';
  agent.handle = (cmd) => {
    if (cmd.execute === 'guest-file-open') return { return: 1 };
    if (cmd.execute === 'guest-file-read') return { return: { count: psi.length, 'buf-b64': Buffer.from(psi).toString('base64'), eof: true } };
    return { return: {} };
  };
  const [s, ...rest] = await h.collect();
  assert.deepEqual(started, ['web1'], 'the guest is not met anew when its agent appears');
  assert.equal(qmp.sockets.length, 1, 'its QMP connection kept');
  assert.equal(rest.length, 0, 'the agent socket is not a second guest');
  assert.equal(s!.name, 'web1');
  assert.equal(s!.props.agent_socket, join(dir, 'web1.qga'));
  assert.equal(s!.stats.psi_some_avg10, 12.5);
  assert.equal(s!.stats.psi_full_avg10, 4);

  // An agent that stops answering: the sample goes on without PSI, and it is not asked again
  // at the next collection (a minute's pause), so a dead agent costs one timeout a minute.
  agent.mute = true;
  agent.handle = () => null;
  const h2 = new QmpHypervisor({ socketDir: dir, guestPsi: true, retryMs: 50, agentTimeoutMs: 200 });
  t.after(() => h2.close());
  const asked = agent.received.length;
  const [s2] = await h2.collect();
  assert.equal(s2!.stats.psi_some_avg10, undefined);
  assert.equal(s2!.stale, s!.stale, 'a missing agent does not make the sample stale');
  assert.equal(agent.received.length, asked + 1, 'one sync, unanswered');
  await h2.collect();
  assert.equal(agent.received.length, asked + 1, 'not asked again at the next collection');

  const off = new QmpHypervisor({ socketDir: dir, retryMs: 50 });
  t.after(() => off.close());
  const [s3] = await off.collect();
  assert.equal(s3!.stats.psi_some_avg10, undefined, 'guest_psi off: the agent is not asked');
});

test('QMP driver, shared mode: the agent socket is shared too: a connection per read, closed after it, cut at the hold cap', async (t) => {
  const dir = tempDir('ballast-qmpdir-');
  const qmp = await fakeQmp(join(dir, 'web1.qmp'));
  t.after(() => qmp.close());
  qmp.handle = (cmd) => {
    const r: Record<string, unknown> = {
      'query-memory-size-summary': { 'base-memory': 512 * 2 ** 20 },
      'query-balloon': { actual: 256 * 2 ** 20 },
    };
    return { return: r[cmd.execute] ?? {}, id: cmd.id };
  };
  const agent = await fakeAgent(dir, 'web1.qga');
  t.after(() => agent.close());
  const psi = 'some avg10=12.50 avg60=3.00 avg300=1.00 total=5000\nfull avg10=4.00 avg60=1.00 avg300=0.00 total=2000\n';
  agent.handle = (cmd) => {
    if (cmd.execute === 'guest-file-open') return { return: 1 };
    if (cmd.execute === 'guest-file-read') return { return: { count: psi.length, 'buf-b64': Buffer.from(psi).toString('base64'), eof: true } };
    return { return: {} };
  };
  const h = new QmpHypervisor({ socketDir: dir, guestPsi: true, mode: 'shared', holdMs: 150 });
  t.after(() => h.close());
  const [s] = await h.collect();
  assert.equal(s!.stats.psi_some_avg10, 12.5);
  assert.equal(agent.connections, 1);
  const [s2] = await h.collect();
  assert.equal(s2!.stats.psi_some_avg10, 12.5);
  assert.equal(agent.connections, 2, 'the first connection was not kept: a new one for the next read');
  assert.equal(agent.received.filter((x) => x === 'guest-sync-delimited').length, 2);
  // An agent that answers the sync but not the read: cut at the cap, not after the agent timeout.
  agent.handle = (cmd) => (cmd.execute === 'guest-file-open' ? null : { return: {} });
  const h2 = new QmpHypervisor({ socketDir: dir, guestPsi: true, mode: 'shared', holdMs: 150, agentTimeoutMs: 60_000 });
  t.after(() => h2.close());
  const [s3] = await h2.collect();
  assert.equal(s3!.stats.psi_some_avg10, undefined, 'no PSI from a read that was cut');
  assert.equal(s3!.stale, s!.stale, 'a missing PSI never changes why (or whether) the sample is stale');
});

test('agent retry: a minute for an agent that never answered, 10 s for one that stopped', () => {
  const r = new AgentRetry();
  assert.ok(r.due('a', 0));
  assert.equal(r.failed('a', 1000), 60_000);
  assert.ok(r.failing('a'));
  assert.ok(!r.due('a', 60_999));
  assert.ok(r.due('a', 61_000));
  r.ok('a');
  assert.ok(!r.failing('a'));
  assert.equal(r.failed('a', 100_000), 10_000, 'answered before: back sooner');
  assert.ok(!r.due('a', 109_999));
  assert.ok(r.due('a', 110_000));
  assert.equal(r.failed('b', 0), 60_000, 'per guest');
  r.forget('a');
  assert.equal(r.failed('a', 0), 60_000, 'a guest met anew starts over');
});

test("QMP driver: guestReclaim writes to the guest's memory.reclaim through its <stem>.qga socket; a guest without one cannot be asked", async (t) => {
  const dir = tempDir('ballast-qmpreclaim-');
  for (const name of ['web1', 'web2']) {
    const qmp = await fakeQmp(join(dir, `${name}.qmp`));
    t.after(() => qmp.close());
    qmp.handle = (cmd) => {
      const r: Record<string, unknown> = {
        'query-name': { name },
        'query-memory-size-summary': { 'base-memory': 512 * 2 ** 20 },
        'query-cpus-fast': [],
        'qom-list': [],
        'query-balloon': { actual: 256 * 2 ** 20 },
      };
      return { return: r[cmd.execute] ?? {}, id: cmd.id };
    };
  }
  const agent = await fakeAgent(dir, 'web1.qga');
  t.after(() => agent.close());
  const written: string[] = [];
  let short = false;
  agent.handle = (cmd) => {
    if (cmd.execute === 'guest-file-open') return { return: 5 };
    if (cmd.execute === 'guest-file-write') written.push(Buffer.from(String(cmd.arguments!['buf-b64']), 'base64').toString());
    if (cmd.execute === 'guest-file-close' && short)
      return { error: { class: 'GenericError', desc: 'failed to close handle: Resource temporarily unavailable' } };
    return { return: {} };
  };
  const h = new QmpHypervisor({ socketDir: dir, retryMs: 50 });
  t.after(() => h.close());
  const guests = await h.collect();
  const web1 = guests.find((g) => g.name === 'web1')!;
  const web2 = guests.find((g) => g.name === 'web2')!;
  assert.equal(await h.capabilities.guestReclaim!.reclaim(web1.id, 2048), 'done');
  assert.deepEqual(written, ['2048K']);
  assert.deepEqual(agent.received.slice(-3), ['guest-file-open', 'guest-file-write', 'guest-file-close']);
  short = true;
  assert.equal(await h.capabilities.guestReclaim!.reclaim(web1.id, 2048), 'short');
  const err = await h.capabilities.guestReclaim!.reclaim(web2.id, 2048).catch((e: unknown) => e);
  assert.equal((err as { kind?: string }).kind, 'unsupported');
  assert.match(String(err), /web2 has no guest agent socket/);
});
