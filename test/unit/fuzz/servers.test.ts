// Random requests against a running daemon's JSON API and MOM XML-RPC (random methods, paths,
// content types and bodies, including wrong-type and malformed ones): every answer is a 2xx or
// 4xx, never a 5xx or a dropped connection, and the daemon still answers and still decides
// with the policy it had unless a request validly changed it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import fc from 'fast-check';
import { call, startSimDaemon } from '../api/fixture.js';

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
