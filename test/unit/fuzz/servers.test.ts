// Random requests against a running daemon's JSON API and MOM XML-RPC (random methods, paths,
// content types and bodies, including wrong-type and malformed ones): every answer is a 2xx or
// 4xx, never a 5xx or a dropped connection, and the daemon still answers and still decides
// with the policy it had unless a request validly changed it. Then the same requests
// pipelined on concurrent connections, on every listener (the API's socket and TCP address,
// the dashboard's, /metrics', MOM's socket and TCP port): answers come in order, a connection
// is closed only for pipelining past the limit (or after an answer saying so), never a 5xx.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import fc from 'fast-check';
import { call, exchange, rawRequest, READ_TOKEN, startSimDaemon, WRITE_TOKEN } from '../api/fixture.js';
import { PIPELINE_MAX } from '../../../src/api/http/limits.js';

const RUNS = Math.max(50, Math.floor(Number(process.env.BALLAST_FUZZ_RUNS ?? 1000) / 5));

const method = fc.constantFrom('GET', 'PUT', 'POST', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS');
const path = fc.oneof(
  fc.constantFrom(
    '/api/v1/health',
    '/api/v1/host',
    '/api/v1/guests',
    '/api/v1/guests/web1',
    '/api/v1/policies',
    '/api/v1/policies/x',
    '/api/v1/pause',
    '/api/v1/resume',
    '/api/v1/log-level',
    '/api/v1/events?since=abc',
    '/api/v1/events?since=-5',
    '/metrics',
    '/',
    '/RPC2',
    '/api/v1/guests/%E0%A4%A',
    '/api/v1/policies/..%2F..%2Fetc',
  ),
  fc.string({ maxLength: 40 }).map((s) => `/api/v1/${encodeURIComponent(s)}`),
);
const contentType = fc.constantFrom('application/json', 'text/plain', 'text/xml', 'application/x-www-form-urlencoded', 'application/json; charset=utf-16', '');
const body = fc.oneof(
  fc.string({ maxLength: 200 }),
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
  fc.constantFrom(
    '{"level":"debug"}',
    '{"level":7}',
    '{"reason":[1]}',
    '(with Guests g (g.Control "balloon_target" 1))',
    '(((',
    '{"text": null}',
    '<methodCall>',
    'null',
  ),
);

test('JSON API: random requests get 2xx/4xx, never 5xx; the daemon keeps answering', async () => {
  const d = await startSimDaemon({ policies: { '10_base': '(Host.SetVar "base" 1)\n' } });
  try {
    await fc.assert(
      fc.asyncProperty(method, path, contentType, body, async (m, p, ct, b) => {
        const withBody = m !== 'GET' && m !== 'HEAD';
        const r = await call(d.socket, m, p, withBody ? { body: b, headers: ct ? { 'content-type': ct } : {} } : {});
        assert.ok(r.status >= 200 && r.status < 500, `${m} ${p} (${ct}) ${JSON.stringify(b).slice(0, 80)} -> ${r.status} ${r.body.slice(0, 200)}`);
        if (r.status >= 400 && m !== 'HEAD') assert.equal(typeof r.json?.error, 'string', 'errors say what is wrong');
      }),
      { numRuns: RUNS },
    );
    const h = await call(d.socket, 'GET', '/api/v1/health');
    assert.equal(h.status, 200);
  } finally {
    await d.stop();
  }
});

test('MOM XML-RPC: random bodies and verbs with wrong types get an XML-RPC answer or a 4xx, never 5xx', async () => {
  const d = await startSimDaemon({ momRpc: true, policies: { '10_base': '(Host.SetVar "base" 1)\n' } });
  const sock = join(d.dir, 'mom.sock');
  const verb = fc.constantFrom(
    'ping',
    'getStatistics',
    'getActiveGuests',
    'getPolicy',
    'getNamedPolicies',
    'setVerbosity',
    'setNamedPolicy',
    'setPolicy',
    'resetPolicies',
    'system.listMethods',
    'nope',
  );
  const param = fc.oneof(
    fc.string({ maxLength: 30 }).map((s) => `<value><string>${s.replace(/[<&]/g, '')}</string></value>`),
    fc.integer().map((n) => `<value><int>${n}</int></value>`),
    fc.constant('<value><array><data/></array></value>'),
    fc.constant('<value><struct/></value>'),
    fc.constant('<value><i8>99999999999999999999</i8></value>'),
    fc.constant('<value><double>nan</double></value>'),
  );
  const xmlCall = fc
    .tuple(verb, fc.array(param, { maxLength: 3 }))
    .map(
      ([v, ps]) =>
        `<?xml version="1.0"?><methodCall><methodName>${v}</methodName><params>${ps.map((p) => `<param>${p}</param>`).join('')}</params></methodCall>`,
    );
  try {
    await fc.assert(
      fc.asyncProperty(fc.oneof(xmlCall, body), fc.constantFrom('text/xml', 'application/json', ''), async (b, ct) => {
        const r = await call(sock, 'POST', '/RPC2', { body: b, headers: ct ? { 'content-type': ct } : {} });
        assert.ok(r.status >= 200 && r.status < 500, `${b.slice(0, 120)} -> ${r.status} ${r.body.slice(0, 200)}`);
        if (r.status === 200) assert.match(r.body, /<methodResponse>/);
      }),
      { numRuns: RUNS },
    );
    const ping = await call(sock, 'POST', '/RPC2', {
      body: '<?xml version="1.0"?><methodCall><methodName>ping</methodName><params/></methodCall>',
      headers: { 'content-type': 'text/xml' },
    });
    assert.match(ping.body, /<boolean>1<\/boolean>/);
  } finally {
    await d.stop();
  }
});

/** One request of the pipelined test: its bytes, its method, and the marker its answer must carry (if any). */
interface Req {
  bytes: Buffer;
  method: string;
  marker?: string;
}

const verbs = fc.constantFrom('ping', 'getStatistics', 'getActiveGuests', 'getPolicy', 'getNamedPolicies', 'setVerbosity', 'system.listMethods', 'nope');

test('every listener: pipelined requests on concurrent connections are answered in order, never 5xx; a flood closes only its own connection', async () => {
  const d = await startSimDaemon({ policies: { '10_base': '(Host.SetVar "base" 1)\n' }, tcp: true, dashboard: true, metrics: true });
  const mu = await startSimDaemon({ momRpc: 'unix' });
  const mt = await startSimDaemon({ momRpc: 'tcp' });
  const auth = fc.constantFrom<Record<string, string>>(
    {},
    { authorization: `Bearer ${READ_TOKEN}` },
    { authorization: `Bearer ${WRITE_TOKEN}` },
    { authorization: 'Bearer nope-nope-nope-nope' },
  );
  const host = (at: string) => fc.constantFrom(at, `localhost:${at.split(':')[1]}`, 'evil.example', '[::1]');
  // The HTTP listeners: random requests (writes included), and markers whose answer names them.
  const http = (at: string, tcp: boolean) =>
    fc.oneof(
      fc
        .tuple(
          fc.oneof({ weight: 2, arbitrary: fc.constant('GET') }, { weight: 3, arbitrary: method }),
          path,
          contentType,
          body,
          tcp ? auth : fc.constant({}),
          tcp ? host(at) : fc.constant('localhost'),
        )
        .map(
          ([m, p, ct, b, a, h]): Req => ({
            bytes: rawRequest(m, p, {
              body: m === 'GET' || m === 'HEAD' ? undefined : b,
              headers: { host: h, ...a, ...(ct && m !== 'GET' && m !== 'HEAD' ? { 'content-type': ct } : {}) },
            }),
            method: m,
          }),
        ),
      fc.nat(1e6).map(
        (n): Req => ({
          bytes: rawRequest('GET', `/api/v1/guests/mk${n}`, { headers: { host: tcp ? at : 'localhost', authorization: `Bearer ${READ_TOKEN}` } }),
          method: 'GET',
          marker: `mk${n}`,
        }),
      ),
    );
  const mom = (at: string, tcp: boolean) =>
    fc.oneof(
      fc
        .tuple(
          fc.oneof(
            verbs.map((v) => `<?xml version="1.0"?><methodCall><methodName>${v}</methodName><params/></methodCall>`),
            body,
          ),
          fc.constantFrom<Record<string, string>>(
            { 'content-type': 'text/xml' },
            { 'content-type': 'text/plain' },
            { 'content-type': 'text/xml', origin: 'http://evil.example' },
            { 'content-type': 'text/xml', 'sec-fetch-mode': 'no-cors' },
          ),
        )
        .map(([b, h]): Req => ({ bytes: rawRequest('POST', '/RPC2', { body: b, headers: { host: tcp ? at : 'localhost', ...h } }), method: 'POST' })),
      fc.nat(1e6).map(
        (n): Req => ({
          bytes: rawRequest('POST', '/RPC2', {
            body: `<?xml version="1.0"?><methodCall><methodName>mk${n}</methodName><params/></methodCall>`,
            headers: { host: tcp ? at : 'localhost', 'content-type': 'text/xml' },
          }),
          method: 'POST',
          marker: `mk${n}`,
        }),
      ),
    );
  const listeners: [string, string, fc.Arbitrary<Req>][] = [
    ['api unix socket', d.socket, http(d.socket, false)],
    ['api TCP', d.tcp!, http(d.tcp!, true)],
    ['dashboard', d.dashboard!, http(d.dashboard!, true)],
    ['metrics', d.metrics!, http(d.metrics!, true)],
    ['mom unix socket', mu.mom!, mom(mu.mom!, false)],
    ['mom TCP', mt.mom!, mom(mt.mom!, true)],
  ];
  try {
    for (const [what, at, req] of listeners) {
      await fc.assert(
        fc.asyncProperty(fc.array(fc.array(req, { minLength: 1, maxLength: PIPELINE_MAX + 6 }), { minLength: 1, maxLength: 6 }), async (connections) => {
          const results = await Promise.all(
            connections.map((rs) =>
              exchange(
                at,
                rs.map((r) => r.bytes),
                rs.map((r) => r.method),
                { ms: 10_000 },
              ),
            ),
          );
          results.forEach(({ replies, closed }, c) => {
            const rs = connections[c]!;
            const label = `${what}, connection ${c}: ${rs.map((r) => r.bytes.toString('latin1').split('\r\n')[0]).join(' | ')}`;
            let saidClose = false;
            replies.forEach((r, i) => {
              assert.ok(r.status >= 200 && r.status < 500, `${label}: answer ${i} is ${r.status} ${r.body.toString().slice(0, 200)}`);
              const marker = rs[i]!.marker;
              if (marker)
                assert.ok(r.body.toString().includes(marker), `${label}: answer ${i} is not the one to ${marker}: ${r.body.toString().slice(0, 200)}`);
              if (/close/i.test(r.headers.connection ?? '')) saidClose = true;
            });
            // Up to the limit every request is answered, unless an answer said it closes.
            if (!saidClose && rs.length <= PIPELINE_MAX + 1)
              assert.equal(replies.length, rs.length, `${label}: ${replies.length} answers${closed ? ', closed' : ''}`);
            if (replies.length < rs.length) assert.ok(closed, `${label}: unanswered but open`);
          });
        }),
        { numRuns: Math.max(20, Math.floor(RUNS / 5)) },
      );
    }
    assert.equal((await call(d.socket, 'GET', '/api/v1/health')).status, 200);
    assert.equal((await call(d.dashboard!, 'GET', '/api/v1/health')).status, 200);
  } finally {
    await Promise.all([d.stop(), mu.stop(), mt.stop()]);
  }
});
