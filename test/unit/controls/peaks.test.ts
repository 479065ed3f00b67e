// Floors that remember: a guest's peak use stays in its balloon floor for the peak window, so a
// periodic workload is squeezed at most once per peak it has shown.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addPeak, recentPeak } from '../../../src/controls/peaks.js';
import { Engine } from '../../../src/engine/engine.js';
import { memoryLogger } from '../../../src/log/logger.js';
import { evaluateFn, FakeHypervisor, guest, MiB, targetPolicy } from '../engine/fakes.js';

test('peaks: the most used in the window, with and without page cache; older buckets are forgotten', () => {
  const s = (cur: number, unused: number, usable: number | null) => ({
    balloon_cur: cur * MiB,
    mem_unused: unused * MiB,
    mem_usable: usable === null ? null : usable * MiB,
  });
  let p = addPeak(undefined, s(2048, 1048, 1248), 0, 800);
  p = addPeak(p, s(2048, 348, 548), 50, 800); // a peak: 1700 used, 1500 without cache
  p = addPeak(p, s(2048, 1548, 1748), 300, 800);
  assert.deepEqual(recentPeak(p, 300, 800), { used: 1700 * MiB, anon: 1500 * MiB });
  // 900 s later the peak's bucket is out of the window; the later low remains.
  p = addPeak(p, s(2048, 1548, 1748), 1000, 800);
  assert.deepEqual(recentPeak(p, 1000, 800), { used: 500 * MiB, anon: 300 * MiB });
  assert.ok(p!.length <= 9, `a few buckets (${p!.length})`);
  assert.equal(addPeak(p, s(2048, 100, 200), 1010, 0), undefined, 'window 0: nothing remembered');
  assert.equal(recentPeak(p, 1010, 0), undefined);
});

test('engine: a guest whose squeeze was rolled back keeps its peak in its floor for peak_hold; one that never hurt is squeezed each idle phase', async () => {
  const hv = new FakeHypervisor([guest('vm', { mem_unused: 548 * MiB, mem_usable: null })]);
  const g = hv.guests.get('id-vm')!;
  let t = 0;
  const engine = new Engine({
    hypervisor: hv,
    hostSources: [],
    policy: targetPolicy(() => 256 * MiB),
    evaluate: evaluateFn,
    logger: memoryLogger(),
    now: () => t,
    safeguards: {
      minGuestKiB: 256 * MiB,
      headroomKiB: 64 * MiB,
      maxStepFraction: 1,
      cacheStepFraction: null,
      peakWindowS: 600,
      peakHoldS: 1800,
      rollbackBackoffS: 0,
      externalHoldS: 0,
    },
  });
  const used = (mib: number) => {
    g.stats.mem_unused = Math.max(0, (g.stats.balloon_cur as number) - mib * MiB);
  };
  const balloonAction = (r: Awaited<ReturnType<typeof engine.evaluateAndAct>>) => r.outcomes.find((o) => o.action.control === 'balloon_target');
  // A peak of 1.5 GiB, then idle at 200 MiB: squeezed to its use (nothing has hurt yet).
  await engine.collect();
  t += 10;
  used(200);
  await engine.collect();
  assert.equal(balloonAction(await engine.evaluateAndAct())?.action.to, 264 * MiB, 'squeezed once');
  // The peak comes back into the squeezed guest: it swaps, and the inflation is rolled back.
  t += 10;
  g.stats.swap_in = (g.stats.swap_in as number) + 200 * MiB;
  await engine.collect();
  const rb = balloonAction(await engine.evaluateAndAct());
  assert.match(rb!.action.reasons[0]!, /^rollback/);
  // Idle again: now its floor keeps the peak it came back to.
  t += 10;
  g.stats.balloon_cur = 2048 * MiB;
  used(200);
  await engine.collect();
  const held = balloonAction(await engine.evaluateAndAct());
  assert.equal(held?.action.to, 1500 * MiB, 'down to the peak only (no headroom on top of a peak)');
  assert.ok(
    held!.action.reasons.some((x) => x.includes('peak use of the last 10 min')),
    held!.action.reasons.join('; '),
  );
  // Past the window without the peak coming back: down to what it uses now.
  for (let i = 0; i < 8; i++) {
    t += 100;
    used(200);
    await engine.collect();
  }
  assert.equal(balloonAction(await engine.evaluateAndAct())?.action.to, 264 * MiB, 'the idle guest: used 200 MiB + headroom');
  // Still within peak_hold (1,800 s after the rollback): a peak that comes back is kept again,
  // without a second rollback.
  const peakThenIdle = async () => {
    t += 10;
    g.stats.balloon_cur = 2048 * MiB;
    used(1200);
    await engine.collect();
    t += 10;
    used(200);
    await engine.collect();
    return balloonAction(await engine.evaluateAndAct())?.action.to;
  };
  assert.ok(t < 1800, `t=${t}`);
  assert.equal(await peakThenIdle(), 1200 * MiB, 'a returning peak is kept during the hold');
  // After the hold, a guest that never hurt again is squeezed in its idle phase.
  t = 1900;
  assert.equal(await peakThenIdle(), 264 * MiB, 'the hold is over');
});

test('another manager: a balloon moved away from the target ballast set is left alone for safeguards.external_hold, said once, shown in the views', async () => {
  const hv = new FakeHypervisor([guest('vm', { mem_unused: 1848 * MiB, mem_usable: null })]);
  const g = hv.guests.get('id-vm')!;
  let t = 0;
  const logger = memoryLogger();
  const engine = new Engine({
    hypervisor: hv,
    hostSources: [],
    policy: targetPolicy(() => 1024 * MiB),
    evaluate: evaluateFn,
    logger,
    now: () => t,
    safeguards: { minGuestKiB: 256 * MiB, headroomKiB: 64 * MiB, maxStepFraction: 1, cacheStepFraction: null, externalHoldS: 300 },
  });
  await engine.collect();
  const first = await engine.evaluateAndAct();
  assert.equal(first.outcomes.find((o) => o.action.control === 'balloon_target')?.action.to, 1024 * MiB);
  t += 5;
  await engine.collect(); // the balloon at ballast's target
  // An admin's `virsh setmem` to 1800 MiB: away from ballast's 1024 MiB target.
  t += 5;
  g.stats.balloon_cur = 1800 * MiB;
  g.stats.mem_unused = 1600 * MiB;
  await engine.collect();
  assert.equal(logger.records.filter((r) => r.event === 'balloon_moved_externally').length, 1, 'said once');
  const view = engine.snapshot().guests[0]!;
  assert.deepEqual(
    view.movedByOther && { from: view.movedByOther.from, to: view.movedByOther.to, ours: view.movedByOther.ours, until: view.movedByOther.until },
    {
      from: 1024 * MiB,
      to: 1800 * MiB,
      ours: 1024 * MiB,
      until: 310,
    },
  );
  const calls = hv.setCalls.length;
  for (let i = 0; i < 10; i++) {
    t += 20;
    await engine.collect();
    const r = await engine.evaluateAndAct();
    assert.ok(r.notes.some((n) => n.control === 'balloon_target' && n.verdict === 'veto' && n.reasons[0]!.includes('another manager')));
  }
  assert.equal(hv.setCalls.length, calls, 'not fought while held');
  assert.equal(logger.records.filter((r) => r.event === 'balloon_moved_externally').length, 1, 'still said once');
  // After the hold ballast manages it again, from where the other left it.
  t += 200;
  await engine.collect();
  const back = await engine.evaluateAndAct();
  assert.equal(back.outcomes.find((o) => o.action.control === 'balloon_target')?.action.from, 1800 * MiB);
  assert.equal(engine.snapshot().guests[0]!.movedByOther, undefined);
  // The balloon converging toward ballast's own target is not another manager.
  t += 5;
  g.stats.balloon_cur = 1500 * MiB;
  await engine.collect();
  assert.equal(logger.records.filter((r) => r.event === 'balloon_moved_externally').length, 1);
});

test('movedByOther: a balloon that lands between ballast recent targets is converging; beyond them it was moved by someone else', async () => {
  const { movedByOther } = await import('../../../src/controls/balloon/index.js');
  const { defaultSafeguards } = await import('../../../src/controls/balloon/guard.js');
  const MiB = 1024;
  const st = { guard: { holdUntil: 0 } as never, lastTarget: 211 * MiB, earlierTargets: [205 * MiB] };
  const at = (kib: number) => ({ balloon_cur: kib, balloon_max: 384 * MiB });
  // Ballast set 205 MiB, then raised it to 211 MiB while the driver was still inflating: it
  // reaches 205 first (a lab run saw exactly this).
  assert.equal(movedByOther(st, at(215 * MiB), at(205 * MiB), 10, defaultSafeguards), undefined);
  // Below every recent target: someone else inflated it.
  const other = movedByOther(st, at(215 * MiB), at(180 * MiB), 10, defaultSafeguards);
  assert.equal(other?.to, 180 * MiB);
  // Without earlier targets the old rule holds: away from the last one is someone else.
  assert.ok(movedByOther({ ...st, earlierTargets: undefined }, at(215 * MiB), at(205 * MiB), 10, defaultSafeguards));
});
