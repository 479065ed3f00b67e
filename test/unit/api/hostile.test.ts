// Hostile clients on the same host, round two (issue 27): pipelined floods on every listener,
// a web page reaching MOM's XML-RPC on TCP, DNS rebinding against the tokenless loopback
// reads, and XML-RPC bodies big enough to block the loop. Each test failed before its fix.
// (The dashboard listener's read-only routes: api.test.ts; finding 6: mom-rpc.test.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CONNECTIONS_MAX } from '../../../src/api/http/limits.js';
import { MAX_BODY } from '../../../src/api/mom/server.js';
import { call, exchange, READ_TOKEN, rawRequest, startSimDaemon, type SimDaemon } from './fixture.js';

const MARK = '(with Guests guest (guest.SetVar "mark" 1))\n';

/** Counts the calls the handlers make into the port (health, host, guests): a request makes one or more. */
function countCalls(d: SimDaemon): () => number {
  let n = 0;
  const p = d.port as unknown as Record<string, (...a: unknown[]) => unknown>;
  for (const name of ['health', 'host', 'guests']) {
    const orig = p[name]!.bind(d.port);
    p[name] = (...a: unknown[]) => {
      n++;
      return orig(...a);
    };
  }
  return () => n;
}

const xmlCall = (method: string, params: string[] = []) =>
  `<?xml version='1.0'?>\n<methodCall>\n<methodName>${method}</methodName>\n<params>\n${params.map((p) => `<param><value><string>${p}</string></value></param>`).join('')}</params>\n</methodCall>\n`;

const PIPELINED = 1700;

test('finding 1: ~1,700 pipelined requests on one connection, never read, do not all run (every listener)', async () => {
  const d = await startSimDaemon({ policies: { '10_base': MARK }, tcp: true, dashboard: true, metrics: true });
  const m = await startSimDaemon({ policies: { '10_base': MARK }, momRpc: 'unix' });
  const t = await startSimDaemon({ policies: { '10_base': MARK }, momRpc: 'tcp' });
  try {
    const listeners: [string, SimDaemon, string, Buffer][] = [
      ['api unix socket', d, d.socket, rawRequest('GET', '/api/v1/health', { headers: { host: 'localhost' } })],
      ['api TCP', d, d.tcp!, rawRequest('GET', '/api/v1/health', { headers: { host: d.tcp!, authorization: `Bearer ${READ_TOKEN}` } })],
      ['dashboard', d, d.dashboard!, rawRequest('GET', '/metrics', { headers: { host: d.dashboard! } })],
      ['metrics', d, d.metrics!, rawRequest('GET', '/metrics', { headers: { host: d.metrics! } })],
      [
        'mom unix socket',
        m,
        m.mom!,
        rawRequest('POST', '/RPC2', { body: xmlCall('getActiveGuests'), headers: { host: 'localhost', 'content-type': 'text/xml' } }),
      ],
      ['mom TCP', t, t.mom!, rawRequest('POST', '/RPC2', { body: xmlCall('getActiveGuests'), headers: { host: t.mom!, 'content-type': 'text/xml' } })],
    ];
    const counters = new Map([d, m, t].map((x) => [x, countCalls(x)]));
    for (const [what, daemon, at, one] of listeners) {
      // Within a cap, a pipelining client is served, in order.
      const few = await exchange(at, Array(4).fill(one), Array(4).fill(one.toString('latin1').split(' ')[0]));
      assert.deepEqual(
        few.replies.map((r) => r.status),
        [200, 200, 200, 200],
        `${what}: four pipelined requests are answered`,
      );
      // A flood that never reads: the server runs a few and closes the connection.
      const before = counters.get(daemon)!();
      let ran = 0;
      const flood = await exchange(at, Array(PIPELINED).fill(one), [], {
        read: false,
        ms: 1500,
        paused: () => {
          ran = counters.get(daemon)!() - before;
        },
      });
      // A few run (each as soon as the previous answer is with the kernel), then the queue is full.
      assert.ok(ran <= 100, `${what}: ${ran} of ${PIPELINED} pipelined requests ran`);
      assert.ok(flood.closed, `${what}: the flooding connection is closed`);
    }
    // Still answering.
    assert.equal((await call(d.socket, 'GET', '/api/v1/health')).status, 200);
  } finally {
    await Promise.all([d.stop(), m.stop(), t.stop()]);
  }
});

test('finding 1, in total: a listener holds at most CONNECTIONS_MAX connections; past them it refuses, and serves again when they go', async () => {
  const d = await startSimDaemon({ policies: { '10_base': MARK }, dashboard: true });
  const sockets: Socket[] = [];
  try {
    const at = d.dashboard!;
    const port = Number(at.split(':')[1]);
    const extra = 10;
    const refused = await Promise.all(
      Array.from(
        { length: CONNECTIONS_MAX + extra },
        () =>
          new Promise<boolean>((resolve) => {
            const s = connect(port, '127.0.0.1');
            sockets.push(s);
            // Closed by the server at once, or still open after a second.
            const t = setTimeout(() => resolve(false), 1000);
            s.on('close', () => {
              clearTimeout(t);
              resolve(true);
            });
            s.on('error', () => {});
          }),
      ),
    );
    assert.equal(refused.filter(Boolean).length, extra, 'the connections past the limit are closed');
    for (const s of sockets) s.destroy();
    // Node counts a connection gone when its close is seen: give it a moment.
    for (let i = 0; i < 50 && (await call(at, 'GET', '/api/v1/health').catch(() => ({ status: 0 }))).status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal((await call(at, 'GET', '/api/v1/health')).status, 200);
  } finally {
    for (const s of sockets) s.destroy();
    await d.stop();
  }
});

test('finding 2: a web page cannot reach a verb of MOM on TCP (content type, Origin, Sec-Fetch-*, Host); Python still can', async () => {
  const d = await startSimDaemon({ policies: { '10_base': MARK }, momRpc: 'tcp' });
  try {
    const at = d.mom!;
    const body = xmlCall('setNamedPolicy', ['20_evil', '(defvar evil 1)']);
    const browserish: [string, Record<string, string>][] = [
      // What fetch(..., {mode: 'no-cors', method: 'POST', body}) sends: text/plain, Origin, Sec-Fetch-*.
      [
        'no-cors fetch',
        {
          host: at,
          'content-type': 'text/plain;charset=UTF-8',
          origin: 'http://evil.example',
          'sec-fetch-mode': 'no-cors',
          'sec-fetch-site': 'cross-site',
        },
      ],
      ['text/plain alone', { host: at, 'content-type': 'text/plain' }],
      ['a form', { host: at, 'content-type': 'application/x-www-form-urlencoded' }],
      ['no content type', { host: at }],
      ['text/xml with an Origin', { host: at, 'content-type': 'text/xml', origin: 'null' }],
      ['text/xml with Sec-Fetch-Site', { host: at, 'content-type': 'text/xml', 'sec-fetch-site': 'same-origin' }],
      ['text/xml with Sec-Fetch-Mode', { host: at, 'content-type': 'text/xml', 'sec-fetch-mode': 'cors' }],
      ['DNS rebinding', { host: `evil.example:${at.split(':')[1]}`, 'content-type': 'text/xml' }],
    ];
    for (const [what, headers] of browserish) {
      const r = await call(at, 'POST', '/RPC2', { body, headers });
      assert.ok(r.status >= 400 && r.status < 500, `${what}: ${r.status} ${r.body.slice(0, 200)}`);
      assert.doesNotMatch(r.body, /methodResponse/, what);
    }
    // A CORS preflight is not answered with a yes.
    const pre = await call(at, 'OPTIONS', '/RPC2', {
      headers: { host: at, origin: 'http://evil.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
    });
    assert.ok(pre.status >= 400, `preflight: ${pre.status}`);
    assert.equal(pre.headers['access-control-allow-origin'], undefined);
    assert.deepEqual(
      d.port.policies().map((p) => p.name),
      ['10_base'],
      'no verb ran',
    );

    // vdsm's client: Python's xmlrpc.client over TCP (text/xml, no Origin, Host 127.0.0.1:PORT or localhost:PORT).
    const script = join(d.dir, 'tcp-client.py');
    writeFileSync(
      script,
      `import json, sys, xmlrpc.client
out = []
for url in sys.argv[1:]:
    p = xmlrpc.client.ServerProxy(url)
    out.append([p.ping(), p.setNamedPolicy('01-parameters', '(defvar x 1)\\n'), sorted(p.getNamedPolicies().keys()), sorted(p.getStatistics().keys())])
print(json.dumps(out))
`,
    );
    const child = spawn('python3', [script, `http://${at}/RPC2`, `http://localhost:${at.split(':')[1]}/RPC2`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c;
    });
    child.stderr.on('data', (c: Buffer) => {
      err += c;
    });
    assert.equal(await new Promise((r) => child.on('close', r)), 0, err);
    for (const run of JSON.parse(out) as unknown[][]) assert.deepEqual(run, [true, true, ['01-parameters', '10_base'], ['guests', 'host']]);
  } finally {
    await d.stop();
  }
});

test('finding 4: a tokenless loopback read needs a loopback Host (DNS rebinding); configured names and tokens still read', async () => {
  const d = await startSimDaemon({
    policies: { '10_base': MARK },
    tcp: true,
    dashboard: true,
    metrics: true,
    tweak: (c) => {
      // api.allowed_hosts (proposed key): read defensively by serve.ts until the schema has it.
      (c.api as Record<string, unknown>).allowed_hosts = ['ballast.lan'];
    },
  });
  try {
    for (const [what, at, path] of [
      ['dashboard', d.dashboard!, '/api/v1/policies/10_base'],
      ['dashboard', d.dashboard!, '/api/v1/guests'],
      ['dashboard', d.dashboard!, '/metrics'],
      ['dashboard', d.dashboard!, '/'],
      ['metrics', d.metrics!, '/metrics'],
    ] as const) {
      const port = at.split(':')[1];
      for (const host of [`evil.example:${port}`, 'evil.example', `127.0.0.1.evil.example:${port}`, `localhost.evil.example:${port}`, `[::2]:${port}`]) {
        const r = await call(at, 'GET', path, { headers: { host } });
        assert.equal(r.status, 403, `${what} ${path} Host "${host}": ${r.status}`);
        assert.doesNotMatch(r.body, /mark|ballast_|<html/i, 'nothing is read');
      }
      // No Host at all (HTTP/1.0; no browser sends that): refused too.
      const bare = await exchange(at, [Buffer.from(`GET ${path} HTTP/1.0\r\n\r\n`)], ['GET']);
      assert.equal(bare.replies[0]?.status, 403, `${what} ${path} without a Host header`);
      for (const host of [
        `127.0.0.1:${port}`,
        `localhost:${port}`,
        'localhost',
        `[::1]:${port}`,
        `127.1.2.3:${port}`,
        `LOCALHOST:${port}`,
        `ballast.lan:${port}`,
      ]) {
        assert.equal((await call(at, 'GET', path, { headers: { host } })).status, 200, `${what} ${path} Host "${host}"`);
      }
      // A token is not something a browser on a rebound name has: with one, any Host reads.
      assert.equal(
        (await call(at, 'GET', path, { headers: { host: `evil.example:${port}`, authorization: `Bearer ${READ_TOKEN}` } })).status,
        200,
        `${what} ${path} with the read token`,
      );
    }
  } finally {
    await d.stop();
  }
});

/** A setNamedPolicy call of about `bytes` whose decoding is as slow as it gets per byte (character references). */
const heavyCall = (bytes: number) => xmlCall('setNamedPolicy', ['20_heavy', `;${'&#x41;'.repeat(Math.floor(bytes / 6))}`]);

test('finding 5: MOM bodies over 64 KiB are refused unread; decodes run one per turn of the event loop', async () => {
  const d = await startSimDaemon({ policies: { '10_base': MARK }, momRpc: 'unix' });
  try {
    const sock = d.mom!;
    const post = (body: string) => call(sock, 'POST', '/RPC2', { body, headers: { 'content-type': 'text/xml' } });
    assert.equal(MAX_BODY, 64 * 1024);
    const big = await post(heavyCall(MAX_BODY + 1024));
    assert.equal(big.status, 413, 'a body over 64 KiB');
    // vdsm's sizes pass (a few KiB), and so does a big but bounded policy.
    assert.match((await post(xmlCall('setNamedPolicy', ['01-parameters', `# ${'x'.repeat(MAX_BODY - 1024)}\n(defvar y 2)\n`]))).body, /<boolean>1<\/boolean>/);

    // Eight heavy calls at once: between two decodes the loop turns (a health request, a timer
    // and every other listener get their turn), so no two verbs run in the same turn.
    let turn = 0;
    let spinning = true;
    const spin = () => {
      turn++;
      if (spinning) setImmediate(spin);
    };
    spin();
    const turns: number[] = [];
    const p = d.port as unknown as { setPolicy: (n: string, t: string) => unknown };
    const orig = p.setPolicy.bind(d.port);
    p.setPolicy = (n: string, t: string) => {
      turns.push(turn);
      return orig(n, `# ${t.length}\n`);
    };
    const answers = await Promise.all(Array.from({ length: 8 }, () => post(heavyCall(MAX_BODY - 1024))));
    spinning = false;
    for (const a of answers) assert.equal(a.status, 200, a.body.slice(0, 200));
    assert.equal(turns.length, 8);
    assert.equal(new Set(turns).size, 8, `turns of the event loop at each decode: ${turns.join(', ')}`);
  } finally {
    await d.stop();
  }
});
