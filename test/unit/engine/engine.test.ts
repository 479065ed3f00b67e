import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Engine } from '../../../src/engine/engine.js';
import { ksm as ksmModule } from '../../../src/controls/ksm/index.js';
import { ksmSection } from '../../../src/controls/ksm/config.js';
import { memoryLogger } from '../../../src/log/logger.js';
import type { HostSource } from '../../../src/types.js';
import { evaluateFn, FakeHypervisor, FakeKsm, guest, MiB, targetPolicy, type FnPolicy } from './fakes.js';

const hostSource = (over: Record<string, number> = {}): HostSource => ({
  name: 'fake-meminfo',
  collect: async () => ({ mem_available: 8192 * MiB, mem_free: 1000 * MiB, mem_unused: 800 * MiB, ...over }),
});

function makeEngine(hv: FakeHypervisor, policy: FnPolicy | null, extra: Partial<ConstructorParameters<typeof Engine<FnPolicy>>[0]> & { ksm?: FakeKsm } = {}) {
  let t = 0;
  // The KSM a test watches is the one its hypervisor offers (modules build from capabilities).
  if (extra.ksm) hv.capabilities = { ...hv.capabilities, ksm: extra.ksm };
  const logger = memoryLogger();
  const engine = new Engine<FnPolicy>({
    hypervisor: hv,
    hostSources: [hostSource()],
    policy,
    evaluate: evaluateFn,
    logger,
    now: () => t,
    safeguards: { minGuestKiB: 256 * MiB, headroomKiB: 64 * MiB },
    ...extra,
  });
  return {
    engine,
    logger,
    tick: (dt = 5) => {
      t += dt;
    },
  };
}

test('a cycle collects, evaluates, guards and sets balloons, logging each action with its reason', async () => {
  const hv = new FakeHypervisor([guest('a'), guest('b')]);
  const { engine, logger } = makeEngine(
    hv,
    targetPolicy((s) => (s.balloon_cur as number) - 100 * MiB),
  );
  await engine.collect();
  const r = await engine.evaluateAndAct();
  assert.equal(r.outcomes.length, 2);
  assert.deepEqual(
    hv.setCalls.map((c) => c.target),
    [1948 * MiB, 1948 * MiB],
  );
  const actions = logger.records.filter((x) => x.event === 'action');
  assert.equal(actions.length, 2);
  assert.deepEqual(actions[0]!.reason, ['policy asked to inflate']);
  assert.equal(engine.counters.actionsApplied, 2);
});

test('guests appearing start with empty history and their own vars; vars persist across cycles', async () => {
  const hv = new FakeHypervisor([guest('a')]);
  const counting: FnPolicy = (host, guests) => ({
    host: { controls: {}, vars: { n: ((host.vars.n as number) ?? 0) + 1 } },
    guests: guests.map((g) => ({ name: String(g.props.name), controls: {}, vars: { seen: ((g.vars.seen as number) ?? 0) + 1, hist: g.stats.length } })),
  });
  const { engine, tick } = makeEngine(hv, counting);
  for (let i = 0; i < 3; i++) {
    await engine.collect();
    await engine.evaluateAndAct();
    tick();
  }
  hv.guests.set('id-b', guest('b'));
  await engine.collect();
  await engine.evaluateAndAct();
  const snap = engine.snapshot();
  assert.equal(snap.host.vars.n, 4);
  const a = snap.guests.find((g) => g.name === 'a')!;
  const b = snap.guests.find((g) => g.name === 'b')!;
  assert.deepEqual(a.vars, { seen: 4, hist: 4 });
  assert.deepEqual(b.vars, { seen: 1, hist: 1 });
});

test('a guest that vanished is freed; its pending controls are dropped, others still acted on', async () => {
  const hv = new FakeHypervisor([guest('a'), guest('b'), guest('c')]);
  const { engine, logger } = makeEngine(
    hv,
    targetPolicy((s) => (s.balloon_cur as number) - 100 * MiB),
  );
  await engine.collect();
  // b is destroyed after the plan is made, right when the first balloon call goes out
  let fired = false;
  hv.beforeSet = () => {
    if (!fired) {
      fired = true;
      hv.destroy('id-b');
    }
  };
  const r = await engine.evaluateAndAct();
  const byName = Object.fromEntries(r.outcomes.map((o) => [o.action.entity, o.result]));
  assert.equal(byName.a, 'applied');
  assert.equal(byName.b, 'dropped');
  assert.equal(byName.c, 'applied');
  assert.deepEqual(engine.guestIds().sort(), ['id-a', 'id-c']);
  assert.equal(engine.counters.dropped, 1);
  assert.ok(logger.records.some((x) => x.event === 'guest_vanished' && x.guest === 'b'));
  // next collection: b is not there, nothing breaks
  await engine.collect();
  const r2 = await engine.evaluateAndAct();
  assert.equal(r2.outcomes.filter((o) => o.action.entity === 'b').length, 0);
});

test('a collection in flight when a guest is destroyed does not bring it back (its samples predate the event)', async () => {
  const hv = new FakeHypervisor([guest('a'), guest('b')]);
  const { engine, logger } = makeEngine(hv, null);
  await engine.collect();
  assert.deepEqual(engine.guestIds().sort(), ['id-a', 'id-b']);
  // libvirt answers with both guests, then b's "destroyed" event arrives before the answer is merged.
  const collect = hv.collect.bind(hv);
  hv.collect = async () => {
    const samples = await collect();
    hv.destroy('id-b');
    return samples;
  };
  await engine.collect();
  assert.deepEqual(engine.guestIds(), ['id-a']);
  const b = logger.records.filter((x) => x.guest === 'b' && (x.event === 'guest_vanished' || x.event === 'guest_appeared')).map((x) => x.event);
  assert.deepEqual(b, ['guest_appeared', 'guest_vanished'], 'b vanished once, not again after reappearing');
  // A guest of that id that is really there again appears in the next collection.
  hv.collect = collect;
  hv.guests.set('id-b', guest('b'));
  await engine.collect();
  assert.deepEqual(engine.guestIds().sort(), ['id-a', 'id-b']);
});

test('a guest vanishing without an event (driver error on set) fails that action only', async () => {
  const hv = new FakeHypervisor([guest('a'), guest('b')]);
  const { engine } = makeEngine(
    hv,
    targetPolicy((s) => (s.balloon_cur as number) - 100 * MiB),
  );
  await engine.collect();
  hv.guests.delete('id-a'); // gone from libvirt, no event delivered
  const r = await engine.evaluateAndAct();
  const a = r.outcomes.find((o) => o.action.entity === 'a')!;
  assert.equal(a.result, 'failed');
  assert.match(a.error!, /no domain/);
  assert.equal(r.outcomes.find((o) => o.action.entity === 'b')!.result, 'applied');
  await engine.collect();
  assert.deepEqual(engine.guestIds(), ['id-b']);
});

test('a policy error in one guest skips that guest only', async () => {
  const hv = new FakeHypervisor([guest('a'), guest('bad'), guest('c')]);
  const policy: FnPolicy = (_host, guests) => ({
    guests: guests.map((g) => ({ name: String(g.props.name), controls: { balloon_target: 1800 * MiB }, vars: { x: 1 } })),
    errors: [{ message: "unsupported operand type(s) for +: 'int' and 'str'", line: 7, col: 12, guest: 'bad' }],
  });
  const { engine, logger } = makeEngine(hv, policy);
  await engine.collect();
  const r = await engine.evaluateAndAct();
  assert.deepEqual(r.outcomes.map((o) => o.action.entity).sort(), ['a', 'c']);
  assert.ok(r.notes.some((n) => n.entity === 'bad' && n.verdict === 'veto' && /7:12/.test(n.reasons[0]!)));
  assert.equal(engine.counters.policyErrors, 1);
  assert.ok(logger.records.some((x) => x.event === 'policy_error' && x.guest === 'bad' && x.line === 7));
  assert.deepEqual(engine.snapshot().guests.find((g) => g.name === 'bad')!.vars, {}, 'a failed guest keeps its old vars');
});

test('an aborted evaluation applies nothing; a throwing evaluator does not stop the loop', async () => {
  const hv = new FakeHypervisor([guest('a')]);
  const ksm = new FakeKsm();
  const aborting: FnPolicy = (_host, guests) => ({
    host: { controls: { ksm_run: 1 }, vars: { changed: true } },
    guests: guests.map((g) => ({ name: String(g.props.name), controls: { balloon_target: 1800 * MiB }, vars: { changed: true } })),
    errors: [{ message: 'step budget exhausted', line: 3, col: 1 }],
    aborted: true,
  });
  const { engine } = makeEngine(hv, aborting, { ksm });
  await engine.collect();
  const r = await engine.evaluateAndAct();
  assert.equal(r.aborted, true);
  assert.equal(r.outcomes.length, 0);
  assert.equal(hv.setCalls.length, 0);
  assert.equal(ksm.writes.length, 0);
  assert.deepEqual(engine.snapshot().host.vars, {}, 'vars of an aborted run are not kept');
  engine.setPolicy(() => {
    throw new Error('boom');
  });
  const r2 = await engine.evaluateAndAct();
  assert.equal(r2.aborted, true);
  assert.match(r2.errors[0]!.message, /boom/);
  assert.equal(engine.counters.abortedEvaluations, 2);
});

test('driver and source errors are counted; guests go stale and are not inflated', async () => {
  const hv = new FakeHypervisor([guest('a')]);
  let failSource = false;
  const src: HostSource = {
    name: 'meminfo',
    collect: async () => {
      if (failSource) throw new Error('EIO');
      return { mem_available: 1, mem_free: 1 };
    },
  };
  const { engine } = makeEngine(
    hv,
    targetPolicy((s) => (s.balloon_cur as number) - 300 * MiB),
    { hostSources: [src] },
  );
  await engine.collect();
  hv.failCollect = 'connection reset';
  failSource = true;
  const c = await engine.collect();
  assert.equal(c.errors.length, 2);
  assert.equal(engine.counters.driverErrors, 1);
  assert.equal(engine.counters.sourceErrors, 1);
  assert.deepEqual(engine.snapshot().host.stats, { mem_available: 1, mem_free: 1 }, 'the last good host values are kept');
  assert.match(engine.snapshot().host.stale!, /EIO/);
  const r = await engine.evaluateAndAct();
  assert.equal(r.outcomes.length, 0);
  assert.match(r.notes[0]!.reasons[0]!, /inflation refused: sample stale/);
});

test('rollback through the engine: inflation, then a swap-in spike, then deflation and back-off', async () => {
  const hv = new FakeHypervisor([guest('a')]);
  const { engine, logger, tick } = makeEngine(
    hv,
    targetPolicy((s) => (s.balloon_cur as number) - 150 * MiB),
    {
      safeguards: { minGuestKiB: 256 * MiB, headroomKiB: 64 * MiB, rollbackWindow: 2, rollbackSwapInKiBPerS: 1024, rollbackBackoffS: 60 },
    },
  );
  await engine.collect();
  await engine.evaluateAndAct();
  assert.equal(hv.guests.get('id-a')!.stats.balloon_cur, 1898 * MiB);
  tick();
  hv.guests.get('id-a')!.stats.swap_in = 20 * 1024 * 5; // 20 MiB/s over the 5 s since
  await engine.collect();
  const r = await engine.evaluateAndAct();
  assert.equal(r.outcomes.length, 1);
  assert.equal(r.outcomes[0]!.action.to, 2048 * MiB, 'deflated back by the last step');
  assert.match(r.outcomes[0]!.action.reasons[0]!, /^rollback: swap_in/);
  assert.equal(engine.counters.rollbacks, 1);
  assert.ok(logger.records.some((x) => x.event === 'rollback' && x.level === 'warn'));
  // held off: the policy keeps asking to inflate, the guard refuses until the back-off ends
  for (let i = 0; i < 5; i++) {
    tick(10);
    await engine.collect();
    const rr = await engine.evaluateAndAct();
    assert.equal(rr.outcomes.length, 0);
    assert.match(rr.notes[0]!.reasons[0]!, /backing off/);
  }
  tick(20);
  await engine.collect();
  const after = await engine.evaluateAndAct();
  assert.equal(after.outcomes[0]!.result, 'applied', 'inflation allowed again after the back-off');
});

test('KSM controls: range-checked, only changed values written, failures counted', async () => {
  const hv = new FakeHypervisor([]);
  const ksm = new FakeKsm();
  let controls: Record<string, unknown> = { ksm_run: 1, ksm_pages_to_scan: 300, ksm_sleep_millisecs: 20 };
  const policy: FnPolicy = (host) => ({ host: { controls, vars: host.vars } });
  const ksmSource: HostSource = { name: 'ksm', collect: () => ksm.read() };
  const { engine, logger, tick } = makeEngine(hv, policy, { ksm, hostSources: [ksmSource] });
  await engine.collect();
  await engine.evaluateAndAct();
  assert.deepEqual(ksm.writes, [{ run: 1, pages_to_scan: 300 }], 'sleep_millisecs already 20: not written');
  await engine.collect();
  await engine.evaluateAndAct();
  assert.equal(ksm.writes.length, 1, 'nothing changed: nothing written');
  controls = { ksm_run: 7, ksm_pages_to_scan: 400 };
  const r = await engine.evaluateAndAct();
  assert.ok(r.notes.some((n) => n.control === 'ksm_run' && n.verdict === 'veto'));
  assert.deepEqual(ksm.writes[1], { pages_to_scan: 400 });
  ksm.fail = 'EPERM: /sys/kernel/mm/ksm/run is read-only';
  controls = { ksm_pages_to_scan: 500 };
  const r2 = await engine.evaluateAndAct();
  assert.equal(r2.outcomes[0]!.result, 'failed');
  assert.equal(engine.counters.controllerErrors, 1);
  // the same failure on each retry (after the backoff): counted each time, logged at error once
  assert.equal((await engine.evaluateAndAct()).outcomes[0]!.result, 'deferred', 'not retried at once');
  tick(30);
  await engine.evaluateAndAct();
  tick(60);
  await engine.evaluateAndAct();
  assert.equal(engine.counters.controllerErrors, 3);
  assert.deepEqual(
    logger.records.filter((x) => x.event === 'action_failed').map((x) => x.level),
    ['error', 'debug', 'debug'],
  );
  ksm.fail = undefined;
  tick(120);
  assert.equal((await engine.evaluateAndAct()).outcomes[0]!.result, 'applied');
  ksm.fail = 'EPERM again';
  controls = { ksm_pages_to_scan: 600 };
  await engine.evaluateAndAct();
  assert.equal(logger.records.filter((x) => x.event === 'action_failed').at(-1)!.level, 'error', 'after a success, a failure is news again');
});

test('the shipped default policy runs through the engine: a host under pressure shrinks guests, KSM is driven', async () => {
  const { readFileSync } = await import('node:fs');
  const { compilePolicyText } = await import('../../../src/engine/policy-adapter.js');
  const policy = compilePolicyText(readFileSync('policies/default.policy', 'utf8'), 'default.policy');
  const hv = new FakeHypervisor([guest('a', { mem_unused: 1500 * MiB }), guest('b', { mem_unused: 1500 * MiB })]);
  const ksm = new FakeKsm();
  const host: HostSource = {
    name: 'host',
    collect: async () => ({ mem_available: 4096 * MiB, mem_free: 300 * MiB, mem_unused: 200 * MiB, ksm_shareable: 3000 * MiB, ...(await ksm.read()) }),
  };
  const logger = memoryLogger();
  let t = 0;
  hv.capabilities = { ksm };
  const engine = new Engine({ hypervisor: hv, hostSources: [host], policy, logger, now: () => t });
  for (let i = 0; i < 3; i++) {
    t += 10;
    await engine.collect();
    const r = await engine.evaluateAndAct();
    assert.deepEqual(r.errors, []);
  }
  const a = hv.guests.get('id-a')!.stats.balloon_cur as number;
  assert.ok(a < 2048 * MiB, `guest a shrank: ${a / MiB} MiB`);
  assert.equal(ksm.state.run, 1);
  assert.ok(ksm.state.pages_to_scan > 100);
  assert.ok(logger.records.some((r) => r.event === 'action' && r.control === 'ksm_run'));
});

test('simulator: a guest destroyed between collection and actuation is dropped, the others are acted on', async () => {
  const { SimHypervisor, simHostSource } = await import('../../../src/hypervisor/sim/index.js');
  const { parseScenario } = await import('../../../src/sim/scenarios.js');
  const { SimWorld } = await import('../../../src/sim/world.js');
  const world = new SimWorld(
    parseScenario({
      host: { memMiB: 4096, swapMiB: 2048, cpus: 2 },
      guests: [1, 2, 3].map((i) => ({ name: `vm${i}`, memMiB: 1024, workload: { kind: 'idle', anonMiB: 100 } })),
    }),
    1,
  );
  const sim = new SimHypervisor(world);
  const logger = memoryLogger();
  const engine = new Engine<FnPolicy>({
    hypervisor: sim,
    hostSources: [simHostSource(world)],
    logger,
    now: () => world.now,
    evaluate: evaluateFn,
    policy: targetPolicy((s) => (s.balloon_cur as number) - 50 * MiB),
  });
  world.advance(5);
  await engine.collect();
  // Destroyed while the cycle runs: the world drops it and emits its lifecycle event.
  const realSet = sim.setBalloon.bind(sim);
  let first = true;
  sim.setBalloon = async (id, t) => {
    if (first) {
      first = false;
      world.destroyGuest('vm2');
    }
    return realSet(id, t);
  };
  const r = await engine.evaluateAndAct();
  const res = Object.fromEntries(r.outcomes.map((o) => [o.action.entity, o.result]));
  assert.equal(res.vm1, 'applied');
  assert.equal(res.vm2, 'dropped');
  assert.equal(res.vm3, 'applied');
  world.advance(5);
  await engine.collect();
  assert.deepEqual(
    engine.snapshot().guests.map((g) => g.name),
    ['vm1', 'vm3'],
  );
  const again = await engine.evaluateAndAct();
  assert.ok(again.outcomes.every((o) => o.result === 'applied'));
  engine.dispose();
});

test('observe-only (read-only connection): targets are computed and logged, never set', async () => {
  const hv = new FakeHypervisor([guest('a')]);
  const { engine, logger } = makeEngine(
    hv,
    targetPolicy((s) => (s.balloon_cur as number) - 100 * MiB),
    { readOnly: 'hypervisor.readonly = true (observe only)' },
  );
  await engine.collect();
  const r = await engine.evaluateAndAct();
  assert.equal(hv.setCalls.length, 0);
  assert.equal(r.outcomes.length, 0);
  const veto = logger.records.find((x) => x.event === 'veto')!;
  assert.deepEqual(veto.reason, ['policy asked to inflate', 'not applied: hypervisor.readonly = true (observe only)']);
});

test('observe-only writes nothing to the host either: KSM knobs are decided and logged, not written, and not "restored" at stop', async () => {
  const hv = new FakeHypervisor([]);
  const ksm = new FakeKsm();
  const policy: FnPolicy = (host) => ({ host: { controls: { ksm_run: 1, ksm_pages_to_scan: 300 }, vars: host.vars } });
  const ksmSource: HostSource = { name: 'ksm', collect: () => ksm.read() };
  const { engine, logger } = makeEngine(hv, policy, { ksm, hostSources: [ksmSource], readOnly: 'hypervisor.readonly = true (observe only)' });
  await engine.collect();
  const r = await engine.evaluateAndAct();
  assert.deepEqual(ksm.writes, [], 'nothing written');
  assert.equal(r.outcomes.length, 0);
  const run = r.notes.find((n) => n.control === 'ksm_run')!;
  assert.equal(run.verdict, 'veto');
  assert.equal(run.reasons.at(-1), 'not applied: hypervisor.readonly = true (observe only)');
  // At stop the KSM module puts back nothing: it changed nothing.
  hv.capabilities = { ...hv.capabilities, ksm };
  const inst = ksmModule.setup({ hypervisor: hv, readOnly: 'observe only', lookup: () => undefined, log: logger }, ksmSection.parse({}));
  assert.ok(typeof inst !== 'string');
  await inst.remember?.();
  assert.equal(await inst.restore?.(), undefined);
  assert.deepEqual(ksm.writes, [], 'nothing put back at stop: nothing was changed');
});

test('a controller turned off by config: its controls are noted quietly, never written', async () => {
  const hv = new FakeHypervisor([guest('a')]);
  const ksm = new FakeKsm();
  const policy: FnPolicy = (host, guests) => ({
    host: { controls: { ksm_run: 1 }, vars: host.vars },
    guests: guests.map((g) => ({ name: String(g.props.name), controls: { mem_high: 1500 * MiB }, vars: g.vars })),
  });
  const { engine, logger } = makeEngine(hv, policy, { ksm, sections: { ksm: { enabled: false } } });
  await engine.collect();
  const r = await engine.evaluateAndAct();
  assert.deepEqual(r.notes.map((n) => `${n.control}:${n.verdict}:${n.quiet}`).sort(), ['ksm_run:veto:true', 'mem_high:veto:true']);
  assert.equal(ksm.writes.length, 0);
  assert.equal(engine.counters.vetoes, 0);
  assert.ok(!logger.records.some((x) => x.event === 'veto' && x.level !== 'debug'), 'nothing above debug');
  assert.equal(logger.records.filter((x) => x.level === 'debug' && x.control === 'ksm_run').length, 1);
});

test('cycle listeners get every report; a throwing listener is logged, not fatal', async () => {
  const hv = new FakeHypervisor([guest('a')]);
  const { engine, logger } = makeEngine(
    hv,
    targetPolicy(() => undefined),
  );
  const seen: number[] = [];
  const off = engine.onCycle((r) => seen.push(r.cycle));
  engine.onCycle(() => {
    throw new Error('view crashed');
  });
  await engine.collect();
  await engine.evaluateAndAct();
  off();
  await engine.evaluateAndAct();
  assert.deepEqual(seen, [1]);
  assert.equal(logger.records.filter((x) => x.event === 'listener_error').length, 2);
});

test('a policy error that repeats every cycle is warned once, then counted at debug', async () => {
  const hv = new FakeHypervisor([guest('a')]);
  const policy: FnPolicy = (_host, _guests) => ({ errors: [{ message: "Field 'bogus' is not declared in any collector", line: 3, col: 9, guest: 'a' }] });
  const { engine, logger } = makeEngine(hv, policy);
  await engine.collect();
  for (let i = 0; i < 3; i++) await engine.evaluateAndAct();
  const errs = logger.records.filter((x) => x.event === 'policy_error');
  assert.deepEqual(
    errs.map((x) => x.level),
    ['warn', 'debug', 'debug'],
  );
  assert.equal(engine.counters.policyErrors, 3);
  engine.setPolicy(policy); // a reloaded policy: warned again
  await engine.evaluateAndAct();
  assert.equal(logger.records.filter((x) => x.event === 'policy_error').at(-1)!.level, 'warn');
});

test('a failing host source is logged when it starts failing and when it recovers, with a count, not every collection', async () => {
  let fail = true;
  const flaky: HostSource = {
    name: 'flaky',
    collect: async () => {
      if (fail) throw new Error('EBUSY');
      return { mem_free: 1 };
    },
  };
  const logger = memoryLogger();
  const engine = new Engine<FnPolicy>({ hypervisor: new FakeHypervisor([]), hostSources: [flaky], policy: null, evaluate: evaluateFn, logger });
  for (let i = 0; i < 5; i++) await engine.collect();
  fail = false;
  await engine.collect();
  await engine.collect();
  assert.equal(logger.records.filter((r) => r.event === 'source_error').length, 1);
  const rec = logger.records.filter((r) => r.event === 'source_recovered');
  assert.equal(rec.length, 1);
  assert.equal(rec[0]!.failed_collections, 5);
  assert.equal(engine.counters.sourceErrors, 5, 'still counted');
});

test('a failing hypervisor is logged when it starts failing, when its error changes and when it recovers, not every collection', async () => {
  const hv = new FakeHypervisor([guest('a')]);
  const logger = memoryLogger();
  const engine = new Engine<FnPolicy>({ hypervisor: hv, hostSources: [], policy: null, evaluate: evaluateFn, logger });
  await engine.collect();
  hv.failCollect = 'libvirtd not connected';
  for (let i = 0; i < 4; i++) await engine.collect();
  hv.failCollect = 'connection refused';
  await engine.collect();
  hv.failCollect = undefined;
  await engine.collect();
  await engine.collect();
  assert.deepEqual(
    logger.records.filter((r) => r.event === 'collect_error').map((r) => r.error),
    ['libvirtd not connected', 'connection refused'],
  );
  const rec = logger.records.filter((r) => r.event === 'collect_recovered');
  assert.equal(rec.length, 1);
  assert.equal(rec[0]!.failed_collections, 5);
  assert.equal(engine.counters.driverErrors, 5, 'still counted');
});

test('EPERM on KSM: reported, retried with backoff (30 s, doubling), the balloons go on; success clears it', async () => {
  const hv = new FakeHypervisor([guest('a')]);
  const ksm = new FakeKsm();
  ksm.fail = "EPERM: operation not permitted, open '/sys/kernel/mm/ksm/run'";
  const both: FnPolicy = (_host, guests) => ({
    host: { controls: { ksm_run: 1 }, vars: {} },
    guests: guests.map((g) => ({ name: String(g.props.name), controls: { balloon_target: (g.stats.at(-1)!.balloon_cur as number) - 10 * MiB }, vars: {} })),
  });
  const { engine, logger, tick } = makeEngine(hv, both, { ksm, safeguards: { minGuestKiB: 256 * MiB, headroomKiB: 64 * MiB, rollbackWindow: 0 } });
  const ksmResults: string[] = [];
  for (let i = 0; i < 12; i++) {
    // t = 0, 10, ..., 110
    await engine.collect();
    const r = await engine.evaluateAndAct();
    ksmResults.push(r.outcomes.find((o) => o.action.control === 'ksm_run')!.result);
    tick(10);
  }
  // Tried at t=0 (fails, next at 30), t=30 (fails, next at 90), t=90 (fails, next at 210).
  assert.deepEqual(
    ksmResults.map((r, i) => `${i * 10}:${r}`).filter((x) => x.endsWith('failed')),
    ['0:failed', '30:failed', '90:failed'],
  );
  assert.equal(ksmResults.filter((r) => r === 'deferred').length, 9);
  assert.equal(engine.counters.deferred, 9);
  assert.equal(hv.setCalls.length, 12, 'the balloon moved every cycle meanwhile');
  assert.equal(logger.records.filter((r) => r.event === 'action_failed' && r.level === 'error').length, 1, 'reported once at error');
  assert.ok(!engine.snapshot().recent.some((a) => a.result === 'deferred'), 'deferrals do not crowd out the recent actions');
  ksm.fail = undefined;
  tick(100); // t = 220: past the backoff
  await engine.collect();
  const ok = await engine.evaluateAndAct();
  assert.equal(ok.outcomes.find((o) => o.action.control === 'ksm_run')!.result, 'applied');
  assert.equal(ksm.state.run, 1);
});

test('a failed inflation backs off, but a deflation (giving memory back) is always tried', async () => {
  const hv = new FakeHypervisor([guest('a', { balloon_cur: 1536 * MiB })]);
  let want = -10 * MiB;
  const policy = targetPolicy((s) => (s.balloon_cur as number) + want);
  const { engine, tick } = makeEngine(hv, policy, { safeguards: { minGuestKiB: 256 * MiB, headroomKiB: 64 * MiB, rollbackWindow: 0 } });
  hv.failSet.set('id-a', 'balloon device busy');
  await engine.collect();
  assert.equal((await engine.evaluateAndAct()).outcomes[0]!.result, 'failed');
  tick(10);
  await engine.collect();
  assert.equal((await engine.evaluateAndAct()).outcomes[0]!.result, 'deferred', 'inflating again waits');
  want = 10 * MiB;
  hv.failSet.delete('id-a');
  tick(10);
  await engine.collect();
  assert.equal((await engine.evaluateAndAct()).outcomes[0]!.result, 'applied', 'deflating is not held back');
});

test('log volume: a cycle with many actions is summarized at info (each action at debug); a repeated veto is said once', async () => {
  const many = Array.from({ length: 40 }, (_, i) => guest(`g${i}`));
  const hv = new FakeHypervisor(many);
  const { engine, logger } = makeEngine(
    hv,
    targetPolicy((s) => (s.balloon_cur as number) - 100 * MiB),
  );
  await engine.collect();
  await engine.evaluateAndAct();
  const info = logger.records.filter((r) => r.level !== 'debug');
  assert.equal(info.filter((r) => r.event === 'action').length, 0, 'no per-action info lines at 40 guests');
  const summary = info.find((r) => r.event === 'cycle_summary')!;
  assert.deepEqual(summary.actions, { 'balloon_target:applied': 40 });
  assert.equal((summary.biggest as unknown[]).length, 5);
  assert.equal(logger.records.filter((r) => r.event === 'action' && r.level === 'debug').length, 40, 'each still at debug');

  // A policy asking below the floor every cycle: the veto is logged at info once.
  const hv2 = new FakeHypervisor([guest('a', { balloon_cur: 300 * MiB, mem_unused: 10 * MiB })]);
  const two = makeEngine(
    hv2,
    targetPolicy(() => 'lots' as unknown as number),
  );
  for (let i = 0; i < 4; i++) {
    await two.engine.collect();
    await two.engine.evaluateAndAct();
    two.tick();
  }
  const vetoes = two.logger.records.filter((r) => r.event === 'veto');
  assert.ok(vetoes.length >= 4, `a veto every cycle (${vetoes.length})`);
  assert.equal(vetoes.filter((r) => r.level === 'info').length, 1, 'said once at info');
});

test('guard pass between policy cycles: a guest whose use jumps above its floor is raised at once, with no policy evaluated and the cycle number kept', async () => {
  const hv = new FakeHypervisor([guest('a'), guest('b')]);
  let evaluations = 0;
  const inflate = targetPolicy((s) => (s.balloon_cur as number) - 1000 * MiB);
  const counting: FnPolicy = (...args) => {
    evaluations++;
    return inflate(...args);
  };
  const { engine, logger, tick } = makeEngine(hv, counting, { safeguards: { minGuestKiB: 256 * MiB, headroomKiB: 64 * MiB, maxStepFraction: 1 } });
  const cycles: boolean[] = [];
  engine.onCycle((r) => cycles.push(r.guardPass === true));
  await engine.collect();
  await engine.evaluateAndAct();
  const a = hv.guests.get('id-a')!;
  assert.equal(a.stats.balloon_cur, 1088 * MiB, 'inflated by the policy to its floor, used 1024 MiB + 64 MiB headroom');
  // Nothing below a floor: the pass does nothing and says nothing.
  tick(2);
  await engine.collect();
  assert.equal(await engine.guardPass(), null);
  // Guest a's workload takes its last 64 MiB: its floor (used + headroom) is now above its balloon.
  a.stats.mem_unused = 0;
  tick(2);
  await engine.collect();
  const setsBefore = hv.setCalls.length;
  const r = await engine.guardPass();
  assert.ok(r, 'the guard pass acted');
  assert.equal(r.guardPass, true);
  assert.equal(r.evaluated, false);
  assert.equal(r.cycle, 1, 'a guard pass is not a policy cycle');
  assert.equal(engine.counters.cycles, 1);
  assert.equal(evaluations, 1, 'no policy evaluated');
  assert.deepEqual(hv.setCalls.slice(setsBefore), [{ id: 'id-a', target: 1152 * MiB }], 'only a, raised to used + headroom');
  assert.match(r.outcomes[0]!.action.reasons.join(' '), /below floor: raised to 1152 MiB/);
  assert.ok(
    logger.records.some((x) => x.event === 'action' && x.entity === 'a' && x.cycle === 1 && x.guard_pass === true),
    'logged as a guard pass',
  );
  assert.equal(engine.recentActions().at(-1)!.guardPass, true);
  assert.equal(engine.recentActions()[0]!.guardPass, undefined, "the policy cycle's own action is not marked");
  assert.deepEqual(cycles, [false, true], 'cycle listeners hear the pass, marked');
  // Paused (observe only): the guards alone never act either.
  a.stats.mem_unused = 0;
  a.stats.balloon_cur = 600 * MiB;
  engine.pausedReason = 'paused by test';
  tick(2);
  await engine.collect();
  assert.equal(await engine.guardPass(), null);
  assert.equal(hv.guests.get('id-a')!.stats.balloon_cur, 600 * MiB);
});

test('guard pass: a guest a few MiB below its floor waits for the policy cycle; one with under half its headroom left does not', async () => {
  const hv = new FakeHypervisor([guest('a')]);
  const { engine, tick } = makeEngine(
    hv,
    targetPolicy(() => undefined),
    { safeguards: { minGuestKiB: 256 * MiB, headroomKiB: 64 * MiB } },
  );
  const a = hv.guests.get('id-a')!;
  // At 1088 MiB with 1024 MiB used its floor is met exactly; its use then wobbles up 8 MiB.
  a.stats.balloon_cur = 1088 * MiB;
  a.stats.mem_unused = 56 * MiB;
  await engine.collect();
  assert.equal(await engine.guardPass(), null, '8 MiB below the floor, 56 MiB of headroom left: not urgent');
  const r = await engine.evaluateAndAct();
  assert.deepEqual(
    r.outcomes.map((o) => o.action.to),
    [1096 * MiB],
    'the policy cycle raises it to its floor',
  );
  // Its use jumps by 40 MiB: 24 MiB of its 64 MiB headroom left, under half.
  a.stats.mem_unused = 24 * MiB;
  tick(2);
  await engine.collect();
  const g = await engine.guardPass();
  assert.deepEqual(
    g?.outcomes.map((o) => o.action.to),
    [1136 * MiB],
    'the guard pass raises it at once',
  );
});

test("page cache and the host: the balloon leaves a guest's cache while the host is calm with swap room, and takes it once the host stalls", async () => {
  const hv = new FakeHypervisor([guest('a', { mem_unused: 40 * MiB, mem_usable: 1240 * MiB })]);
  const host = { psi_some_avg60: 0.3, swap_total: 1024 * MiB, swap_usage: 100 * MiB, anon_huge_pages: 800 * MiB };
  const { engine, logger, tick } = makeEngine(
    hv,
    targetPolicy(() => 1024 * MiB),
    { hostSources: [hostSource(), { name: 'fake-host-state', collect: async () => ({ ...host }) }] },
  );
  await engine.collect();
  const calm = await engine.evaluateAndAct();
  assert.equal(calm.outcomes.length, 0, 'nothing taken from the cache');
  assert.deepEqual(hv.setCalls, []);
  assert.ok(
    calm.notes.some((n) =>
      n.reasons.some((r) => r.startsWith('page cache left to the host') && r.includes('the host is not stalling on memory (psi some avg60 0.3% < 2%)')),
    ),
    JSON.stringify(calm.notes),
  );
  // The host starts stalling: its swap is slow or what it swaps is hot. One cache step a cycle.
  host.psi_some_avg60 = 8;
  tick();
  await engine.collect();
  const stalled = await engine.evaluateAndAct();
  assert.equal(stalled.outcomes.length, 1);
  assert.equal(stalled.outcomes[0]!.action.to, 2048 * MiB - Math.floor(0.05 * 2048 * MiB));
  assert.ok(logger.records.some((x) => x.event === 'action' && String(x.reason).includes('page cache taken at most')));
});

test('KSM and the host: a policy that starts KSM is held while the host can wait, and starts it once the host stalls', async () => {
  const hv = new FakeHypervisor([]);
  const ksm = new FakeKsm();
  const host = { psi_some_avg60: 0.3, swap_total: 1024 * MiB, swap_usage: 100 * MiB, anon_huge_pages: 800 * MiB };
  const policy: FnPolicy = (h) => ({ host: { controls: { ksm_run: 1 }, vars: h.vars } });
  const { engine, tick } = makeEngine(hv, policy, {
    ksm,
    hostSources: [
      { name: 'ksm', collect: () => ksm.read() },
      { name: 'fake-host-state', collect: async () => ({ ...host }) },
    ],
  });
  await engine.collect();
  const calm = await engine.evaluateAndAct();
  assert.deepEqual(ksm.writes, [], 'KSM not started');
  assert.deepEqual(
    calm.outcomes.map((o) => [o.action.to, o.result]),
    [[0, 'unchanged']],
  );
  assert.ok(calm.outcomes[0]!.action.reasons.at(-1)!.startsWith('not started: the host is not stalling on memory'));
  host.psi_some_avg60 = 8;
  tick();
  await engine.collect();
  await engine.evaluateAndAct();
  assert.deepEqual(ksm.writes, [{ run: 1 }], 'the host stalls: KSM starts');
});
