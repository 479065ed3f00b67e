import { test } from 'node:test';
import assert from 'node:assert/strict';
import { History } from '../../../src/engine/history.js';
import { balloonBounds, defaultSafeguards, guardBalloon, type SafeguardConfig } from '../../../src/controls/balloon/guard.js';
import { hostCanWait } from '../../../src/controls/floor.js';
import { guardCgroup } from '../../../src/controls/cgroup/guard.js';
import { guardKsm } from '../../../src/controls/ksm/guard.js';

const MiB = 1024;
const cfg: SafeguardConfig = {
  ...defaultSafeguards,
  minGuestKiB: 256 * MiB,
  headroomKiB: 64 * MiB,
  maxStepFraction: 0.1,
  minChangeKiB: 1024,
  minChangeFraction: 0.0025,
};

function hist(...samples: Record<string, number | null>[]): History {
  const h = new History(10);
  samples.forEach((s, i) => {
    h.push(s, i * 5);
  });
  return h;
}
const g = (o: Record<string, number | null> = {}) => ({
  balloon_cur: 2048 * MiB,
  balloon_max: 2048 * MiB,
  balloon_min: 0,
  mem_unused: 1024 * MiB,
  swap_in: 0,
  major_fault: 0,
  ...o,
});

test('floor is the largest of configured minimum, balloon_min and used + headroom', () => {
  const b1 = balloonBounds(g(), cfg);
  assert.ok(typeof b1 !== 'string');
  assert.equal(b1.floor, 1024 * MiB + 64 * MiB); // used 1 GiB + 64 MiB
  const b2 = balloonBounds(g({ mem_unused: 1900 * MiB }), cfg);
  assert.ok(typeof b2 !== 'string');
  assert.equal(b2.floor, 256 * MiB); // used 148 MiB + 64 < 256 minimum
  const b3 = balloonBounds(g({ mem_unused: 1900 * MiB, balloon_min: 512 * MiB }), cfg);
  assert.ok(typeof b3 !== 'string');
  assert.equal(b3.floor, 512 * MiB);
  const b4 = balloonBounds(g({ mem_unused: 0 }), cfg);
  assert.ok(typeof b4 !== 'string');
  assert.equal(b4.floor, 2048 * MiB, 'a floor above balloon_max is capped at balloon_max');
  assert.equal(balloonBounds(g({ balloon_max: null }), cfg), 'balloon_max unknown');
});

test('a request below the floor is clamped up and rate-limited, with reasons', () => {
  const d = guardBalloon({ history: hist(g()), requested: 100 * MiB, state: {}, cycle: 1, now: 10 }, cfg);
  assert.equal(d.verdict, 'apply');
  // floor 1088 MiB, but the step limit (10% of 2 GiB) stops at 2048 - 204.8 MiB
  assert.equal(d.target, 2048 * MiB - Math.floor(0.1 * 2048 * MiB));
  assert.ok(
    d.reasons.some((r) => r.startsWith('clamped up to floor')),
    d.reasons.join(),
  );
  assert.ok(
    d.reasons.some((r) => r.startsWith('rate-limited')),
    d.reasons.join(),
  );
  assert.deepEqual(d.next.lastInflation, { cycle: 1, at: 10, step: Math.floor(0.1 * 2048 * MiB) });
});

test('a request above balloon_max is clamped down', () => {
  const d = guardBalloon({ history: hist(g({ balloon_cur: 1500 * MiB, mem_unused: 500 * MiB })), requested: 9e9, state: {}, cycle: 1, now: 0 }, cfg);
  assert.equal(d.verdict, 'apply');
  assert.equal(d.target, 1500 * MiB + Math.floor(0.1 * 2048 * MiB));
  assert.ok(d.reasons.some((r) => r.startsWith('clamped down to balloon_max')));
});

test('tiny changes are skipped; a guest below its floor is raised at once', () => {
  const tiny = guardBalloon({ history: hist(g()), requested: 2048 * MiB - 512, state: {}, cycle: 1, now: 0 }, cfg);
  assert.equal(tiny.verdict, 'skip');
  // used = 1500 - 10 = 1490 MiB, floor = 1554 MiB: 54 MiB above balloon_cur, more than the
  // 1% step (20 MiB): the guest gets its floor at once anyway
  const small = { ...cfg, maxStepFraction: 0.01 };
  const low = guardBalloon({ history: hist(g({ balloon_cur: 1500 * MiB, mem_unused: 10 * MiB })), requested: 1000 * MiB, state: {}, cycle: 1, now: 0 }, small);
  assert.equal(low.verdict, 'apply');
  assert.equal(low.target, 1490 * MiB + 64 * MiB);
  assert.equal(low.reasons[0], 'policy asked to inflate', 'the reasons start with what the policy asked');
  assert.match(low.reasons[1]!, /^clamped up to floor 1554 MiB \(used 1490 MiB \+ headroom 64 MiB\)/);
  assert.ok(low.reasons.some((r) => r.startsWith('below floor')));
});

test('no inflation when used memory is unknown, the sample is stale, or during back-off', () => {
  const noStats = guardBalloon({ history: hist(g({ mem_unused: null })), requested: 1500 * MiB, state: {}, cycle: 1, now: 0 }, cfg);
  assert.equal(noStats.verdict, 'veto');
  assert.match(noStats.reasons[0]!, /memory use unknown/);
  const stale = guardBalloon({ history: hist(g()), requested: 1900 * MiB, stale: 'timeout', state: {}, cycle: 1, now: 0 }, cfg);
  assert.equal(stale.verdict, 'veto');
  const held = guardBalloon({ history: hist(g()), requested: 1900 * MiB, state: { holdUntil: 100 }, cycle: 1, now: 50 }, cfg);
  assert.equal(held.verdict, 'veto');
  assert.match(held.reasons[0]!, /backing off/);
  const after = guardBalloon({ history: hist(g()), requested: 1900 * MiB, state: { holdUntil: 100 }, cycle: 9, now: 100 }, cfg);
  assert.equal(after.verdict, 'apply', 'back-off over');
  const deflate = guardBalloon(
    { history: hist(g({ balloon_cur: 1800 * MiB, mem_unused: 800 * MiB })), requested: 1900 * MiB, state: { holdUntil: 100 }, cycle: 1, now: 50 },
    cfg,
  );
  assert.equal(deflate.verdict, 'apply', 'deflation is always allowed');
});

test('rollback: a swap-in spike after an inflation deflates by the last step and holds off', () => {
  const h = new History(10);
  h.push(g({ balloon_cur: 2048 * MiB, swap_in: 0 }), 0);
  h.push(g({ balloon_cur: 1848 * MiB, mem_unused: 824 * MiB, swap_in: 0 }), 5);
  h.push(g({ balloon_cur: 1848 * MiB, mem_unused: 824 * MiB, swap_in: 50_000 }), 10); // 10 MiB/s
  const state = { lastInflation: { cycle: 1, at: 3, step: 200 * MiB } };
  const d = guardBalloon({ history: h, requested: 1700 * MiB, state, cycle: 2, now: 10 }, cfg);
  assert.equal(d.verdict, 'rollback');
  assert.equal(d.target, 2048 * MiB);
  assert.match(d.reasons[0]!, /^rollback: swap_in 10000 KiB\/s > 4096 KiB\/s/);
  assert.equal(d.next.holdUntil, 10 + cfg.rollbackBackoffS);
  assert.equal(d.next.lastInflation, undefined);
  // outside the window: no rollback, the policy's request is handled normally
  const late = guardBalloon({ history: h, requested: 1848 * MiB, state, cycle: 1 + cfg.rollbackWindow + 1, now: 10 }, cfg);
  assert.notEqual(late.verdict, 'rollback');
  // major faults count too
  const h2 = new History(10);
  h2.push(g({ balloon_cur: 1848 * MiB, mem_unused: 824 * MiB, major_fault: 0 }), 4);
  h2.push(g({ balloon_cur: 1848 * MiB, mem_unused: 824 * MiB, major_fault: 10_000 }), 9);
  const d2 = guardBalloon({ history: h2, requested: undefined, state, cycle: 2, now: 9 }, cfg);
  assert.equal(d2.verdict, 'rollback');
  assert.match(d2.reasons[0]!, /major_fault 2000\/s/);
});

test('a guest that grew into its floor is raised to it when the policy asks nothing or its inflation is refused', () => {
  // Ballooned to 1200 MiB, then its use grew: 20 MiB unused, so the floor is 1180 + 64 MiB.
  const below = hist(g({ balloon_cur: 1200 * MiB, mem_unused: 20 * MiB }));
  const none = guardBalloon({ history: below, requested: undefined, state: {}, cycle: 3, now: 15 }, cfg);
  assert.equal(none.verdict, 'apply');
  assert.equal(none.target, 1244 * MiB);
  assert.deepEqual(none.reasons, ['no balloon_target', 'below floor: raised to 1244 MiB (used 1180 MiB + headroom 64 MiB) at once']);
  assert.equal(none.next.lastInflation, undefined, 'a raise is not an inflation to roll back');
  // Backing off after a rollback: the inflation is refused, the raise still happens.
  const held = guardBalloon({ history: below, requested: 1100 * MiB, state: { holdUntil: 100 }, cycle: 3, now: 15 }, cfg);
  assert.equal(held.verdict, 'apply');
  assert.equal(held.target, 1244 * MiB);
  assert.match(held.reasons[0]!, /^inflation refused: backing off after a rollback/);
  assert.equal(held.next.holdUntil, 100, 'the back-off stays');
  // Not on a stale sample, and not for less than the smallest change worth making.
  assert.equal(guardBalloon({ history: below, requested: undefined, stale: 'no update for 30 s', state: {}, cycle: 3, now: 15 }, cfg).verdict, 'skip');
  const barely = hist(g({ balloon_cur: 1200 * MiB, mem_unused: 63.5 * MiB }));
  assert.equal(guardBalloon({ history: barely, requested: undefined, state: {}, cycle: 3, now: 15 }, cfg).verdict, 'skip');
  // A policy's inflation clamped up to a floor less than the smallest change above the
  // balloon is no action either (it would deflate by a few KiB).
  const tinyUp = guardBalloon({ history: barely, requested: 1100 * MiB, state: {}, cycle: 3, now: 15 }, cfg);
  assert.equal(tinyUp.verdict, 'skip');
  assert.match(tinyUp.reasons.at(-1)!, /^change 512 KiB below /);
  // Above balloon_max it is always brought back, however little.
  const over = guardBalloon({ history: hist(g({ balloon_cur: 2048 * MiB + 100 })), requested: 2048 * MiB + 100, state: {}, cycle: 3, now: 15 }, cfg);
  assert.equal(over.verdict, 'apply');
  assert.equal(over.target, 2048 * MiB);
  // At or above its floor, no request is no action.
  const fine = hist(g({ balloon_cur: 1200 * MiB, mem_unused: 100 * MiB }));
  assert.equal(guardBalloon({ history: fine, requested: undefined, state: {}, cycle: 3, now: 15 }, cfg).verdict, 'skip');
});

test('KSM values are range-checked and rounded', () => {
  assert.equal(guardKsm('ksm_run', 1).verdict, 'apply');
  assert.equal(guardKsm('ksm_run', 3).verdict, 'veto');
  assert.equal(guardKsm('ksm_pages_to_scan', 0).verdict, 'veto');
  const r = guardKsm('ksm_sleep_millisecs', 12.6);
  assert.equal(r.value, 13);
  assert.equal(guardKsm('ksm_merge_across_nodes', true).value, 1);
  assert.equal(guardKsm('ksm_pages_to_scan', 'lots').verdict, 'veto');
});

test('cgroup limits below the floor are raised to it; "max" removes the limit', () => {
  const d = guardCgroup('mem_high', 10 * MiB, g(), cfg);
  assert.equal(d.value, 1088 * MiB);
  assert.equal(guardCgroup('mem_max', 'max', g(), cfg).value, null);
  assert.equal(guardCgroup('mem_max', -5, g(), cfg).verdict, 'veto');
});

test('cache-aware floor: page cache is not used memory; a balloon takes it at most cacheStep a cycle', () => {
  // 2 GiB guest: 300 MiB free, 1.2 GiB page cache, ~550 MiB that only the guest can give up.
  const cache = g({ mem_unused: 300 * MiB, mem_usable: 1500 * MiB });
  const b = balloonBounds(cache, cfg);
  assert.ok(typeof b !== 'string');
  assert.equal(b.anon, 548 * MiB);
  assert.equal(b.floor, 548 * MiB + 64 * MiB, 'floor = used without cache + headroom');
  assert.equal(b.cacheFloor, 1748 * MiB + 64 * MiB, 'used with cache + headroom: above the current size');
  assert.equal(b.cacheStep, Math.floor(0.05 * 2048 * MiB));
  // Free memory beyond used-with-cache + headroom goes at the normal pace (10%: 205 MiB).
  const first = guardBalloon({ history: hist(cache), requested: 1024 * MiB, state: {}, cycle: 1, now: 0 }, cfg);
  assert.equal(first.target, 2048 * MiB - Math.floor(0.1 * 2048 * MiB));
  // Once little is free, the guard takes one cache step a cycle below that level, no more.
  const cached = g({ mem_unused: 40 * MiB, mem_usable: 1240 * MiB });
  const d = guardBalloon({ history: hist(cached), requested: 1024 * MiB, state: {}, cycle: 1, now: 0 }, cfg);
  assert.equal(d.verdict, 'apply');
  assert.equal(d.target, 2048 * MiB - b.cacheStep);
  assert.ok(
    d.reasons.some((r) => r.startsWith('page cache taken at most 102 MiB per cycle')),
    d.reasons.join(),
  );
  // A guest whose cache grew until almost nothing is free is not deflated for it.
  const full = g({ balloon_cur: 1024 * MiB, mem_unused: 20 * MiB, mem_usable: 700 * MiB });
  const keep = guardBalloon({ history: hist(full), requested: 1024 * MiB, state: {}, cycle: 1, now: 0 }, cfg);
  assert.equal(keep.verdict, 'skip');
  const old = guardBalloon({ history: hist(full), requested: 1024 * MiB, state: {}, cycle: 1, now: 0 }, { ...cfg, cacheStepFraction: null });
  assert.equal(old.verdict, 'apply', 'counting cache as used, the same guest is below its floor');
  assert.equal(old.target, 1004 * MiB + 64 * MiB);
});

test('page cache left to the host: while the host holds it more cheaply, the balloon stops at used-with-cache + headroom', () => {
  // The same guest as above, little free, 1.2 GiB of cache: asked to inflate to 1 GiB.
  const cached = g({ mem_unused: 40 * MiB, mem_usable: 1240 * MiB });
  const why = 'the host is calm (test)';
  const held = guardBalloon({ history: hist(cached), requested: 1024 * MiB, state: {}, cycle: 1, now: 0, hostCanWait: why }, cfg);
  // used with cache = 2008 MiB, + 64 MiB headroom is above the guest's size: nothing to take.
  assert.equal(held.verdict, 'skip', held.reasons.join());
  assert.ok(
    held.reasons.some((r) => r.startsWith('page cache left to the host') && r.endsWith(why)),
    held.reasons.join(),
  );
  // Free memory above used-with-cache + headroom still goes, at the normal pace.
  const roomy = g({ mem_unused: 300 * MiB, mem_usable: 1500 * MiB });
  const free = guardBalloon({ history: hist(roomy), requested: 1024 * MiB, state: {}, cycle: 1, now: 0, hostCanWait: why }, cfg);
  assert.equal(free.verdict, 'apply');
  assert.equal(free.target, 2048 * MiB - Math.floor(0.1 * 2048 * MiB));
  const small = g({ mem_unused: 150 * MiB, mem_usable: 1500 * MiB });
  const toCache = guardBalloon({ history: hist(small), requested: 1024 * MiB, state: {}, cycle: 1, now: 0, hostCanWait: why }, cfg);
  assert.equal(toCache.target, (2048 - 150 + 64) * MiB, 'stops at used with cache + headroom');
  // A guest that reports its free pages is not inflated at all while the host can wait:
  // reporting hands its free memory back in whole blocks.
  const reporting = guardBalloon(
    { history: hist({ ...roomy, rss: 1900 * MiB }), requested: 1024 * MiB, state: {}, cycle: 1, now: 0, hostCanWait: why, reportsFreePages: true },
    cfg,
  );
  assert.equal(reporting.verdict, 'skip', reporting.reasons.join());
  assert.ok(
    reporting.reasons.some((r) => r.startsWith('free memory left to free page reporting') && r.endsWith(why)),
    reporting.reasons.join(),
  );
  // Above its balloon_max (the maximum was lowered) it is still brought back to it.
  const over = guardBalloon(
    {
      history: hist({ ...roomy, balloon_max: 1900 * MiB, rss: 1900 * MiB }),
      requested: 1024 * MiB,
      state: {},
      cycle: 1,
      now: 0,
      hostCanWait: why,
      reportsFreePages: true,
    },
    cfg,
  );
  assert.equal(over.verdict, 'apply', over.reasons.join());
  assert.equal(over.target, 1900 * MiB);
  const stalled = guardBalloon(
    { history: hist({ ...roomy, rss: 1900 * MiB }), requested: 1024 * MiB, state: {}, cycle: 1, now: 0, reportsFreePages: true },
    cfg,
  );
  assert.equal(stalled.verdict, 'apply', 'once the host stalls, the balloon takes what QEMU still backs');
  // A guest below its floor is raised whatever the host's state: the rule only holds inflations.
  const short = g({ balloon_cur: 1024 * MiB, mem_unused: 10 * MiB, mem_usable: 20 * MiB });
  const up = guardBalloon({ history: hist(short), requested: undefined, state: {}, cycle: 1, now: 0, hostCanWait: why }, cfg);
  assert.equal(up.verdict, 'apply');
  assert.ok((up.target as number) > 1024 * MiB);
});

test("hostCanWait: only a host with PSI, swap room and huge pages in use, not stalling, holds guests' page cache", () => {
  const host = { psi_some_avg60: 0.4, swap_total: 896 * MiB, swap_usage: 240 * MiB, anon_huge_pages: 900 * MiB };
  const why = hostCanWait(host, cfg);
  assert.ok(why?.startsWith('the host is not stalling on memory (psi some avg60 0.4% < 2%)'), String(why));
  assert.ok(why?.includes('656 MiB of 896 MiB swap free'), String(why));
  for (const [over, because] of [
    [{ psi_some_avg60: 2 }, 'stalling at the threshold'],
    [{ psi_some_avg60: 35 }, 'stalling (slow swap)'],
    [{ psi_some_avg60: null }, 'no PSI: the stall is not known'],
    [{ swap_total: 0, swap_usage: 0 }, 'no swap: nowhere to hold cache but RAM'],
    [{ swap_usage: 700 * MiB }, 'under a quarter of its swap free'],
    [{ anon_huge_pages: 0 }, 'no huge pages in use: a balloon splits nothing'],
    [{ anon_huge_pages: null }, 'huge pages not known'],
  ] as const) {
    assert.equal(hostCanWait({ ...host, ...over }, cfg), null, because);
  }
  assert.equal(hostCanWait(host, { ...cfg, cacheStallPercent: null }), null, 'off in the config');
  assert.equal(hostCanWait(undefined, cfg), null, 'no host sample');
  // A memory domain's own PSI (cgroup v2) counts before the whole host's.
  assert.equal(hostCanWait({ ...host, domain_psi_some_avg60: 12 }, cfg), null);
  assert.ok(hostCanWait({ ...host, psi_some_avg60: 50, domain_psi_some_avg60: 0 }, cfg) !== null);
  // Cold pages read back from a slow swap disk are I/O waits, not memory stalls.
  assert.equal(hostCanWait({ ...host, psi_io_some_avg60: 10 }, cfg), null, 'waiting on I/O at the threshold');
  assert.equal(hostCanWait({ ...host, psi_io_some_avg60: 47 }, cfg), null, 'waiting on a hard disk');
  const io = hostCanWait({ ...host, psi_io_some_avg60: 3.4 }, cfg);
  assert.ok(io?.startsWith('the host is not stalling on memory (psi some avg60 0.4% < 2%) nor on I/O (psi io some avg60 3.4% < 10%), has'), String(io));
  assert.ok(hostCanWait({ ...host, psi_io_some_avg60: 47 }, { ...cfg, cacheIoPercent: null }) !== null, 'I/O off in the config');
  // Slow swap: a page swapped in costs a hard disk's seek long before the host shows a stall.
  assert.equal(hostCanWait({ ...host, swap_in_io_wait_ms: 6.4 }, cfg), null, 'a hard disk');
  assert.equal(hostCanWait({ ...host, swap_in_io_wait_ms: 1 }, cfg), null, 'at the threshold');
  const fast = hostCanWait({ ...host, swap_in_io_wait_ms: 0.13 }, cfg);
  assert.ok(fast?.includes('swap free (0.13 ms of I/O stall a page swapped in < 1 ms), and'), String(fast));
  assert.ok(hostCanWait({ ...host, swap_in_io_wait_ms: null }, cfg) !== null, 'not yet known: the stall rules decide');
  // Before the first thousand swap-ins the device decides; the measurement, once there, overrules it.
  assert.equal(hostCanWait({ ...host, swap_rotational: 1 }, cfg), null, 'swap on a spinning disk');
  assert.ok(hostCanWait({ ...host, swap_rotational: 0 }, cfg)?.includes('swap free (on a non-rotational device), and'));
  assert.ok(hostCanWait({ ...host, swap_rotational: 1, swap_in_io_wait_ms: 0.2 }, cfg) !== null, 'a virtual disk that calls itself rotational over flash');
  assert.equal(hostCanWait({ ...host, swap_rotational: 0, swap_in_io_wait_ms: 4 }, cfg), null, 'a network block device that calls itself flash');
  assert.ok(hostCanWait({ ...host, swap_rotational: 1 }, { ...cfg, slowSwapInMs: null }) !== null, 'off in the config');
  assert.ok(hostCanWait({ ...host, swap_in_io_wait_ms: 6.4 }, { ...cfg, slowSwapInMs: null }) !== null, 'swap speed off in the config');
  // A burst (the ten-second average) does not turn the rule over; the minute's does.
  assert.ok(hostCanWait({ ...host, psi_some_avg10: 12, psi_io_some_avg10: 40 }, cfg) !== null, 'a burst is not a stall');
});

test('KSM is not started while the host can wait (it would split huge pages), and stopped once it can wait with room again; a stalling host or the rule off: as the policy asks', () => {
  const calm = { psi_some_avg60: 0.4, swap_total: 896 * MiB, swap_usage: 240 * MiB, anon_huge_pages: 900 * MiB, ksm_run: 0 };
  const held = guardKsm('ksm_run', 1, calm, cfg);
  assert.equal(held.verdict, 'apply');
  assert.equal(held.value, 0, 'held stopped');
  assert.ok(held.reasons.at(-1)?.startsWith('not started: the host is not stalling on memory'), held.reasons.join());
  assert.ok(held.reasons.at(-1)?.endsWith('that KSM would split'), held.reasons.join());
  assert.equal(guardKsm('ksm_run', 1, { ...calm, psi_some_avg60: 5 }, cfg).value, 1, 'the host stalls: KSM starts');
  assert.equal(guardKsm('ksm_run', 1, { ...calm, swap_usage: 800 * MiB }, cfg).value, 1, 'swap runs short: KSM starts');
  assert.equal(guardKsm('ksm_run', 1, { ...calm, ksm_run: 1 }, cfg).value, 1, 'running, free memory unknown: left to the policy');
  // Running: stopped once the host can wait with 10% free, kept while it is short or cannot wait.
  const room = { ...calm, ksm_run: 1, mem_available: 1280 * MiB, mem_free: 230 * MiB };
  const stopped = guardKsm('ksm_run', 1, room, cfg);
  assert.equal(stopped.value, 0, 'the shortage passed: ksmd stops scanning');
  assert.match(
    stopped.reasons.at(-1) ?? '',
    /^stopped: 18\.0% of the host's memory is free \(>= 10%\) and the host is not stalling.*what ksmd merged stays merged$/,
  );
  assert.equal(guardKsm('ksm_run', 1, { ...room, mem_free: 108 * MiB }, cfg).value, 1, '8.4% free: between the start and stop levels, it keeps running');
  assert.equal(guardKsm('ksm_run', 1, { ...room, swap_out: 2400 }, cfg).value, 1, 'swapping out: keeps running');
  assert.equal(guardKsm('ksm_run', 1, { ...room, psi_some_avg60: 5 }, cfg).value, 1, 'the host stalls: keeps running');
  assert.equal(guardKsm('ksm_run', 1, room, { ...cfg, cacheStallPercent: null }).value, 1, 'rule off: as the policy asks');
  const swapping = guardKsm('ksm_run', 1, { ...calm, swap_out: 2400 }, cfg);
  assert.equal(swapping.value, 1, 'the host swaps out: memory is short now');
  assert.match(swapping.reasons.at(-1) ?? '', /the host is swapping out \(2400 pages in its last interval\)/);
  assert.equal(guardKsm('ksm_run', 1, { ...calm, swap_out: 1023 }, cfg).value, 0, 'a trickle of swap-out is not a shortage');
  const full = guardKsm('ksm_run', 1, { ...calm, mem_available: 1280 * MiB, mem_free: 40 * MiB }, cfg);
  assert.equal(full.value, 1, 'the host is about to reclaim: KSM starts before it swaps');
  assert.match(full.reasons.at(-1) ?? '', /the host has 3\.1% of its memory free \(< 5%\)/);
  assert.equal(guardKsm('ksm_run', 1, { ...calm, mem_available: 1280 * MiB, mem_free: 108 * MiB }, cfg).value, 0, '8.4% free: still waits');
  assert.equal(guardKsm('ksm_run', 1, { ...calm, swap_out: null }, cfg).value, 0, 'the first sample has no interval');
  assert.equal(guardKsm('ksm_run', 1, calm, { ...cfg, cacheStallPercent: null }).value, 1, 'rule off (MOM style)');
  assert.equal(guardKsm('ksm_run', 0, calm, cfg).value, 0, 'stopping is never held');
  assert.equal(guardKsm('ksm_pages_to_scan', 400, calm, cfg).value, 400, 'the other knobs as asked');
  assert.equal(guardKsm('ksm_run', 1).value, 1, 'no host sample: as asked');
});

test('cache-aware floor falls back to counting cache when mem_usable is missing, off, or contradicts mem_unused', () => {
  for (const [s, c] of [
    [g({ mem_unused: 300 * MiB }), cfg],
    [g({ mem_unused: 300 * MiB, mem_usable: 1500 * MiB }), { ...cfg, cacheStepFraction: null }],
    [g({ mem_unused: 300 * MiB, mem_usable: 100 * MiB }), cfg],
  ] as const) {
    const b = balloonBounds(s, c);
    assert.ok(typeof b !== 'string');
    assert.equal(b.anon, null);
    assert.equal(b.floor, 1748 * MiB + 64 * MiB);
    assert.equal(b.cacheStep, 0);
  }
});

test("a guest's memory stall (its PSI) stops inflation and rolls a recent one back", () => {
  const stalled = guardBalloon({ history: hist(g({ psi_some_avg10: 15 })), requested: 1500 * MiB, state: {}, cycle: 1, now: 0 }, cfg);
  assert.equal(stalled.verdict, 'veto');
  assert.match(stalled.reasons[0]!, /inflation refused: guest memory stall 15% \(psi some avg10\) above 10%/);
  const deflate = guardBalloon({ history: hist(g({ balloon_cur: 1500 * MiB, psi_some_avg10: 40 })), requested: 1700 * MiB, state: {}, cycle: 1, now: 0 }, cfg);
  assert.equal(deflate.verdict, 'apply', 'deflation is always allowed');
  const off = guardBalloon({ history: hist(g({ psi_some_avg10: 15 })), requested: 1500 * MiB, state: {}, cycle: 1, now: 0 }, { ...cfg, psiStopPercent: null });
  assert.equal(off.verdict, 'apply');
  // Inflated at t=5 (cycle 1): [balloon MiB, stall %] at t = 0, 5, 10; decided at t=12.
  const afterInflating = (samples: [number, number][]) => {
    const h = new History(10);
    samples.forEach(([cur, psi], i) => {
      h.push(g({ balloon_cur: cur * MiB, psi_some_avg10: psi }), i * 5);
    });
    return guardBalloon({ history: h, requested: 1600 * MiB, state: { lastInflation: { cycle: 1, at: 5, step: 100 * MiB } }, cycle: 2, now: 12 }, cfg);
  };
  // The stall rose to 25% in a sample after the inflation: back by the step.
  const rb = afterInflating([
    [1800, 0],
    [1800, 2],
    [1700, 25],
  ]);
  assert.equal(rb.verdict, 'rollback');
  assert.equal(rb.target, 1800 * MiB);
  assert.match(rb.reasons[0]!, /rollback: guest memory stall 25% \(psi some avg10\) > 20%/);
  // A stall from before the inflation does not count.
  const ok = afterInflating([
    [1800, 30],
    [1700, 30],
    [1700, 3],
  ]);
  assert.notEqual(ok.verdict, 'rollback');
});

test('cgroup limits keep page cache: a host-side limit under it would swap the cache out', () => {
  const d = guardCgroup('mem_high', 10 * MiB, g({ mem_unused: 300 * MiB, mem_usable: 1500 * MiB }), cfg);
  assert.equal(d.value, 1812 * MiB);
});

test('free page reporting: an inflation within free memory takes only what QEMU still backs', () => {
  // 2 GiB guest using 1 GiB; its QEMU holds 1 GiB + 64 MiB overhead + 100 MiB of free memory
  // the guest has not reported yet: that 100 MiB is all a balloon can give the host now.
  const s = g({ rss: (1024 + 64 + 100) * MiB });
  const ask = (reportsFreePages: boolean, sample = s, requested = 1900 * MiB) =>
    guardBalloon({ history: hist(sample), requested, state: {}, cycle: 1, now: 0, reportsFreePages }, cfg);
  const plain = ask(false);
  assert.equal(plain.target, 1900 * MiB, 'a guest that does not report: its free memory is all backed');
  const fpr = ask(true);
  assert.equal(fpr.verdict, 'apply');
  assert.equal(fpr.target, 1948 * MiB);
  assert.ok(
    fpr.reasons.some((r) => r.startsWith("free page reporting: QEMU still backs 100 MiB of the guest's free memory")),
    fpr.reasons.join(),
  );
  assert.deepEqual(fpr.next.lastInflation, { cycle: 1, at: 0, step: 100 * MiB });
  // Everything reported: nothing to inflate into, the request is skipped with the reason.
  const none = ask(true, g({ rss: (1024 + 64) * MiB }));
  assert.equal(none.verdict, 'skip');
  assert.ok(
    none.reasons.some((r) => r.startsWith('free page reporting: QEMU still backs 0 KiB')),
    none.reasons.join(),
  );
  // Unknown rss: the guard cannot tell, the request goes as for any guest.
  assert.equal(ask(true, g()).target, 1900 * MiB);
  // Deflating is never held back.
  assert.equal(ask(true, g({ balloon_cur: 1800 * MiB, rss: (1024 + 64) * MiB }), 2000 * MiB).target, 2000 * MiB);
  // Below the guest's use (its page cache, with the cache-aware floor) the balloon reclaims
  // memory QEMU holds: the cache pacing applies, not this rule.
  const cached = g({ mem_unused: 40 * MiB, mem_usable: 1240 * MiB, rss: (2008 + 64) * MiB });
  const intoCache = ask(true, cached, 1024 * MiB);
  assert.equal(intoCache.target, 2048 * MiB - Math.floor(0.05 * 2048 * MiB));
  assert.ok(!intoCache.reasons.some((r) => r.startsWith('free page reporting')), intoCache.reasons.join());
});

test('quiet growth: a guest that pages out without paging back in carries its growth in its own swap, up to the budget', () => {
  const qcfg: SafeguardConfig = { ...cfg, quietGrowthFraction: 0.25 };
  // 1 GiB balloon, a leak of 10 MiB per 5 s sample; the guest pages it out (swap_out grows,
  // swap_in does not) and keeps 12 MiB free: used 1012 MiB, floor 1076 MiB > 1024 MiB.
  const leak = (i: number, out: number, o: Record<string, number | null> = {}) =>
    g({ balloon_cur: 1024 * MiB, mem_unused: 12 * MiB, swap_out: 100 * MiB + out + i * 10 * MiB, swap_in: 5 * MiB, ...o });
  const h = hist(leak(0, 0), leak(1, 0), leak(2, 0), leak(3, 0));
  const held = guardBalloon({ history: h, requested: undefined, state: {}, cycle: 1, now: 15 }, qcfg);
  assert.equal(held.verdict, 'skip', held.reasons.join());
  assert.match(held.reasons[0]!, /^quiet growth: .* carries its growth in its own swap \(0 KiB of 512 MiB\)/);
  assert.ok(held.next.carry, 'the carry starts');
  // The policy asking to inflate it is refused too; asking to deflate it is followed (to its floor).
  assert.equal(guardBalloon({ history: h, requested: 900 * MiB, state: {}, cycle: 1, now: 15 }, qcfg).verdict, 'veto');
  const up = guardBalloon({ history: h, requested: 1100 * MiB, state: {}, cycle: 1, now: 15 }, qcfg);
  assert.equal(up.verdict, 'apply');
  assert.ok((up.target as number) >= 1076 * MiB);
  // Budget spent (512 MiB carried since the carry began): raised to its floor as before.
  const spent = hist(leak(0, 520 * MiB), leak(1, 520 * MiB), leak(2, 520 * MiB), leak(3, 520 * MiB));
  const raised = guardBalloon({ history: spent, requested: undefined, state: held.next, cycle: 2, now: 15 }, qcfg);
  assert.equal(raised.verdict, 'apply');
  assert.equal(raised.target, 1076 * MiB);
  // Paging back in (a working set that does not fit): raised at once.
  const thrash = hist(leak(0, 0), leak(1, 0, { swap_in: 10 * MiB }), leak(2, 0, { swap_in: 15 * MiB }), leak(3, 0, { swap_in: 20 * MiB }));
  assert.equal(guardBalloon({ history: thrash, requested: undefined, state: {}, cycle: 1, now: 15 }, qcfg).verdict, 'apply');
  // Never paged out (no swap, as far as ballast can tell): raised at once.
  const noSwap = hist(...[0, 1, 2, 3].map((i) => g({ balloon_cur: 1024 * MiB, mem_unused: (40 - i * 10) * MiB, swap_out: 0, swap_in: 0 })));
  assert.equal(guardBalloon({ history: noSwap, requested: undefined, state: {}, cycle: 1, now: 15 }, qcfg).verdict, 'apply');
  // Off.
  assert.equal(guardBalloon({ history: h, requested: undefined, state: {}, cycle: 1, now: 15 }, { ...qcfg, quietGrowthFraction: 0 }).verdict, 'apply');
  // Its use fell back below where the carry began (the process exited): the carry is forgotten.
  const after = hist(g({ balloon_cur: 1024 * MiB, mem_unused: 800 * MiB, swap_out: 700 * MiB, swap_in: 5 * MiB }));
  const reset = guardBalloon({ history: after, requested: undefined, state: held.next, cycle: 3, now: 15 }, qcfg);
  assert.equal(reset.next.carry, undefined);
});
