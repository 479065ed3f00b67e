// The JSON API against a real daemon on the simulated host, over its unix socket and over TCP.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { API_ROUTES } from '../../../src/api/http/routes.js';
import { call, READ_TOKEN, startSimDaemon, WRITE_TOKEN } from './fixture.js';

const MARK = (v: number) => `(with Guests guest (guest.SetVar "mark" ${v}))\n`;
// Alternates every guest between 90% and 100% of its size, so every cycle has balloon work.
const FLIP = `(with Guests guest (guest.SetVar "flip" (if (== (guest.GetVar "flip") 1) 0 1)))
(with Guests guest (guest.Control "balloon_target" (if (== (guest.GetVar "flip") 1) (* 0.9 guest.balloon_max) guest.balloon_max)))
`;

const marks = (guests: { vars: Record<string, unknown> }[]) => [...new Set(guests.map((g) => g.vars.mark))];

test('API over the unix socket: every read route, named policies, pause/resume, log level', async () => {
  const d = await startSimDaemon({ policies: { '10_base': MARK(1) } });
  try {
    assert.equal(statSync(d.socket).mode & 0o777, 0o600, 'the socket is 0600');
    await d.cycles(2);
    const s = d.socket;

    const health = await call(s, 'GET', '/api/v1/health');
    assert.equal(health.status, 200);
    assert.equal(health.json.status, 'ok');
    assert.equal(health.json.paused, false);
    assert.ok(health.json.cycle >= 2);
    assert.match(health.json.hypervisor, /^sim/);
    assert.equal(health.json.calm, false, 'a simulated host always steps every interval');

    const host = await call(s, 'GET', '/api/v1/host');
    assert.equal(host.json.stats.mem_available, d.port.host().stats.mem_available);
    assert.ok(host.json.history.length >= 2, 'host history');

    const guests = await call(s, 'GET', '/api/v1/guests');
    assert.ok(guests.json.length >= 5);
    assert.deepEqual(marks(guests.json), [1]);
    const one = await call(s, 'GET', `/api/v1/guests/${guests.json[0].name}`);
    assert.equal(one.json.name, guests.json[0].name);
    assert.ok(one.json.history.length >= 2 && typeof one.json.history[0].time === 'number', 'guest history with times');
    assert.equal((await call(s, 'GET', '/api/v1/guests/nope')).status, 404);

    for (const r of ['actions', 'alerts', 'counters']) assert.equal((await call(s, 'GET', `/api/v1/${r}`)).status, 200, r);
    const events = await call(s, 'GET', '/api/v1/events');
    assert.ok(events.json.some((e: { event: string }) => e.event === 'policy_loaded'));
    const last = events.json.at(-1).seq;
    assert.deepEqual(
      (await call(s, 'GET', `/api/v1/events?since=${last}`)).json.filter((e: { seq: number }) => e.seq <= last),
      [],
    );
    assert.equal((await call(s, 'GET', '/api/v1/events?since=-1')).status, 400);

    const policies = await call(s, 'GET', '/api/v1/policies');
    assert.deepEqual(
      policies.json.map((p: { name: string; source: string }) => [p.name, p.source]),
      [['10_base', 'file']],
    );
    assert.equal((await call(s, 'GET', '/api/v1/policies/10_base')).json.text, MARK(1));

    // A bad policy: 400 with FILE:LINE:COL; nothing changes, the next cycle decides as before.
    const bad = await call(s, 'PUT', '/api/v1/policies/20_x', {
      body: '(with Guests guest\n  (guest.SetVar "mark" (+ 1)',
      headers: { 'content-type': 'text/plain' },
    });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error, 'policy refused');
    assert.match(bad.json.detail, /^api:20_x:\d+:\d+: /);
    assert.equal((await call(s, 'GET', '/api/v1/policies')).json.length, 1);
    await d.cycles(1);
    assert.deepEqual(marks((await call(s, 'GET', '/api/v1/guests')).json), [1], 'old policy still decides');

    // A good one: concatenated after 10_base (name order), so it decides the next cycle.
    const good = await call(s, 'PUT', '/api/v1/policies/20_x', { body: MARK(2), headers: { 'content-type': 'text/plain' } });
    assert.equal(good.status, 200);
    assert.equal(good.json.source, 'api');
    await d.cycles(1);
    assert.deepEqual(marks((await call(s, 'GET', '/api/v1/guests')).json), [2]);
    assert.deepEqual(
      (await call(s, 'GET', '/api/v1/policies')).json.map((p: { name: string }) => p.name),
      ['10_base', '20_x'],
    );

    // Files are not deleted through the API; run-time policies are.
    assert.equal((await call(s, 'DELETE', '/api/v1/policies/10_base')).status, 409);
    assert.equal((await call(s, 'DELETE', '/api/v1/policies/20_x')).status, 204);
    assert.equal((await call(s, 'DELETE', '/api/v1/policies/20_x')).status, 404);
    await d.cycles(1);
    assert.deepEqual(marks((await call(s, 'GET', '/api/v1/guests')).json), [1]);

    // Names never are paths.
    for (const name of ['..', '.hidden', 'a%2Fb', 'x'.repeat(101)]) {
      assert.equal((await call(s, 'PUT', `/api/v1/policies/${name}`, { body: MARK(3) })).status, name === '..' ? 404 : 400, name);
    }

    // Pause: the policy still runs and asks, nothing is applied; resume acts again.
    assert.equal((await call(s, 'PUT', '/api/v1/policies/30_flip', { body: FLIP, headers: { 'content-type': 'text/plain' } })).status, 200);
    await d.cycles(2);
    const paused = await call(s, 'POST', '/api/v1/pause', { body: JSON.stringify({ reason: 'maintenance' }), headers: { 'content-type': 'application/json' } });
    assert.equal(paused.status, 200);
    assert.equal(paused.json.paused, true);
    const before = d.port.counters().actionsApplied;
    const cycleAtPause = d.port.health().cycle;
    await d.cycles(3);
    assert.equal(d.port.counters().actionsApplied, before, 'no action applied while paused');
    const during = d.port.actions().filter((a) => a.cycle > cycleAtPause);
    assert.ok(
      during.length > 0 && during.every((a) => a.result === 'veto' && a.reasons.some((r) => r.includes('paused: maintenance'))),
      JSON.stringify(during.slice(0, 3)),
    );
    assert.equal((await call(s, 'POST', '/api/v1/resume')).json.paused, false);
    await d.cycles(2);
    assert.ok(d.port.counters().actionsApplied > before, 'acts again after resume');

    // Log level at run time.
    assert.equal((await call(s, 'PUT', '/api/v1/log-level', { body: '{"level":"warn"}', headers: { 'content-type': 'application/json' } })).status, 200);
    const n = d.log.records.length;
    d.daemon.engine.onCycle(() => {});
    await d.cycles(1);
    assert.ok(
      d.log.records.slice(n).every((r) => r.level === 'warn' || r.level === 'error' || r.event === 'log_level'),
      'info records stop at level warn',
    );
  } finally {
    await d.stop();
  }
});

test('API: malformed, oversized and wrong-type bodies; unknown routes and methods', async () => {
  const d = await startSimDaemon({
    policies: { '10_base': MARK(1) },
    tweak: (c) => {
      c.api.max_body_bytes = 4096;
    },
  });
  try {
    const s = d.socket;
    const json = { 'content-type': 'application/json' };
    const cases: [string, string, { body?: string; headers?: Record<string, string> }, number, string][] = [
      ['PUT', '/api/v1/log-level', { body: '{"level":', headers: json }, 400, 'malformed JSON'],
      ['PUT', '/api/v1/log-level', { body: '{"level":"loud"}', headers: json }, 400, 'invalid body'],
      ['PUT', '/api/v1/log-level', { body: '{"level":"info","extra":1}', headers: json }, 400, 'invalid body'],
      ['PUT', '/api/v1/log-level', { body: '[1,2]', headers: json }, 400, 'invalid body'],
      ['PUT', '/api/v1/log-level', { body: 'level=info', headers: { 'content-type': 'text/plain' } }, 415, 'unsupported media type'],
      ['POST', '/api/v1/pause', { body: '{"reason": 5}', headers: json }, 400, 'invalid body'],
      ['PUT', '/api/v1/policies/20_big', { body: `# ${'x'.repeat(5000)}\n`, headers: { 'content-type': 'text/plain' } }, 413, 'payload too large'],
      ['PUT', '/api/v1/policies/20_json', { body: '{}', headers: json }, 415, 'unsupported media type'],
      ['GET', '/api/v1/nothing', {}, 404, 'not found'],
      ['DELETE', '/api/v1/health', {}, 405, 'method not allowed'],
      ['GET', '/elsewhere', {}, 404, 'not found'],
      // Found by the fuzz tests: a bad percent-encoding was a 500, the dashboard's and /metrics' 405 had no body.
      ['GET', '/api/v1/guests/%E0%A4%A', {}, 400, 'bad guest name'],
      ['POST', '/metrics', { body: '' }, 405, 'method not allowed'],
      ['PATCH', '/', { body: '' }, 405, 'method not allowed'],
    ];
    for (const [m, p, o, status, error] of cases) {
      const r = await call(s, m, p, o);
      assert.equal(r.status, status, `${m} ${p} ${o.body?.slice(0, 30)}: ${r.body}`);
      assert.equal(r.json.error, error, `${m} ${p}`);
    }
    const bytes = await call(s, 'PUT', '/api/v1/policies/20_bin', { body: Buffer.from([0xff, 0xfe, 0x28]), headers: { 'content-type': 'text/plain' } });
    assert.equal(bytes.status, 400);
    // Nothing of it changed the daemon.
    assert.deepEqual(
      d.port.policies().map((p) => p.name),
      ['10_base'],
    );
    assert.equal(d.port.health().paused, false);
    assert.equal((await call(s, 'GET', '/api/v1/health')).status, 200, 'still serving');
  } finally {
    await d.stop();
  }
});

/**
 * Every [method, path] the router answers, from its own table (a route added is a route
 * tested). Whether it writes is the rule of HTTP, not the router's say: anything but GET.
 */
function routesOf(guest: string): { method: string; path: string; write: boolean }[] {
  return API_ROUTES.flatMap((r) =>
    Object.keys(r.methods).map((method) => ({
      method,
      path: `/api/v1/${r.path.replace('NAME', r.path.startsWith('guests/') ? guest : '20_x')}`,
      write: method !== 'GET',
    })),
  );
}

/** A body each write route would take (a route without an entry gets none: refusals come before bodies). */
function sampleBody(method: string, path: string): { body?: string; headers: Record<string, string> } {
  if (path.endsWith('/log-level')) return { body: '{"level":"info"}', headers: { 'content-type': 'application/json' } };
  if (path.endsWith('/pause')) return { body: '{"reason":"test"}', headers: { 'content-type': 'application/json' } };
  if (method === 'PUT' && path.includes('/policies/')) return { body: MARK(2), headers: { 'content-type': 'text/plain' } };
  return { headers: {} };
}

test('every route of the router: writes need the write token on TCP (none: 401, read token: 403); the read token reads', async () => {
  const d = await startSimDaemon({ policies: { '10_base': MARK(1), '20_x': MARK(1) }, tcp: true });
  try {
    const at = d.tcp!;
    const none = await call(at, 'GET', '/api/v1/health');
    assert.equal(none.status, 401);
    assert.match(String(none.headers['www-authenticate']), /Bearer/);
    assert.equal((await call(at, 'GET', '/api/v1/health', { headers: { authorization: 'Bearer wrong-token-0123456789' } })).status, 401);
    assert.equal((await call(at, 'GET', '/api/v1/health', { headers: { authorization: `Basic ${WRITE_TOKEN}` } })).status, 401);
    const ro = { authorization: `Bearer ${READ_TOKEN}` };
    assert.equal((await call(at, 'GET', '/metrics', { headers: ro })).status, 200);
    const routes = routesOf(d.port.guests()[0]!.name);
    const writeRoutes = routes.filter((r) => r.write);
    // The table is the router: pause, resume, log-level (PUT, POST), a policy's PUT and DELETE at least.
    for (const w of [
      'POST /api/v1/pause',
      'POST /api/v1/resume',
      'PUT /api/v1/log-level',
      'POST /api/v1/log-level',
      'PUT /api/v1/policies/20_x',
      'DELETE /api/v1/policies/20_x',
    ]) {
      assert.ok(
        writeRoutes.some((r) => `${r.method} ${r.path}` === w),
        `${w} is among the write routes`,
      );
    }
    for (const { method, path, write } of routes) {
      if (!write) {
        assert.equal((await call(at, method, path, { headers: ro })).status, 200, `${method} ${path} with the read token`);
        continue;
      }
      const { body, headers } = sampleBody(method, path);
      assert.equal((await call(at, method, path, { body, headers })).status, 401, `${method} ${path} without a token`);
      assert.equal((await call(at, method, path, { body, headers: { ...headers, ...ro } })).status, 403, `${method} ${path} with the read token`);
    }
    assert.equal(d.port.health().paused, false);
    assert.deepEqual(
      d.port.policies().map((p) => [p.name, p.text]),
      [
        ['10_base', MARK(1)],
        ['20_x', MARK(1)],
      ],
      'nothing changed',
    );
    // The write token gets past the check on every write route (the 403s above were the token's).
    for (const { method, path } of writeRoutes) {
      if (method === 'DELETE') continue; // 20_x is a file: 409
      const { body, headers } = sampleBody(method, path);
      const r = await call(at, method, path, { body, headers: { ...headers, authorization: `Bearer ${WRITE_TOKEN}` } });
      assert.equal(r.status, 200, `${method} ${path} with the write token: ${r.body}`);
    }
    assert.equal(d.port.policies().find((p) => p.name === '20_x')?.source, 'api');
    assert.equal((await call(at, 'DELETE', '/api/v1/policies/20_x', { headers: { authorization: `Bearer ${WRITE_TOKEN}` } })).status, 204);
  } finally {
    await d.stop();
  }
});

test('the dashboard listener is read-only: a tokenless loopback client reads every read route (200) and no write route (403), nor does the write token', async () => {
  const d = await startSimDaemon({ policies: { '10_base': MARK(1), '20_x': MARK(1) }, tcp: true, dashboard: true });
  try {
    const at = d.dashboard!;
    for (const path of ['/', '/dashboard.js', '/metrics']) assert.equal((await call(at, 'GET', path)).status, 200, `GET ${path}`);
    for (const { method, path, write } of routesOf(d.port.guests()[0]!.name)) {
      const { body, headers } = sampleBody(method, path);
      const r = await call(at, method, path, { body, headers });
      assert.equal(r.status, write ? 403 : 200, `${method} ${path} without a token: ${r.body.slice(0, 200)}`);
      if (write) {
        const w = await call(at, method, path, { body, headers: { ...headers, authorization: `Bearer ${WRITE_TOKEN}` } });
        assert.equal(w.status, 403, `${method} ${path} with the write token on the read-only listener`);
      }
    }
    assert.equal(d.port.health().paused, false);
    assert.deepEqual(
      d.port.policies().map((p) => [p.name, p.source]),
      [
        ['10_base', 'file'],
        ['20_x', 'file'],
      ],
    );
  } finally {
    await d.stop();
  }
});

test('MOM-style verbs on the port: setPolicy replaces everything until resetPolicies', async () => {
  const d = await startSimDaemon({ policies: { '10_base': MARK(1) } });
  try {
    d.port.replacePolicies(MARK(5));
    assert.deepEqual(
      d.port.policies().map((p) => [p.name, p.source]),
      [['50_main_', 'api']],
    );
    await d.cycles(1);
    assert.deepEqual(marks(d.port.guests()), [5]);
    assert.throws(() => d.port.replacePolicies('(('), /api:50_main_:1:/);
    assert.deepEqual(
      d.port.policies().map((p) => p.name),
      ['50_main_'],
      'a refused setPolicy keeps the running set',
    );
    d.port.resetPolicies();
    assert.deepEqual(
      d.port.policies().map((p) => [p.name, p.source]),
      [['10_base', 'file']],
    );
    await d.cycles(1);
    assert.deepEqual(marks(d.port.guests()), [1]);
  } finally {
    await d.stop();
  }
});
