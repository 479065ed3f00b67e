// The one loop: the same collect/cycle cadence in simulated time (runFor) and real time (start),
// with the loop's events seen by subscribers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Loop, type Steppable } from '../../../src/engine/loop.js';
import type { CollectReport, CycleReport } from '../../../src/engine/engine.js';

function fake(clock: { t: number }) {
  const log: string[] = [];
  const collected = new Set<(r: CollectReport) => void>();
  const cycled = new Set<(r: CycleReport) => void>();
  const e: Steppable = {
    collect: async () => {
      log.push(`c${clock.t}`);
      const r = { time: clock.t, guests: 0, appeared: [], vanished: [], errors: [] } as CollectReport;
      for (const l of collected) l(r);
      return r;
    },
    evaluateAndAct: async () => {
      log.push(`p${clock.t}`);
      const r = { cycle: log.length, time: clock.t } as unknown as CycleReport;
      for (const l of cycled) l(r);
      return r;
    },
    onCollect: (l) => {
      collected.add(l);
      return () => collected.delete(l);
    },
    onCycle: (l) => {
      cycled.add(l);
      return () => cycled.delete(l);
    },
  };
  return { e, log };
}

test('runFor: a collection at the start and every stats interval, a cycle every policy interval, events to subscribers', async () => {
  const clock = { t: 0 };
  const { e, log } = fake(clock);
  const loop = new Loop(e, {
    statsIntervalS: 5,
    policyIntervalS: 10,
    advance: (dt) => {
      clock.t += dt;
    },
  });
  let collects = 0;
  let cycles = 0;
  loop.onCollect(() => collects++);
  const off = loop.onCycle(() => cycles++);
  await loop.runFor(30, () => clock.t);
  assert.deepEqual(log, ['c0', 'c5', 'c10', 'p10', 'c15', 'c20', 'p20', 'c25', 'c30', 'p30']);
  assert.equal(collects, 7);
  assert.equal(cycles, 3);
  off();
  await loop.runFor(10, () => clock.t);
  assert.equal(cycles, 3, 'unsubscribed');
  await assert.rejects(
    new Loop(e, { statsIntervalS: 5, policyIntervalS: 10 }).runFor(10, () => 0),
    /simulated clock/,
  );
  assert.throws(() => new Loop(e, { statsIntervalS: 0, policyIntervalS: 10 }), /positive/);
});

test('start/stop: real timers, scaled for a simulated host at speed, the world advanced by one stats interval per collection', async () => {
  const clock = { t: 0 };
  const { e, log } = fake(clock);
  const loop = new Loop(e, {
    statsIntervalS: 5,
    policyIntervalS: 10,
    timeScale: 100,
    advance: (dt) => {
      clock.t += dt;
    },
  });
  loop.start();
  await new Promise((r) => setTimeout(r, 330));
  await loop.stop();
  const c = log.filter((x) => x.startsWith('c')).length;
  const p = log.filter((x) => x.startsWith('p')).length;
  assert.ok(c >= 3, `collections every 50 ms: ${c}`);
  assert.ok(p >= 1 && p <= c, `cycles every 100 ms: ${p}`);
  assert.equal(clock.t, c * 5, 'each collection moved the simulated clock by 5 s');
  const n = log.length;
  await new Promise((r) => setTimeout(r, 120));
  assert.equal(log.length, n, 'nothing after stop');
});

test('runFor: the guards run alone after each collection that no policy cycle follows', async () => {
  const clock = { t: 0 };
  const { e, log } = fake(clock);
  e.guardPass = async () => {
    log.push(`g${clock.t}`);
    return null;
  };
  const loop = new Loop(e, { statsIntervalS: 2, policyIntervalS: 4, advance: (dt) => (clock.t += dt) });
  await loop.runFor(8, () => clock.t);
  assert.deepEqual(log, ['c0', 'c2', 'g2', 'c4', 'p4', 'c6', 'g6', 'c8', 'p8']);
});

test('start: real timers run the guards after a collection, unless a policy cycle is queued behind it', async () => {
  for (const slowCollect of [false, true]) {
    const clock = { t: 0 };
    const { e, log } = fake(clock);
    const collect = e.collect;
    // A collection slower than the policy interval: the policy tick is always queued behind it.
    if (slowCollect)
      e.collect = async () => {
        await new Promise((r) => setTimeout(r, 60));
        return collect();
      };
    e.guardPass = async () => {
      log.push(`g${clock.t}`);
      return null;
    };
    const loop = new Loop(e, { statsIntervalS: 5, policyIntervalS: slowCollect ? 2.5 : 1000, timeScale: 100, advance: (dt) => (clock.t += dt) });
    loop.start();
    await new Promise((r) => setTimeout(r, 400));
    await loop.stop();
    const guards = log.filter((x) => x.startsWith('g')).length;
    const collects = log.filter((x) => x.startsWith('c')).length;
    if (slowCollect) {
      assert.ok(collects >= 2, log.join(' '));
      assert.equal(guards, 0, `a cycle queued behind each collection runs the guards itself: ${log.join(' ')}`);
    } else {
      assert.ok(collects >= 3, log.join(' '));
      assert.equal(guards, collects, `no cycle due: a pass after every collection: ${log.join(' ')}`);
      for (let i = 0; i < log.length; i++) if (log[i]!.startsWith('g')) assert.match(log[i - 1]!, /^c/, 'a pass follows its collection');
    }
  }
});

test('start: a calm engine is collected every calmStride-th interval, peeked at in between, at once when the host moved; a cycle with nothing new is skipped', async (t) => {
  t.mock.timers.enable({ apis: ['setInterval'] });
  const clock = { t: 0 };
  const { e, log } = fake(clock);
  let calm = false;
  let moved: string | null = null;
  e.calm = () => calm;
  e.peek = async () => {
    log.push(`k${clock.t}`);
    return moved;
  };
  const loop = new Loop(e, { statsIntervalS: 1, policyIntervalS: 2, calmStride: 3 });
  const flush = async () => {
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  };
  const ticks = async (n: number) => {
    for (let i = 0; i < n; i++) {
      clock.t++;
      t.mock.timers.tick(1000);
      await flush();
    }
  };
  loop.start();
  await flush();
  await ticks(2);
  assert.deepEqual(log.splice(0), ['c0', 'c1', 'c2', 'p2'], 'not calm: every interval');
  assert.equal(loop.calm, false);
  calm = true;
  assert.equal(loop.calm, true, 'health shows the calm cadence');
  assert.equal(new Loop(e, { statsIntervalS: 1, policyIntervalS: 2, calmStride: 1 }).calm, false, 'stride 1: never calm');
  await ticks(6);
  // The cycle at t4 has no new sample and is skipped; t6's evaluates t5's collection.
  assert.deepEqual(log.splice(0), ['k3', 'k4', 'c5', 'k6', 'p6', 'k7', 'c8', 'p8'], 'calm: a collection every 3rd interval');
  moved = 'free memory fell';
  await ticks(1);
  assert.deepEqual(log.splice(0), ['k9', 'c9'], 'the host moved: collected at once');
  assert.equal(loop.lastWake, 'free memory fell');
  moved = null;
  calm = false;
  await ticks(1);
  assert.deepEqual(log.splice(0), ['c10', 'p10'], 'no longer calm: every interval again');
  await loop.stop();
});

test('start: a simulated host is never slowed by calm (its clock moves with the collections)', async () => {
  const clock = { t: 0 };
  const { e, log } = fake(clock);
  e.calm = () => true;
  e.peek = async () => null;
  const loop = new Loop(e, { statsIntervalS: 5, policyIntervalS: 1000, timeScale: 100, calmStride: 3, advance: (dt) => (clock.t += dt) });
  loop.start();
  await new Promise((r) => setTimeout(r, 250));
  await loop.stop();
  const c = log.filter((x) => x.startsWith('c')).length;
  assert.ok(c >= 3, `collections every 50 ms: ${log.join(' ')}`);
  assert.equal(clock.t, c * 5);
});
