// What an inflation really returned: QEMU's resident memory between two samples, capped at
// the balloon's shrink; a guest whose inflations return little is reported once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addReturn, ineffective, inflationStep, QEMU_ALLOWANCE_KIB } from '../../../src/controls/balloon/returns.js';
import { Engine } from '../../../src/engine/engine.js';
import { memoryLogger } from '../../../src/log/logger.js';
import { evaluateFn, FakeHypervisor, guest, MiB, targetPolicy } from '../engine/fakes.js';

test('inflationStep: only inflations count; the return is the rss fall, at most the shrink; expected is what was resident beyond the new size', () => {
  const A = QEMU_ALLOWANCE_KIB;
  // Fully touched guest: rss = its memory + QEMU's own; everything the balloon takes should come back.
  assert.deepEqual(inflationStep({ balloon_cur: 1000, rss: 1000 + A }, { balloon_cur: 800, rss: 850 + A }), {
    inflatedKiB: 200,
    returnedKiB: 150,
    expectedKiB: 200,
  });
  assert.deepEqual(
    inflationStep({ balloon_cur: 1000, rss: 1000 + A }, { balloon_cur: 800, rss: 500 }),
    { inflatedKiB: 200, returnedKiB: 200, expectedKiB: 200 },
    'capped at the shrink',
  );
  assert.deepEqual(
    inflationStep({ balloon_cur: 1000, rss: 1000 + A }, { balloon_cur: 800, rss: 1100 + A }),
    { inflatedKiB: 200, returnedKiB: 0, expectedKiB: 200 },
    'rss rose: nothing came back',
  );
  // A guest that touched only 850 of its 1000: 50 of the 200 were resident.
  assert.deepEqual(inflationStep({ balloon_cur: 1000, rss: 850 + A }, { balloon_cur: 800, rss: 800 + A }), {
    inflatedKiB: 200,
    returnedKiB: 50,
    expectedKiB: 50,
  });
  assert.deepEqual(
    inflationStep({ balloon_cur: 1000, rss: 300 }, { balloon_cur: 800, rss: 300 }),
    { inflatedKiB: 200, returnedKiB: 0, expectedKiB: 0 },
    'untouched memory: nothing to expect',
  );
  assert.equal(inflationStep({ balloon_cur: 800, rss: 900 }, { balloon_cur: 1000, rss: 700 }), null, 'a deflation');
  assert.equal(inflationStep({ balloon_cur: 1000 }, { balloon_cur: 800, rss: 700 }), null, 'rss unknown');
  assert.equal(inflationStep(undefined, { balloon_cur: 800, rss: 700 }), null);
  const t = addReturn(addReturn(undefined, { inflatedKiB: 64 * 1024, returnedKiB: 1024, expectedKiB: 64 * 1024 }), {
    inflatedKiB: 1024,
    returnedKiB: 1024,
    expectedKiB: 1024,
  });
  assert.deepEqual(t, { inflatedKiB: 65 * 1024, returnedKiB: 2048, expectedKiB: 65 * 1024 });
  assert.equal(ineffective(t), true);
  assert.equal(ineffective({ inflatedKiB: 32 * 1024, returnedKiB: 0, expectedKiB: 32 * 1024 }), false, 'too little to judge');
  assert.equal(ineffective({ inflatedKiB: 100 * 1024, returnedKiB: 30 * 1024, expectedKiB: 100 * 1024 }), false);
  assert.equal(ineffective({ inflatedKiB: 900 * 1024, returnedKiB: 0, expectedKiB: 0 }), false, 'ballooned untouched memory is not a failure');
});

test("the engine keeps each guest's totals and warns once when resident memory the balloon took did not come back", async () => {
  // "a" gives back what the balloon takes; "b"'s QEMU keeps its resident memory (huge pages);
  // "c" never touched most of its memory: nothing was resident to give back, no warning.
  const full = 2048 * MiB + QEMU_ALLOWANCE_KIB;
  const hv = new FakeHypervisor([guest('a', { rss: full }), guest('b', { rss: full }), guest('c', { rss: 600 * MiB })]);
  const logger = memoryLogger();
  let t = 0;
  const engine = new Engine({
    hypervisor: hv,
    hostSources: [],
    policy: targetPolicy((s) => (s.balloon_cur as number) - 100 * MiB),
    evaluate: evaluateFn,
    logger,
    now: () => t,
    safeguards: { minGuestKiB: 256 * MiB, headroomKiB: 64 * MiB },
  });
  const a = hv.guests.get('id-a')!;
  const before = hv.setBalloon.bind(hv);
  hv.setBalloon = async (id, target) => {
    const g = hv.guests.get(id)!;
    const shrink = (g.stats.balloon_cur as number) - target;
    await before(id, target);
    if (g === a) g.stats.rss = (g.stats.rss as number) - shrink;
  };
  for (let i = 0; i < 4; i++) {
    await engine.collect();
    await engine.evaluateAndAct();
    t += 5;
  }
  await engine.collect();
  const view = new Map(engine.snapshot().guests.map((g) => [g.name, g.balloonReturn]));
  assert.deepEqual(view.get('a'), { inflatedKiB: 400 * MiB, returnedKiB: 400 * MiB, expectedKiB: 400 * MiB });
  // b's rss stays at `full`: step k expects min(100, full - (2048 - 100k) - allowance) = 100 MiB each.
  assert.deepEqual(view.get('b'), { inflatedKiB: 400 * MiB, returnedKiB: 0, expectedKiB: 400 * MiB });
  assert.deepEqual(view.get('c'), { inflatedKiB: 400 * MiB, returnedKiB: 0, expectedKiB: 0 });
  const warned = logger.records.filter((r) => r.event === 'balloon_ineffective');
  assert.deepEqual(
    warned.map((r) => r.guest),
    ['b'],
    'once, for b only',
  );
});
