// /metrics read by a strict parser of Prometheus' text exposition format (written here from
// the format's rules), and its values compared with the engine's own samples.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { call, startSimDaemon } from './fixture.js';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Family {
  name: string;
  type: string;
  help: string;
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function parseValue(s: string, line: number): number {
  if (s === '+Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (s === 'NaN') return NaN;
  if (!/^[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?)$/.test(s)) throw new Error(`line ${line}: bad value ${s}`);
  return Number(s);
}

function parseLabels(s: string, line: number): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < s.length) {
    const eq = s.indexOf('=', i);
    if (eq < 0) throw new Error(`line ${line}: label without "="`);
    const name = s.slice(i, eq);
    if (!LABEL.test(name)) throw new Error(`line ${line}: bad label name ${name}`);
    if (name in out) throw new Error(`line ${line}: label ${name} twice`);
    if (s[eq + 1] !== '"') throw new Error(`line ${line}: label value not quoted`);
    let j = eq + 2;
    let v = '';
    for (; j < s.length && s[j] !== '"'; j++) {
      if (s[j] === '\\') {
        const e = s[++j];
        if (e === 'n') v += '\n';
        else if (e === '\\' || e === '"') v += e;
        else throw new Error(`line ${line}: bad escape \\${e}`);
      } else v += s[j];
    }
    if (s[j] !== '"') throw new Error(`line ${line}: unterminated label value`);
    out[name] = v;
    i = j + 1;
    if (s[i] === ',') i++;
    else if (i < s.length) throw new Error(`line ${line}: expected "," between labels`);
  }
  return out;
}

/** Parses the text format; throws on anything the format does not allow. */
export function parseExposition(text: string): Map<string, Family> {
  const fams = new Map<string, Family>();
  let current: Family | undefined;
  const seen = new Set<string>();
  if (!text.endsWith('\n')) throw new Error('the exposition must end with a newline');
  text
    .split('\n')
    .slice(0, -1)
    .forEach((raw, idx) => {
      const n = idx + 1;
      if (raw === '') return;
      const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(raw);
      if (meta) {
        const [, kind, name, rest] = meta;
        if (!NAME.test(name!)) throw new Error(`line ${n}: bad metric name ${name}`);
        let f = fams.get(name!);
        if (!f) {
          if (current && current.name !== name && fams.has(name!)) throw new Error(`line ${n}: family ${name} split`);
          f = { name: name!, type: 'untyped', help: '', samples: [] };
          fams.set(name!, f);
        }
        if (kind === 'TYPE') {
          if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(rest!)) throw new Error(`line ${n}: bad type ${rest}`);
          if (f.samples.length) throw new Error(`line ${n}: TYPE after samples of ${name}`);
          f.type = rest!;
        } else f.help = rest!;
        current = f;
        return;
      }
      if (raw.startsWith('#')) return;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: (-?\d+))?$/.exec(raw);
      if (!m) throw new Error(`line ${n}: not a sample: ${raw}`);
      const [, name, labelText, value] = m;
      const labels = labelText ? parseLabels(labelText, n) : {};
      const key = `${name}{${Object.entries(labels)
        .sort()
        .map(([k, v]) => `${k}=${v}`)
        .join(',')}}`;
      if (seen.has(key)) throw new Error(`line ${n}: duplicate series ${key}`);
      seen.add(key);
      const base =
        current &&
        (name === current.name ||
          (current.type === 'histogram' && /_(bucket|sum|count)$/.test(name!) && name!.replace(/_(bucket|sum|count)$/, '') === current.name))
          ? current
          : undefined;
      if (!base) throw new Error(`line ${n}: sample ${name} outside its family`);
      base.samples.push({ name: name!, labels, value: parseValue(value!, n) });
    });
  for (const f of fams.values()) {
    if (f.type === 'counter' && !f.name.endsWith('_total')) throw new Error(`counter ${f.name} does not end in _total`);
    if (f.type === 'histogram') {
      const buckets = f.samples.filter((s) => s.name.endsWith('_bucket'));
      if (!buckets.some((b) => b.labels.le === '+Inf')) throw new Error(`histogram ${f.name} has no +Inf bucket`);
      let prev = -Infinity;
      for (const b of buckets) {
        if (b.value < prev) throw new Error(`histogram ${f.name}: buckets not cumulative`);
        prev = b.value;
      }
      const count = f.samples.find((s) => s.name === `${f.name}_count`);
      if (!count || count.value !== buckets.at(-1)!.value) throw new Error(`histogram ${f.name}: _count differs from the +Inf bucket`);
    }
  }
  return fams;
}

const value = (fams: Map<string, Family>, name: string, labels: Record<string, string> = {}) =>
  (fams.get(name) ?? fams.get(name.replace(/_(bucket|sum|count)$/, '')))?.samples.find(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  )?.value;

test('the exposition parser refuses what the format does not allow', () => {
  assert.throws(() => parseExposition('# TYPE a counter\na 1\n'), /_total/);
  assert.throws(() => parseExposition('a{x="1} 1\n'), /unterminated|not a sample/);
  assert.throws(() => parseExposition('# TYPE a gauge\na 1\na 2\n'), /duplicate/);
  assert.throws(() => parseExposition('# TYPE a gauge\na one\n'), /bad value/);
  assert.throws(() => parseExposition('# TYPE a gauge\na 1'), /newline/);
  assert.equal(parseExposition('# HELP a x\n# TYPE a gauge\na{b="q\\"\\n"} 1.5e3\n').get('a')!.samples[0]!.labels.b, 'q"\n');
});

test("/metrics: valid text format whose values are the engine's own samples; a gone guest loses its series", async () => {
  const d = await startSimDaemon({ policies: { '10_b': '(with Guests guest (guest.Control "balloon_target" (* 0.95 guest.balloon_max)))\n' } });
  try {
    await d.cycles(3);
    // Scrape between two collections so that the samples compared are the same.
    const scrape = async () => {
      for (;;) {
        const before = d.port.host().stats;
        const cycles = d.port.counters().cycles;
        const r = await call(d.socket, 'GET', '/metrics');
        // Counters read now are those the scrape saw: no collection and no cycle in between.
        if (d.port.host().stats === before && d.port.counters().cycles === cycles) return { r, c: d.port.counters() };
      }
    };
    const { r, c } = await scrape();
    assert.equal(r.status, 200);
    assert.match(String(r.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    const fams = parseExposition(r.body);
    const h = d.port.host().stats;
    assert.equal(value(fams, 'ballast_host_memory_total_bytes'), (h.mem_available as number) * 1024);
    assert.equal(value(fams, 'ballast_host_memory_free_bytes'), (h.mem_free as number) * 1024);
    assert.equal(value(fams, 'ballast_host_swap_used_bytes'), (h.swap_usage as number) * 1024);
    assert.equal(value(fams, 'ballast_host_ksm_pages_sharing'), h.ksm_pages_sharing);
    const guests = d.port.guests();
    assert.equal(value(fams, 'ballast_guests'), guests.length);
    for (const g of guests) {
      const labels = { name: g.name, uuid: String(g.props.uuid ?? g.id) };
      assert.equal(value(fams, 'ballast_guest_balloon_current_bytes', labels), (g.stats.balloon_cur as number) * 1024, g.name);
      assert.equal(value(fams, 'ballast_guest_memory_unused_bytes', labels), (g.stats.mem_unused as number) * 1024, g.name);
      if (g.lastTarget !== undefined) assert.equal(value(fams, 'ballast_guest_balloon_target_bytes', labels), g.lastTarget * 1024);
      if (typeof g.stats.swap_out === 'number') assert.equal(value(fams, 'ballast_guest_swap_out_bytes_total', labels), g.stats.swap_out * 1024, g.name);
    }
    // The JSON API's guest list carries the same balloon-return totals (the dashboard shows them).
    const listed = JSON.parse((await call(d.socket, 'GET', '/api/v1/guests')).body) as { name: string; balloonReturn?: unknown }[];
    const withReturns = guests.filter((g) => g.balloonReturn !== undefined);
    assert.ok(withReturns.length > 0, 'inflations measured');
    for (const g of withReturns) {
      const labels = { name: g.name, uuid: String(g.props.uuid ?? g.id) };
      assert.equal(value(fams, 'ballast_guest_balloon_expected_return_bytes_total', labels), g.balloonReturn!.expectedKiB * 1024);
      assert.ok(listed.find((x) => x.name === g.name)?.balloonReturn !== undefined, `${g.name}: balloonReturn in GET /api/v1/guests`);
    }
    assert.equal(value(fams, 'ballast_cycles_total'), c.cycles);
    assert.equal(value(fams, 'ballast_rollbacks_total'), c.rollbacks);
    assert.equal(fams.get('ballast_hypervisor_connected'), undefined, 'the simulator has no connection to report');
    assert.equal(fams.get('ballast_cycle_duration_seconds')?.type, 'histogram');
    assert.ok((value(fams, 'ballast_cycle_duration_seconds_count') ?? 0) >= 2, 'cycles observed');
    assert.ok(
      [...(fams.get('ballast_actions_total')?.samples ?? [])].some((s) => s.labels.control === 'balloon_target'),
      'actions by control and result',
    );
    for (const f of fams.values()) assert.ok(f.help.length > 0, `${f.name} has HELP`);

    // The demo scenario's guest "late" runs from 300 to 1800 simulated seconds.
    const waitFor = async (what: string, ok: () => boolean) => {
      for (let i = 0; i < 400 && !ok(); i++) await d.cycles(1);
      assert.ok(ok(), what);
    };
    await waitFor('guest "late" started', () => d.port.guest('late') !== undefined);
    const during = parseExposition((await call(d.socket, 'GET', '/metrics')).body);
    assert.ok(value(during, 'ballast_guest_balloon_current_bytes', { name: 'late' }) !== undefined, 'a running guest has its series');
    await waitFor('guest "late" gone', () => d.port.guest('late') === undefined);
    const after = parseExposition((await call(d.socket, 'GET', '/metrics')).body);
    for (const f of after.values()) assert.ok(!f.samples.some((x) => x.labels.name === 'late'), `${f.name} dropped the gone guest`);
    assert.equal(value(after, 'ballast_guests'), d.port.guests().length);
  } finally {
    await d.stop();
  }
});

test('per-guest series written directly: label values escaped, one series per label set, no negative counter, every family once in registry order', async () => {
  const { createMetrics, renderMetrics, metricsOf } = await import('../../../src/api/metrics/index.js');
  const guest = (name: string, extra: Record<string, unknown> = {}) => ({
    id: name,
    name,
    props: {},
    vars: {},
    stats: { balloon_cur: 1024, balloon_max: 2048, mem_unused: null, swap_in: -1, swap_out: 3, psi_some_avg10: 12.5 },
    ...extra,
  });
  const hostile = 'a"b\\c\nd\x1b]0;x\x07 é';
  const guests = [
    guest(hostile, { stale: 'no stats', lastTarget: 900, holdUntil: 50, balloonReturn: { inflatedKiB: 10, expectedKiB: 8, returnedKiB: -2 } }),
    guest('plain', { props: { uuid: 'u-1' } }),
    guest('twin', { id: 'same' }),
    guest('twin', { id: 'same' }),
  ];
  const port = {
    onUpdate: () => () => {},
    host: () => ({ stats: { swap_in_io_wait_ms: 6.4, swap_rotational: 1, psi_io_some_avg10: 42 } }),
    guests: () => guests,
    health: () => ({
      status: 'ok',
      version: 'v',
      hypervisor: 'h',
      startedAt: 0,
      time: 40,
      cycle: 1,
      paused: false,
      policyLoaded: true,
      calm: false,
      problems: [],
    }),
    alerts: () => [],
    counters: () => ({}),
    actions: () => [],
  } as unknown as import('../../../src/api/port.js').DaemonPort;
  const fams = parseExposition((await renderMetrics(port)).body.toString('utf8'));
  const registered = metricsOf(port)
    .getMetricsAsArray()
    .map((m) => m.name);
  assert.deepEqual([...fams.keys()], registered, 'every family once, in the order registered');
  assert.deepEqual(
    registered,
    createMetrics(port)
      .getMetricsAsArray()
      .map((m) => m.name),
  );
  const l = { name: hostile, uuid: hostile };
  assert.equal(value(fams, 'ballast_guest_balloon_current_bytes', l), 1024 * 1024, 'the hostile name read back exactly');
  assert.equal(value(fams, 'ballast_guest_balloon_target_bytes', l), 900 * 1024);
  assert.equal(value(fams, 'ballast_guest_stale', l), 1);
  assert.equal(value(fams, 'ballast_guest_rollback_hold', l), 1, 'held until 50, now 40');
  assert.equal(value(fams, 'ballast_guest_memory_pressure_some_avg10_ratio', l), 0.125);
  assert.equal(value(fams, 'ballast_guest_balloon_inflated_bytes_total', l), 10 * 1024);
  assert.equal(value(fams, 'ballast_guest_balloon_returned_bytes_total', l), undefined, 'a negative counter has no sample');
  assert.equal(value(fams, 'ballast_guest_swap_in_bytes_total', l), undefined);
  assert.equal(value(fams, 'ballast_guest_swap_out_bytes_total', l), 3 * 1024);
  assert.equal(value(fams, 'ballast_guest_memory_unused_bytes', l), undefined, 'a null stat has no sample');
  assert.equal(value(fams, 'ballast_guest_stale', { name: 'plain', uuid: 'u-1' }), 0);
  assert.equal(value(fams, 'ballast_guest_balloon_target_bytes', { name: 'plain' }), undefined);
  assert.equal(fams.get('ballast_guest_stale')!.samples.filter((s) => s.labels.name === 'twin').length, 1, 'one series for two guests with one label set');
  assert.equal(fams.get('ballast_guest_swap_out_bytes_total')!.type, 'counter');
  assert.equal(value(fams, 'ballast_guests'), 4);
  // The swap's speed as the guard sees it, in base units.
  assert.equal(value(fams, 'ballast_host_swap_in_io_wait_seconds'), 0.0064);
  assert.equal(value(fams, 'ballast_host_swap_rotational'), 1);
  assert.equal(value(fams, 'ballast_host_io_pressure_some_avg10_ratio'), 0.42);
  assert.equal(value(fams, 'ballast_host_memory_total_bytes'), undefined, 'a host field not sampled has no sample');
});

test("ballast_actions_total counts every action once, a guard pass's too; the cycle histogram observes each policy cycle once", async () => {
  const { createMetrics } = await import('../../../src/api/metrics/index.js');
  let update: (kind: 'collect' | 'cycle') => void = () => {};
  let recent: import('../../../src/engine/reports.js').ActionRecord[] = [];
  let times: { totalMs: number; evalMs: number } | undefined;
  const rec = (cycle: number, time: number, control: string, guardPass?: boolean) => ({
    cycle,
    time,
    entity: 'g',
    control,
    from: 1,
    to: 2,
    result: 'applied' as const,
    reasons: [],
    guardPass,
  });
  const port = {
    onUpdate: (l: typeof update) => {
      update = l;
      return () => {};
    },
    actions: () => recent,
    lastCycleTimes: () => times,
    // What the counting read before, so that the old code fails on the counts, not on a missing method.
    health: () => ({ cycle: Math.max(0, ...recent.map((r) => r.cycle)) }),
  } as unknown as import('../../../src/api/port.js').DaemonPort;
  const reg = createMetrics(port);
  const count = async () => {
    const m = (await reg.getMetricsAsJSON()).find((x) => x.name === 'ballast_actions_total')!;
    return Object.fromEntries(m.values.map((v) => [String(v.labels.control), v.value]));
  };
  const observed = async () => {
    const h = (await reg.getMetricsAsJSON()).find((x) => x.name === 'ballast_cycle_duration_seconds')!;
    return (h.values as { metricName?: string; value: number }[]).find((v) => v.metricName?.endsWith('_count'))?.value;
  };
  // Policy cycle 1 at t=10: two actions.
  recent = [rec(1, 10, 'balloon_target'), rec(1, 10, 'ksm_run')];
  times = { totalMs: 3, evalMs: 1 };
  update('cycle');
  // A guard pass at t=12 raises a guest: recorded under cycle 1.
  recent = [...recent, rec(1, 12, 'balloon_target', true)];
  update('cycle');
  update('collect');
  // Policy cycle 2 at t=14, nothing new in a second hook for it.
  recent = [...recent, rec(2, 14, 'balloon_target')];
  times = { totalMs: 2, evalMs: 1 };
  update('cycle');
  update('cycle');
  assert.deepEqual(await count(), { balloon_target: 3, ksm_run: 1 });
  assert.equal(await observed(), 2, 'two policy cycles observed, not one per hook');
  // Older records leaving the port's ring are not counted again.
  recent = [rec(2, 14, 'balloon_target'), rec(3, 16, 'balloon_target')];
  update('cycle');
  assert.deepEqual(await count(), { balloon_target: 4, ksm_run: 1 });
  // A clock that did not move between two cycles (a simulated host held still) still counts the later one.
  recent = [...recent, rec(4, 16, 'ksm_run')];
  update('cycle');
  assert.deepEqual(await count(), { balloon_target: 4, ksm_run: 2 });
});

test('/metrics is sent a family at a time: a client that stops reading or leaves mid-way costs nothing after; HEAD has no body', async () => {
  const { connect } = await import('node:net');
  const d = await startSimDaemon();
  try {
    await d.cycles(1);
    // Reads nothing for a while, then leaves after the first bytes.
    const sock = connect(d.socket);
    await new Promise<void>((r) => sock.on('connect', () => r()));
    sock.pause();
    sock.write('GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n');
    await d.cycles(2);
    sock.resume();
    const first = await new Promise<Buffer>((r) => sock.once('data', r));
    assert.match(first.toString('latin1'), /^HTTP\/1\.1 200 OK\r\n[\s\S]*transfer-encoding: chunked/i);
    sock.destroy();
    await d.cycles(1);
    const r = await call(d.socket, 'GET', '/metrics');
    assert.equal(r.status, 200);
    assert.ok(parseExposition(r.body).has('ballast_guest_balloon_current_bytes'));
    const head = await call(d.socket, 'HEAD', '/metrics');
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
  } finally {
    await d.stop();
  }
});
