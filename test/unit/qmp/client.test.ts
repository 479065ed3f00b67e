// The QMP client against an in-test QMP server: framing, id matching, events, garbage, reconnect.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { join } from 'node:path';
import { QmpClient, QmpCommandError, type QmpEvent } from '../../../src/hypervisor/qmp/client.js';
import { QmpLineReader, parseLine } from '../../../src/hypervisor/qmp/framing.js';
import { cleanup, fakeQmp } from './fake-server.js';

test('framing: partial lines, several messages per chunk, CRLF, split UTF-8, garbage lines', () => {
  const r = new QmpLineReader();
  assert.deepEqual(r.push('{"a":'), []);
  const both = r.push('1}\r\n{"b":2}\r\n{"c"');
  assert.deepEqual(both, [
    { ok: true, message: { a: 1 } },
    { ok: true, message: { b: 2 } },
  ]);
  assert.deepEqual(r.push(':3}\n'), [{ ok: true, message: { c: 3 } }]);
  const euro = Buffer.from('{"s":"€"}\n');
  assert.deepEqual(r.push(euro.subarray(0, 7)), []);
  assert.deepEqual(r.push(euro.subarray(7)), [{ ok: true, message: { s: '€' } }]);
  const bad = r.push('\u0000\u0001garbage\r\n[1,2]\n{"ok":1}\n');
  assert.equal(bad.length, 3);
  assert.match((bad[0] as { error: string }).error, /^not JSON: "\?\?garbage"/);
  assert.match((bad[1] as { error: string }).error, /not a JSON object/);
  assert.deepEqual(bad[2], { ok: true, message: { ok: 1 } });
  const small = new QmpLineReader(10);
  assert.throws(() => small.push('x'.repeat(11)), /without a line end/);
  assert.equal(parseLine('{"x":1}').ok, true);
});

test('greeting, qmp_capabilities first, then id-matched replies even out of order', async (t) => {
  const f = await fakeQmp();
  t.after(() => cleanup(f));
  const held: { execute: string; id?: unknown }[] = [];
  f.handle = (cmd, sock) => {
    if (cmd.execute === 'slow') {
      held.push(cmd);
      return null;
    }
    if (cmd.execute === 'fast') {
      // Answer fast, then the held slow one, in one write, with an event between.
      const slow = held.shift()!;
      sock.write(
        JSON.stringify({ return: 'F', id: cmd.id }) +
          '\r\n' +
          JSON.stringify({ event: 'BALLOON_CHANGE', data: { actual: 1048576 }, timestamp: { seconds: 10, microseconds: 500000 } }) +
          '\r\n' +
          JSON.stringify({ return: 'S', id: slow.id }) +
          '\r\n',
      );
      return null;
    }
    return { return: {}, id: cmd.id };
  };
  const c = new QmpClient(f.path);
  const g = await c.connect();
  assert.equal(g.version.qemu.major, 7);
  assert.equal(f.received[0]!.execute, 'qmp_capabilities');
  const events: QmpEvent[] = [];
  c.on('event', (e: QmpEvent) => events.push(e));
  const slow = c.execute('slow');
  await new Promise((r) => setTimeout(r, 20));
  const fast = c.execute('fast');
  assert.deepEqual(await Promise.all([slow, fast]), ['S', 'F']);
  assert.deepEqual(events, [{ event: 'BALLOON_CHANGE', data: { actual: 1048576 }, timestamp: 10.5 }]);
  c.close();
});

test('error replies become QmpCommandError with the class; arguments are sent', async (t) => {
  const f = await fakeQmp();
  t.after(() => cleanup(f));
  f.handle = (cmd) =>
    cmd.execute === 'balloon' ? { error: { class: 'DeviceNotActive', desc: 'No balloon device has been activated' }, id: cmd.id } : { return: {}, id: cmd.id };
  const c = new QmpClient(f.path);
  await c.connect();
  const err = await c.execute('balloon', { value: 1024 }).catch((e: unknown) => e);
  assert.ok(err instanceof QmpCommandError);
  assert.equal(err.errorClass, 'DeviceNotActive');
  assert.match(err.message, /QMP balloon: DeviceNotActive: No balloon device/);
  assert.deepEqual(f.received.at(-1)!.arguments, { value: 1024 });
  c.close();
});

test('garbage on the socket: reported as protocol-error, the connection keeps working', async (t) => {
  const f = await fakeQmp();
  t.after(() => cleanup(f));
  f.handle = (cmd) =>
    cmd.execute === 'x'
      ? `\u00ff\u00fe not json at all\r\n{"return": 42, "id": ${JSON.stringify(cmd.id)}}\r\n{"return": 1, "id": "nobody"}\r\n`
      : { return: {}, id: cmd.id };
  const c = new QmpClient(f.path);
  await c.connect();
  const errs: Error[] = [];
  c.on('protocol-error', (e: Error) => errs.push(e));
  assert.equal(await c.execute('x'), 42);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(errs.length, 2);
  assert.match(errs[0]!.message, /garbage on the socket, not JSON/);
  assert.match(errs[1]!.message, /unknown id "nobody"/);
  assert.equal(c.connected, true);
  c.close();
});

test('a peer that is not QMP: clear connect errors, no crash', async (t) => {
  const f = await fakeQmp();
  t.after(() => cleanup(f));
  f.greeting = 'SSH-2.0-OpenSSH_9.2\r\n';
  await assert.rejects(new QmpClient(f.path).connect(), /garbage on the socket, not JSON: "SSH-2.0/);
  f.greeting = '{"hello": 1}\r\n';
  await assert.rejects(new QmpClient(f.path).connect(), /expected the QMP greeting/);
  f.greeting = null; // silent
  await assert.rejects(new QmpClient(f.path, { connectTimeoutMs: 100 }).connect(), /no greeting within 100 ms/);
  await assert.rejects(
    new QmpClient(join(f.dir, 'nothing.sock')).connect(),
    (e: Error & { code?: string }) => /no such socket/.test(e.message) && e.code === 'ENOENT',
  );
});

test('server goes away mid-command: the command fails, close is reported; reconnect works', async (t) => {
  const f = await fakeQmp();
  t.after(() => cleanup(f));
  f.handle = (cmd, sock) => {
    if (cmd.execute === 'hang') {
      sock.destroy();
      return null;
    }
    return { return: 'ok', id: cmd.id };
  };
  const c = new QmpClient(f.path);
  await c.connect();
  const closed = once(c, 'close');
  await assert.rejects(c.execute('hang'), /connection closed while waiting for hang/);
  await closed;
  assert.equal(c.connected, false);
  await assert.rejects(c.execute('ping'), /not connected/);
  await c.connect();
  assert.equal(await c.execute('ping'), 'ok');
  c.close();
});

test('a command without reply times out and the client stays usable', async (t) => {
  const f = await fakeQmp();
  t.after(() => cleanup(f));
  f.handle = (cmd) => (cmd.execute === 'silent' ? null : { return: 'pong', id: cmd.id });
  const c = new QmpClient(f.path, { timeoutMs: 50 });
  await c.connect();
  await assert.rejects(c.execute('silent'), /no reply to silent within 50 ms/);
  assert.equal(await c.execute('ping'), 'pong');
  c.close();
});

test('hostile peers: deep nesting, endless JSON and an unterminated line neither crash nor balloon memory', async (t) => {
  const f = await fakeQmp();
  t.after(() => cleanup(f));
  const deep = `${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}\r\n`;
  // In the greeting: a clear connect error, no RangeError out of the data handler.
  f.greeting = deep;
  await assert.rejects(new QmpClient(f.path).connect(), /nested deeper than 32/);
  // After the greeting, as an unexpected message: reported, the connection keeps working.
  f.greeting = `${JSON.stringify({ QMP: { version: {}, capabilities: [] } })}\r\n`;
  f.handle = (cmd) => (cmd.execute === 'x' ? `${deep}{"return": 7, "id": ${JSON.stringify(cmd.id)}}\r\n` : { return: {}, id: cmd.id });
  const c = new QmpClient(f.path);
  await c.connect();
  const errs: Error[] = [];
  c.on('protocol-error', (e: Error) => errs.push(e));
  assert.equal(await c.execute('x'), 7);
  assert.ok(errs.some((e) => /nested deeper than 32/.test(e.message)));
  // An endless line is cut off at 1 MiB: the connection is dropped, the command fails.
  f.handle = (cmd, sock) => {
    if (cmd.execute !== 'y') return { return: {}, id: cmd.id };
    const chunk = '['.repeat(64 * 1024);
    for (let i = 0; i < 40; i++) sock.write(chunk); // 2.5 MiB without a newline
    return null;
  };
  await assert.rejects(c.execute('y'), /closed|without a line end|dropping/);
  assert.ok(
    errs.some((e) => /without a line end/.test(e.message)),
    errs.map((e) => e.message).join('\n'),
  );
  const reader = new QmpLineReader();
  assert.throws(() => reader.push('x'.repeat(1024 * 1024 + 1)), /without a line end/);
  c.close();
});
