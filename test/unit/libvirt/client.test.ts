import { test, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FakeLibvirtd, guest } from './fake-libvirtd.js';
import { encodeFrame, MessageType } from '../../../src/hypervisor/libvirt/framing.js';
import { LibvirtClient } from '../../../src/hypervisor/libvirt/client.js';
import {
  DomainNotFoundError,
  LibvirtConnectionError,
  LibvirtError,
  LibvirtProtocolError,
  LibvirtTimeoutError,
} from '../../../src/hypervisor/libvirt/errors.js';
import { Affect, EventId, StatsTypes, ListFlags, uuidToString, Proc } from '../../../src/hypervisor/libvirt/protocol.js';
import type { LifecycleMsg } from '../../../src/hypervisor/libvirt/protocol.js';

let fake: FakeLibvirtd;
const clients: LibvirtClient[] = [];
async function connect(extra: Partial<ConstructorParameters<typeof LibvirtClient>[0]> = {}) {
  const c = await LibvirtClient.connect({ socketPath: fake.path, uri: 'test:///default', ...extra });
  clients.push(c);
  return c;
}
const waitUntil = async (what: string, cond: () => boolean, ms = 2000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
};

beforeEach(async () => {
  fake = new FakeLibvirtd();
  fake.guests = [guest(1), guest(2), guest(3)];
  await fake.start();
});
afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy(null);
  await fake.dispose();
});

test('open does auth list, connect open, keepalive feature; then calls work', async () => {
  const c = await connect();
  assert.deepEqual(
    fake.calls.map((x) => x.proc),
    [Proc.AUTH_LIST, Proc.CONNECT_OPEN, Proc.CONNECT_SUPPORTS_FEATURE],
  );
  const doms = await c.listAllDomains();
  assert.deepEqual(
    doms.map((d) => d.name),
    ['g1', 'g2', 'g3'],
  );
  assert.equal(uuidToString(doms[1]!.uuid), '00000000-0000-0000-0000-000000000002');
});

test('libvirtd errors become DomainNotFoundError / LibvirtError with its message and code', async () => {
  const c = await connect();
  await assert.rejects(c.lookupByName('missing'), (e: unknown) => {
    assert.ok(e instanceof DomainNotFoundError);
    assert.equal(e.code, 42);
    assert.equal(e.procedure, 'DOMAIN_LOOKUP_BY_NAME');
    assert.match(e.message, /no domain with matching name 'missing'/);
    return true;
  });
  const g = await c.lookupByName('g1');
  await assert.rejects(c.setMemoryFlags(g, 10 ** 7, Affect.LIVE), (e: unknown) => {
    assert.ok(e instanceof LibvirtError && !(e instanceof DomainNotFoundError));
    assert.equal(e.code, 8);
    assert.match(e.message, /higher than max memory/);
    return true;
  });
  // The connection survives errors.
  assert.equal((await c.lookupByName('g2')).name, 'g2');
});

test('replies arriving in reverse order are matched by serial', async () => {
  const c = await connect();
  fake.reorderBatch = 3;
  const [a, b, d] = await Promise.all([c.lookupByName('g1'), c.lookupByName('g2'), c.lookupByName('g3')]);
  assert.deepEqual([a.name, b.name, d.name], ['g1', 'g2', 'g3']);
  assert.equal(c.stats.unmatchedReplies, 0);
});

test('several replies in one chunk (coalesced, reordered) are all delivered', async () => {
  const c = await connect();
  fake.reorderBatch = 4;
  fake.writeMode = 'coalesce';
  const names = await Promise.all(['g3', 'g1', 'g2', 'g1'].map((n) => c.lookupByName(n).then((d) => d.name)));
  assert.deepEqual(names, ['g3', 'g1', 'g2', 'g1']);
});

test('records split byte by byte over the socket are reassembled', async () => {
  fake.writeMode = 'byte-by-byte';
  const c = await connect();
  const recs = await c.getAllDomainStats(StatsTypes.BALLOON, ListFlags.ACTIVE);
  assert.equal(recs.length, 3);
  assert.ok(recs[0]!.params.find((p) => p.field === 'balloon.current'));
});

test('garbage from the daemon fails pending calls with a protocol error and closes', async () => {
  const c = await connect();
  fake.silent = true; // the call stays pending
  const closed = new Promise<Error | null>((r) => c.onClose(r));
  const pending = c.lookupByName('g1');
  await waitUntil('call to arrive', () => fake.calls.length === 4);
  fake.sendRaw(Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n'));
  await assert.rejects(pending, LibvirtProtocolError);
  const err = await closed;
  assert.ok(err instanceof LibvirtProtocolError);
  assert.match(err.message, /garbage/);
  assert.equal(c.isOpen, false);
  await assert.rejects(c.lookupByName('g1'), LibvirtProtocolError);
});

test('a dead socket path gives a clear connection error', async () => {
  await assert.rejects(LibvirtClient.connect({ socketPath: fake.dir + '/nope.sock' }), (e: unknown) => {
    assert.ok(e instanceof LibvirtConnectionError);
    assert.equal(e.syscallCode, 'ENOENT');
    assert.match(e.message, /cannot connect to libvirtd at .*nope\.sock: ENOENT \(no such socket; is libvirtd running\?\)/);
    return true;
  });
});

test('the daemon going away fails pending calls and reports the close', async () => {
  const c = await connect();
  fake.silent = true;
  const closed = new Promise<Error | null>((r) => c.onClose(r));
  const pending = c.listAllDomains();
  await waitUntil('call to arrive', () => fake.calls.length === 4);
  await fake.kill();
  await assert.rejects(pending, LibvirtConnectionError);
  assert.match(String((await closed)?.message), /closed the connection/);
});

test('keepalive: PINGs from the daemon are answered with PONG', async () => {
  fake.pingOnOpen = true;
  const c = await connect();
  await waitUntil('PONG', () => fake.pongsReceived === 1);
  assert.equal(c.stats.pingsReceived, 1);
  assert.equal(c.stats.pongsSent, 1);
});

test('keepalive: a silent peer is declared dead after `count` unanswered PINGs', async () => {
  const c = await connect({ keepaliveIntervalMs: 40, keepaliveCount: 2 });
  fake.silent = true;
  const t0 = Date.now();
  const err = await new Promise<Error | null>((r) => c.onClose(r));
  assert.ok(err instanceof LibvirtConnectionError);
  assert.match(err.message, /did not answer 2 keepalive pings/);
  assert.ok(c.stats.pingsSent >= 2);
  assert.ok(Date.now() - t0 < 2000);
});

test('keepalive: an answering peer keeps the connection', async () => {
  const c = await connect({ keepaliveIntervalMs: 30, keepaliveCount: 2 });
  await new Promise((r) => setTimeout(r, 250));
  assert.equal(c.isOpen, true);
  assert.ok(c.stats.pingsSent >= 2, `pings sent: ${c.stats.pingsSent}`);
  assert.ok(c.stats.pongsReceived >= 2);
});

test('a call with no reply times out (the connection stays)', async () => {
  const c = await connect({ callTimeoutMs: 80, keepaliveIntervalMs: 0 });
  fake.silent = true;
  await assert.rejects(c.listAllDomains(), (e: unknown) => e instanceof LibvirtTimeoutError && /CONNECT_LIST_ALL_DOMAINS: no reply/.test(e.message));
  assert.equal(c.isOpen, true);
});

test('lifecycle events registered with callback-register-any are delivered', async () => {
  const c = await connect();
  const got: LifecycleMsg[] = [];
  c.onLifecycle((m) => got.push(m));
  const id = await c.registerEvent(EventId.LIFECYCLE, null);
  fake.emitLifecycle(fake.guests[1]!, 5, 1);
  await waitUntil('event', () => got.length === 1);
  assert.equal(got[0]!.callbackId, id);
  assert.equal(got[0]!.dom.name, 'g2');
  assert.deepEqual([got[0]!.event, got[0]!.detail], [5, 1]);
});

test('events arriving between replies do not disturb serial matching', async () => {
  const c = await connect();
  const got: LifecycleMsg[] = [];
  c.onLifecycle((m) => got.push(m));
  await c.registerEvent();
  fake.writeMode = 'byte-by-byte';
  const p = Promise.all([c.lookupByName('g1'), c.lookupByName('g3')]);
  fake.emitLifecycle(fake.guests[0]!, 2, 0);
  const [a, b] = await p;
  assert.deepEqual([a.name, b.name], ['g1', 'g3']);
  await waitUntil('event', () => got.length === 1);
});

test('guest agent passthrough returns the agent reply text', async () => {
  fake.guests[0]!.agentMeminfo = 'MemTotal: 1 kB\n';
  const c = await connect();
  const g = await c.lookupByName('g1');
  const r = await c.agentCommand(g, { execute: 'guest-file-open', arguments: { path: '/proc/meminfo', mode: 'r' } }, 2);
  assert.deepEqual(JSON.parse(r!), { return: 1000 });
  const g2 = await c.lookupByName('g2');
  await assert.rejects(c.agentCommand(g2, { execute: 'guest-ping' }), /guest agent is not configured/);
});

test('a reply whose procedure does not match its serial is refused', async () => {
  const c = await connect();
  fake.intercept = (sock, f) => {
    sock.write(encodeFrame({ ...f.header, proc: f.header.proc + 1, type: MessageType.REPLY }, Buffer.alloc(0)));
    return true;
  };
  await assert.rejects(c.listAllDomains(), /CONNECT_LIST_ALL_DOMAINS: reply with serial \d+ is for program 20008086 procedure 274/);
  fake.intercept = null;
  assert.equal((await c.listAllDomains()).length, 3);
});

test('random reply payloads and statuses settle the call, never crash (property)', async () => {
  const c = await connect({ keepaliveIntervalMs: 0, callTimeoutMs: 2000 });
  let reply: { status: number; payload: Uint8Array; type: number } = { status: 0, payload: new Uint8Array(), type: MessageType.REPLY };
  fake.intercept = (sock, f) => {
    sock.write(encodeFrame({ ...f.header, type: reply.type, status: reply.status }, reply.payload));
    return true;
  };
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        status: fc.constantFrom(0, 1, 2, 7),
        payload: fc.oneof(
          fc.uint8Array({ maxLength: 64 }),
          fc.array(fc.integer({ min: 0, max: 40 }), { maxLength: 12 }).map((ws) => {
            const b = Buffer.alloc(ws.length * 4);
            ws.forEach((w, i) => {
              b.writeUInt32BE(w, i * 4);
            });
            return new Uint8Array(b);
          }),
        ),
        type: fc.constantFrom(MessageType.REPLY, MessageType.REPLY_WITH_FDS),
      }),
      async (r) => {
        reply = r;
        try {
          const doms = await c.listAllDomains();
          assert.ok(Array.isArray(doms), 'a payload that decodes exactly is a valid list');
        } catch (e) {
          assert.ok(e instanceof LibvirtProtocolError || e instanceof LibvirtError, `unexpected ${String(e)}`);
        }
        assert.equal(c.isOpen, true, 'a bad reply fails its call, not the connection');
      },
    ),
    { numRuns: 150 },
  );
});
