import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { SimWorld, type GuestSpec, type ScenarioSpec } from '../../../src/sim/world.js';
import { memknobsScenario, cloudyScenario, leakScenario } from '../../../src/sim/scenarios.js';
import type { WorkloadSpec } from '../../../src/sim/workloads.js';
import { MIB } from '../../../src/sim/params.js';
import { SimHypervisor } from '../../../src/hypervisor/sim/index.js';

const EPS = 1; // KiB: the fluid model's float error over many steps stays far below a page

function checkInvariants(w: SimWorld, where: string): void {
  let touched = 0;
  let resident = 0;
  let swapped = 0;
  for (const g of w.guests.values()) {
    const at = `${where} ${g.name}`;
    for (const [name, p] of [
      ['kern', g.kern],
      ['hot', g.hot],
      ['cold', g.cold],
      ['cache', g.cache],
      ['freeT', g.freeT],
    ] as const) {
      assert.ok(p.size >= -EPS, `${at}: ${name}.size ${p.size} < 0`);
      assert.ok(p.hsw >= -EPS && p.hsw <= p.size + EPS, `${at}: ${name}.hsw ${p.hsw} outside [0, ${p.size}]`);
      // Merged pages are resident: never more than the part's resident pages.
      assert.ok(p.ksm >= -EPS && p.ksm <= p.size - p.hsw + EPS, `${at}: ${name}.ksm ${p.ksm} > resident ${p.size - p.hsw}`);
    }
    assert.ok(g.freeU >= -EPS, `${at}: freeU ${g.freeU}`);
    // Guest RAM is exactly its parts: balloon_cur = kernel + anon + cache + free.
    const parts = g.kern.size + g.hot.size + g.cold.size + g.cache.size + g.freeT.size + g.freeU;
    assert.ok(Math.abs(parts - g.balloonCur) < EPS * 4, `${at}: parts ${parts} != balloon_cur ${g.balloonCur}`);
    assert.ok(g.balloonCur <= g.maxKiB + EPS, `${at}: balloon_cur above max`);
    assert.ok(g.guestSwapUsedKiB <= g.swapKiB + EPS && g.gswHot >= -EPS && g.gswCold >= -EPS, `${at}: guest swap ${g.guestSwapUsedKiB} of ${g.swapKiB}`);
    touched += g.touchedKiB;
    resident += g.hostResidentKiB;
    swapped += g.hostSwappedKiB;
  }
  // What the host holds for guests, in RAM or in swap, is what the guests touched.
  assert.ok(Math.abs(resident + swapped - touched) < EPS * 8, `${where}: host resident + swapped != touched`);
  assert.ok(w.hostSwapUsedKiB() <= w.hostSwapKiB + EPS, `${where}: host swap over its size`);
  const sav = w.ksmSavings();
  assert.ok(sav.savedKiB <= sav.mergedKiB + EPS, `${where}: KSM saved more than it merged`);
}

const workloadArb: fc.Arbitrary<WorkloadSpec> = fc.oneof(
  fc.record({
    kind: fc.constant('memknobs' as const),
    sizesMiB: fc.array(fc.integer({ min: 0, max: 1200 }), { minLength: 1, maxLength: 4 }),
    runS: fc.integer({ min: 5, max: 120 }),
    pauseS: fc.integer({ min: 0, max: 30 }),
    offsetS: fc.integer({ min: 0, max: 300 }),
    dupFraction: fc.double({ min: 0, max: 1, noNaN: true }),
  }),
  fc.record({
    kind: fc.constant('web' as const),
    requestRate: fc.integer({ min: 0, max: 40 }),
    anonMiB: fc.integer({ min: 0, max: 600 }),
    fileSetMiB: fc.integer({ min: 0, max: 1500 }),
  }),
  fc.record({ kind: fc.constant('idle' as const), anonMiB: fc.integer({ min: 0, max: 300 }) }),
  fc.record({ kind: fc.constant('leak' as const), leakMiBPerMin: fc.integer({ min: 0, max: 400 }) }),
);

const scenarioArb: fc.Arbitrary<ScenarioSpec> = fc
  .record({
    hostMiB: fc.integer({ min: 1024, max: 6144 }),
    swapMiB: fc.integer({ min: 0, max: 4096 }),
    cpus: fc.integer({ min: 1, max: 8 }),
    guests: fc.array(
      fc.record({
        memMiB: fc.integer({ min: 256, max: 2048 }),
        swapMiB: fc.integer({ min: 0, max: 1024 }),
        startS: fc.integer({ min: 0, max: 60 }),
        life: fc.option(fc.integer({ min: 10, max: 200 }), { nil: undefined }),
        workload: workloadArb,
      }),
      { minLength: 1, maxLength: 5 },
    ),
    ksmRun: fc.integer({ min: 0, max: 2 }),
  })
  .map((r) => ({
    host: { memMiB: r.hostMiB, swapMiB: r.swapMiB, cpus: r.cpus, ksm: { run: r.ksmRun, pages_to_scan: 1000, sleep_millisecs: 10 } },
    guests: r.guests.map(
      (g, i): GuestSpec => ({
        name: `g${i}`,
        memMiB: g.memMiB,
        swapMiB: g.swapMiB,
        startS: g.startS,
        stopS: g.life === undefined ? undefined : g.startS + g.life,
        workload: g.workload,
      }),
    ),
  }));

test('memory is conserved and every part stays in range, over random hosts, guests, balloons and KSM', () => {
  fc.assert(
    fc.property(
      scenarioArb,
      fc.array(fc.tuple(fc.integer({ min: 0, max: 4 }), fc.double({ min: 0.05, max: 1, noNaN: true })), { maxLength: 12 }),
      (spec, balloonMoves) => {
        const w = new SimWorld(spec, 7);
        checkInvariants(w, 't=0');
        for (let i = 0; i < 12; i++) {
          const [gi, frac] = balloonMoves[i] ?? [0, 1];
          const g = [...w.guests.values()][gi % Math.max(1, w.guests.size)];
          if (g) g.balloonTarget = Math.max(1, g.maxKiB * frac);
          w.advance(20);
          checkInvariants(w, `t=${w.now}`);
        }
      },
    ),
    { numRuns: 60 },
  );
});

test('a balloon moves toward its target without overshooting and never above the maximum', () => {
  const w = new SimWorld({
    host: { memMiB: 8192, swapMiB: 1024, cpus: 2 },
    guests: [{ name: 'a', memMiB: 2048, workload: { kind: 'idle', anonMiB: 200 } }],
  });
  const g = w.guests.get('a')!;
  w.advance(10);
  g.balloonTarget = 1024 * MIB;
  let last = g.balloonCur;
  for (let i = 0; i < 20; i++) {
    w.advance(1);
    assert.ok(g.balloonCur <= last + 1e-6, 'inflating never grows the guest');
    assert.ok(g.balloonCur >= g.balloonTarget - 1e-6, 'never below the target');
    last = g.balloonCur;
  }
  assert.ok(Math.abs(g.balloonCur - 1024 * MIB) < 1, `reached the target: ${g.balloonCur}`);
  g.balloonTarget = 2048 * MIB;
  w.advance(30);
  assert.equal(Math.round(g.balloonCur), 2048 * MIB);
});

test('inflating a balloon over pages the guest touched and freed gives them back to the host', () => {
  const w = new SimWorld({
    host: { memMiB: 8192, swapMiB: 1024, cpus: 2 },
    guests: [{ name: 'a', memMiB: 2048, workload: { kind: 'memknobs', sizesMiB: [1200, 0], runS: 60 } }],
  });
  w.advance(60); // the buffer is written
  w.advance(10); // and freed: the guest's pages stay with the host
  const g = w.guests.get('a')!;
  assert.ok(g.freeT.size > 1000 * MIB, `freed pages remain touched: ${g.freeT.size / MIB} MiB`);
  const before = w.hostUsedKiB();
  g.balloonTarget = 700 * MIB;
  w.advance(10);
  const after = w.hostUsedKiB();
  assert.ok(before - after > 1000 * MIB, `host got back ${(before - after) / MIB} MiB`);
});

test('free page reporting: what a guest freed goes back to the host in seconds, all but the small fragments; a guest that does not report keeps it', () => {
  const run = (report: boolean) => {
    const w = new SimWorld({
      host: { memMiB: 8192, swapMiB: 1024, cpus: 2 },
      guests: [{ name: 'a', memMiB: 2048, freePageReporting: report, workload: { kind: 'memknobs', sizesMiB: [1200, 0], runS: 60 } }],
    });
    w.advance(60); // the buffer is written
    const g = w.guests.get('a')!;
    const written = g.hostResidentKiB;
    w.advance(10); // and freed
    return { g, written, after: g.hostResidentKiB };
  };
  const kept = run(false);
  assert.ok(kept.written - kept.after < 50 * MIB, `without reporting the host keeps it: ${(kept.written - kept.after) / MIB} MiB back`);
  const back = run(true);
  const freed = 1200 * MIB;
  assert.ok(back.written - back.after > 0.8 * freed, `with reporting most comes back: ${(back.written - back.after) / MIB} MiB`);
  assert.ok(back.g.freeT.size <= 0.1 * back.g.freeKiB + 2 * MIB, `what stays unreported is about the fragments' share: ${back.g.freeT.size / MIB} MiB`);
  // Reused, the reported pages are fresh pages to the host: written again, resident again.
  const w = new SimWorld({
    host: { memMiB: 8192, swapMiB: 1024, cpus: 2 },
    guests: [{ name: 'a', memMiB: 2048, freePageReporting: true, workload: { kind: 'memknobs', sizesMiB: [1200, 0], runS: 60 } }],
  });
  w.advance(130);
  assert.ok(w.guests.get('a')!.hostResidentKiB > 1200 * MIB, 'the next run faults its buffer in again');
});

test('free page reporting for every guest (guestsReportFreePages) unless a guest says otherwise; the simulated driver shows it', async () => {
  const w = new SimWorld({
    host: { memMiB: 8192, swapMiB: 1024, cpus: 2 },
    params: { guestsReportFreePages: true },
    guests: [
      { name: 'a', memMiB: 1024, workload: { kind: 'idle', anonMiB: 100 } },
      { name: 'b', memMiB: 1024, freePageReporting: false, workload: { kind: 'idle', anonMiB: 100 } },
    ],
  });
  assert.equal(w.guests.get('a')!.reportsFreePages, true);
  assert.equal(w.guests.get('b')!.reportsFreePages, false);
  const hv = new SimHypervisor(w);
  const props = Object.fromEntries((await hv.collect()).map((g) => [g.name, g.props.free_page_reporting]));
  assert.deepEqual(props, { a: 1, b: 0 });
});

test('ballooning untouched free memory gives the host nothing', () => {
  const w = new SimWorld({
    host: { memMiB: 8192, swapMiB: 1024, cpus: 2 },
    guests: [{ name: 'a', memMiB: 2048, workload: { kind: 'idle', anonMiB: 100 } }],
  });
  w.advance(10);
  const g = w.guests.get('a')!;
  const before = w.hostUsedKiB();
  g.balloonTarget = 1024 * MIB;
  w.advance(10);
  assert.ok(Math.abs(w.hostUsedKiB() - before) < MIB, 'no host memory freed by taking never-touched pages');
  assert.ok(g.balloonCur <= 1024 * MIB + 1);
});

test('the same scenario and seed give the same run; the seed matters', () => {
  const run = (seed: number) => {
    const w = new SimWorld(cloudyScenario({ guests: 4, guestMiB: 1024, hostMiB: 8192, seed: 3 }), seed);
    w.advance(300);
    const t = w.totals();
    return [t.requests, t.requestsOffered, w.host.swapOutKiB, w.hostFreeKiB()];
  };
  assert.deepEqual(run(5), run(5));
  assert.notDeepEqual(run(5), run(6));
  const k = (seed: number) => {
    const s = memknobsScenario({ guests: 4, guestMiB: 1024, hostMiB: 3072, seed });
    return JSON.stringify(s.guests.map((g) => g.workload));
  };
  assert.equal(k(1), k(1));
  assert.notEqual(k(1), k(2));
});

test('a guest whose memory need exceeds its memory plus swap is OOM-killed; one that fits is not', () => {
  const mk = (swapMiB: number) =>
    new SimWorld({
      host: { memMiB: 8192, swapMiB: 2048, cpus: 2 },
      guests: [{ name: 'a', memMiB: 1024, swapMiB, workload: { kind: 'memknobs', sizesMiB: [1400], runS: 600 } }],
    });
  const tight = mk(128); // 1400 MiB > 1024 MiB - kernel + 128 MiB of swap
  tight.advance(120);
  assert.ok(tight.guests.get('a')!.c.oomKills >= 1, 'OOM kill expected');
  const fits = mk(1024); // 1400 MiB < 1024 MiB - kernel + 1024 MiB of swap
  fits.advance(120);
  const g = fits.guests.get('a')!;
  assert.equal(g.c.oomKills, 0);
  assert.ok(g.guestSwapUsedKiB > 300 * MIB, 'the guest swaps instead');
  const leak = new SimWorld(leakScenario());
  leak.advance(1800);
  assert.ok(leak.totals().guestOomKills >= 1, 'the leaking guest is eventually killed');
});

test('the host swapping a guest costs it more than the guest swapping its own cold pages (double paging)', () => {
  // Same guest and working set; once the host is short of memory, once the guest is (its balloon).
  const wl: WorkloadSpec = { kind: 'memknobs', sizesMiB: [900, 300], runS: 120, pauseS: 5 };
  const hostShort = new SimWorld({
    host: { memMiB: 1024 + 64 + 800, swapMiB: 4096, cpus: 2 },
    guests: [{ name: 'a', memMiB: 1536, workload: wl }],
    params: { hostOsKiB: 1024 * MIB },
  });
  const guestShort = new SimWorld({
    host: { memMiB: 8192, swapMiB: 4096, cpus: 2 },
    guests: [{ name: 'a', memMiB: 1536, balloonMiB: 800, workload: wl }],
    params: { hostOsKiB: 1024 * MIB },
  });
  hostShort.advance(1200);
  guestShort.advance(1200);
  const h = hostShort.totals().touches;
  const g = guestShort.totals().touches;
  assert.ok(hostShort.host.swapOutKiB > 0 && guestShort.host.swapOutKiB === 0);
  assert.ok(guestShort.totals().guestSwapOutKiB > 0);
  assert.ok(g > h, `guest swapping (${g.toExponential(2)} touches) beats host swapping (${h.toExponential(2)})`);
});

test('KSM merges stable identical pages at the configured rate; run=0 keeps them, run=2 unmerges', () => {
  const mk = (pages: number) =>
    new SimWorld({
      host: { memMiB: 8192, swapMiB: 0, cpus: 4, ksm: { run: 1, pages_to_scan: pages, sleep_millisecs: 20 } },
      guests: [1, 2, 3].map((i) => ({ name: `g${i}`, memMiB: 1024, workload: { kind: 'idle' as const, anonMiB: 100 } })),
    });
  const slow = mk(100);
  const fast = mk(2000);
  slow.advance(30);
  fast.advance(30);
  assert.ok(fast.ksmSavings().savedKiB > slow.ksmSavings().savedKiB, 'more pages per wake-up merge faster');
  assert.ok(fast.ksmdCpu > slow.ksmdCpu, 'and cost more ksmd CPU');
  fast.advance(600);
  const sav = fast.ksmSavings();
  // Only the shareable OS part can merge: never more than that, less the one copy kept.
  let shareable = 0;
  for (const g of fast.guests.values()) shareable += g.kern.size * fast.params.osSharedFraction + g.cache.size * 0.5;
  assert.ok(sav.savedKiB > 0 && sav.savedKiB <= shareable, `saved ${sav.savedKiB} of shareable ${shareable}`);
  fast.ksm.run = 0;
  fast.advance(30);
  assert.ok(Math.abs(fast.ksmSavings().savedKiB - sav.savedKiB) < 1, 'run=0 keeps merged pages');
  assert.equal(fast.ksmdCpu, 0);
  fast.ksm.run = 2;
  fast.advance(1);
  assert.equal(fast.ksmSavings().savedKiB, 0, 'run=2 unmerges everything');
});

test('guests start and stop on schedule, with events, and leave nothing behind on the host', () => {
  const w = new SimWorld({
    host: { memMiB: 4096, swapMiB: 1024, cpus: 2 },
    guests: [
      { name: 'a', memMiB: 1024, workload: { kind: 'idle' } },
      { name: 'b', memMiB: 1024, startS: 30, stopS: 90, workload: { kind: 'memknobs', sizesMiB: [500], runS: 100 } },
    ],
  });
  const events: string[] = [];
  w.onEvent((e) => events.push(`${e.kind}:${e.name}@${w.now}`));
  w.advance(10);
  const used0 = w.hostUsedKiB(); // guest a settled
  w.advance(19);
  assert.deepEqual([...w.guests.keys()], ['a']);
  w.advance(31);
  assert.deepEqual([...w.guests.keys()], ['a', 'b']);
  assert.ok(w.hostUsedKiB() > used0 + 400 * MIB);
  w.advance(40);
  assert.deepEqual([...w.guests.keys()], ['a']);
  assert.deepEqual(events, ['started:b@30', 'stopped:b@90']);
  assert.ok(w.hostUsedKiB() < used0 + 10 * MIB, "the stopped guest's memory is free again");
  assert.ok(w.records.has('b'), 'its counters are kept for the totals');
});

test('the host OOM killer destroys the largest guest when memory and swap run out', () => {
  const w = new SimWorld({
    host: { memMiB: 2048, swapMiB: 0, cpus: 2 },
    guests: [
      { name: 'big', memMiB: 2048, workload: { kind: 'memknobs', sizesMiB: [1500], runS: 600 } },
      { name: 'small', memMiB: 1024, workload: { kind: 'idle' } },
    ],
    params: { hostOsKiB: 256 * MIB },
  });
  const events: string[] = [];
  w.onEvent((e) => events.push(`${e.kind}:${e.name}`));
  w.advance(60);
  assert.equal(w.host.hostOomKills, 1);
  assert.deepEqual(events, ['crashed:big']);
  assert.equal(w.destroyGuest('big'), false, 'already gone');
  assert.ok(w.guests.has('small'));
});

test('advance rejects nonsense and splits time into steps', () => {
  const w = new SimWorld(leakScenario());
  assert.throws(() => w.advance(-1), /bad duration/);
  assert.throws(() => w.advance(Number.NaN), /bad duration/);
  w.advance(2.5);
  assert.equal(w.now, 2.5);
});
