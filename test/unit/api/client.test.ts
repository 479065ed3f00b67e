// The CLI's API client against whatever may answer on the socket: a server that cuts a body
// short, trickles bytes, streams without end, or names guests with terminal escapes. Each
// must end in an error with a message (or escaped text), never a hang, a heap or a silent exit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { apiCall, ApiError } from '../../../src/api/client.js';
import { renderView, statusLine } from '../../../src/cli/demo.js';
import { printable, printableText } from '../../../src/printable.js';

/** Any control character but the newline (C0, DEL, C1) or a bidi override. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: these are the characters meant
const CONTROL = /[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]/;
const HOSTILE = 'esc\x1b]0;PWNED\x07\x1b[2J\x9b31m\x7f\u202evm';

interface Raw {
  path: string;
  server: Server;
  /** Bytes the server managed to write before the client went away. */
  written: () => number;
  /** Resolves when the client closed its side. */
  clientGone: Promise<void>;
}

/** A unix-socket server that answers every connection with `serve` (raw bytes, no HTTP library). */
async function rawServer(t: { after: (fn: () => unknown) => void }, serve: (sock: Socket, count: (n: number) => void) => void): Promise<Raw> {
  const dir = mkdtempSync(join(tmpdir(), 'ballast-client-'));
  const path = join(dir, 'api.sock');
  let written = 0;
  let gone!: () => void;
  const clientGone = new Promise<void>((r) => {
    gone = r;
  });
  const timers: NodeJS.Timeout[] = [];
  const server = createServer((sock) => {
    sock.on('error', () => {});
    sock.on('close', () => gone());
    sock.once('data', () => serve(sock, (n) => (written += n)));
  });
  await new Promise<void>((r) => server.listen(path, () => r()));
  t.after(() => {
    for (const x of timers) clearInterval(x);
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { path, server, written: () => written, clientGone };
}

test('a body cut short is an error saying so', async (t) => {
  const s = await rawServer(t, (sock) => {
    sock.end('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"status":');
  });
  await assert.rejects(apiCall(s.path, 'GET', 'health'), (e: Error) => e instanceof ApiError && /cut short after 10 bytes/.test(e.message));
  const chunked = await rawServer(t, (sock) => {
    sock.end('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"a":\r\n');
  });
  await assert.rejects(apiCall(chunked.path, 'GET', 'health'), /cut short|broke off/);
});

test('a server trickling bytes meets the overall deadline, not only the idle timeout', async (t) => {
  const timers: NodeJS.Timeout[] = [];
  t.after(() => timers.forEach(clearInterval));
  const s = await rawServer(t, (sock) => {
    sock.write('HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n');
    timers.push(setInterval(() => sock.writable && sock.write(' '), 20));
  });
  await assert.rejects(apiCall(s.path, 'GET', 'health', undefined, undefined, { deadlineMs: 300, idleMs: 200 }), /no complete answer within 0\.3 s/);
  await s.clientGone;
});

test('a server that streams without end is cut off at the size cap; a declared size over it is refused at once', async (t) => {
  const chunk = Buffer.alloc(65536, 'x');
  const s = await rawServer(t, (sock, count) => {
    sock.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n');
    const pump = () => {
      while (sock.writable && sock.write(`10000\r\n${chunk}\r\n`)) count(chunk.length);
    };
    sock.on('drain', pump);
    pump();
  });
  await assert.rejects(apiCall(s.path, 'GET', 'guests', undefined, undefined, { maxBytes: 1 << 20 }), /passed 1048576 bytes and was cut off/);
  await s.clientGone;
  assert.ok(s.written() < 8 << 20, `the server wrote ${s.written()} bytes before the client went away`);
  const big = await rawServer(t, (sock) => {
    sock.write('HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n');
  });
  await assert.rejects(apiCall(big.path, 'GET', 'guests', undefined, undefined, { maxBytes: 1 << 20 }), /would be 99999999999 bytes/);
});

test("a daemon's error text with terminal escapes is shown escaped", async (t) => {
  const body = JSON.stringify({ error: HOSTILE, detail: ['a\x1b[1Ab'] });
  const s = await rawServer(t, (sock) => {
    sock.end(`HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  });
  await assert.rejects(apiCall(s.path, 'GET', 'health'), (e: Error) => {
    assert.doesNotMatch(e.message, CONTROL);
    assert.match(e.message, /esc\\x1b\]0;PWNED\\x07/);
    return true;
  });
});

function ballast(args: string[], input = ''): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => {
    out += c;
  });
  child.stderr.on('data', (c: Buffer) => {
    err += c;
  });
  child.stdin.end(input);
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, out, err })));
}

test('ballast policy set against a server that cuts the body short: a message and exit 2, not a silent exit', async (t) => {
  const s = await rawServer(t, (sock) => {
    sock.end('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{"name":');
  });
  const dir = mkdtempSync(join(tmpdir(), 'ballast-client-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'p.policy'), '(defvar x 1)\n');
  const r = await ballast(['policy', 'set', 'p', join(dir, 'p.policy'), '--api', s.path]);
  assert.equal(r.code, 2, r.err);
  assert.match(r.err, /ballast policy: .*api\.sock: the answer \(HTTP 200\) was cut short after 8 bytes/);
});

test('ballast status prints guest names, reasons and problems with their control characters escaped', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ballast-client-status-'));
  const path = join(dir, 'api.sock');
  const answers: Record<string, unknown> = {
    health: {
      status: 'ok',
      version: '1',
      hypervisor: 'qmp',
      startedAt: 0,
      time: 0,
      cycle: 3,
      paused: false,
      policyLoaded: true,
      calm: false,
      problems: [`p${HOSTILE}`],
    },
    host: { stats: { mem_free: 1024, mem_available: 2048 } },
    guests: [{ id: 'g', name: HOSTILE, props: {}, stats: { balloon_cur: 1024, balloon_max: 2048, mem_unused: 512 }, stale: `s${HOSTILE}` }],
    actions: [{ cycle: 1, time: 0, entity: HOSTILE, control: 'balloon_target', from: 1, to: 2, result: 'applied', reasons: [HOSTILE] }],
    alerts: [{ kind: 'guest_leak', severity: 'warning', entity: HOSTILE, message: HOSTILE }],
  };
  const server = createHttpServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(answers[req.url!.replace('/api/v1/', '')]));
  });
  await new Promise<void>((r) => server.listen(path, () => r()));
  t.after(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const r = await ballast(['status', '--api', path]);
  assert.equal(r.code, 0, r.err);
  assert.doesNotMatch(r.out, CONTROL, 'no control character but the newlines');
  assert.equal(r.out.split('esc\\x1b]0;PWNED\\x07\\x1b[2J\\x9b31m\\x7f\\u202evm').length - 1, 6, r.out);
});

test("the demo's live view and status lines escape guest names", () => {
  const snap = {
    time: 5,
    cycle: 2,
    policyLoaded: true,
    host: { stats: {} },
    guests: [{ id: 'g', name: HOSTILE, props: { workload: 'w\x1b[1A' }, stats: { balloon_cur: 1024, balloon_max: 2048, mem_unused: 0 }, stale: 'x\x07' }],
    counters: { actionsApplied: 0, vetoes: 0, rollbacks: 0, policyErrors: 0, controllerErrors: 0, driverErrors: 0 },
    recent: [{ cycle: 1, time: 1, entity: HOSTILE, control: 'balloon_target', from: 2048, to: 1024, result: 'applied', reasons: ['r\x1b'] }],
  } as unknown as Parameters<typeof renderView>[0];
  for (const text of [renderView(snap, 'demo', 200, [{ kind: 'k', severity: 'warning', entity: HOSTILE, message: HOSTILE } as never]), statusLine(snap)]) {
    assert.doesNotMatch(text, CONTROL);
    assert.match(text, /esc\\x1b\]0;PWNED/);
  }
});

test('printable: C0, DEL, C1 and bidi overrides escaped; printableText keeps newlines and tabs', () => {
  assert.equal(printable('a\x00b\nc\td\x7fe\x85f\u202eg\u2069h ü'), 'a\\x00b\\nc\\td\\x7fe\\x85f\\u202eg\\u2069h ü');
  assert.equal(printableText('(defvar x 1)\n\t\x1b[2J'), '(defvar x 1)\n\t\\x1b[2J');
});
