// Proxmox VE's auto-ballooning rule: what one round does, and pve-manager's own expected values
// (test/balloontest.pl) replayed against this version.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { autoBalloonRound, hostGoalKiB, PVE_AUTOBALLOON, type AutoBalloonVm } from '../../../src/experiments/lab-memknobs/proxmox-autoballoon.js';
import { pveMinKiB } from '../../../src/experiments/lab-memknobs/proxmox-manager.js';

const MiB = 1024;
const vm = (id: string, balloonMiB: number, o: Partial<AutoBalloonVm> & { minMiB?: number; maxMiB?: number; freeMiB?: number | null } = {}): AutoBalloonVm => ({
  id,
  balloonKiB: balloonMiB * MiB,
  minKiB: (o.minMiB ?? 512) * MiB,
  maxKiB: (o.maxMiB ?? 2048) * MiB,
  freeKiB: o.freeMiB === undefined ? 0 : o.freeMiB === null ? null : o.freeMiB * MiB,
  ...(o.shares === undefined ? {} : { shares: o.shares }),
  ...(o.balloonKiB === undefined ? {} : { balloonKiB: o.balloonKiB }),
  ...(o.minKiB === undefined ? {} : { minKiB: o.minKiB }),
});
const mib = (plan: Map<string, number>) => Object.fromEntries([...plan].map(([k, v]) => [k, v / MiB]));

test('goal: the change that brings the host to its target share of memory', () => {
  assert.equal(hostGoalKiB(1000 * MiB, 700 * MiB), 100 * MiB, '80% of 1000 MiB is 800: 100 MiB to give');
  assert.equal(hostGoalKiB(1000 * MiB, 900 * MiB), -100 * MiB);
  assert.equal(hostGoalKiB(1000 * MiB, 400 * MiB, 50), 100 * MiB, 'ballooning-target 50');
});

test('dead band: a goal within 10 MiB of zero moves nothing, one just past it does', () => {
  const vms = [vm('a', 512), vm('b', 600, { freeMiB: 400 })];
  assert.equal(autoBalloonRound(vms, 10 * MiB).size, 0);
  assert.equal(autoBalloonRound(vms, -10 * MiB).size, 0);
  assert.deepEqual(mib(autoBalloonRound(vms, 12 * MiB)), { a: 524 }, 'only the short VM grows');
  assert.deepEqual(mib(autoBalloonRound(vms, -12 * MiB)), { b: 588 }, 'only the VM with free memory shrinks');
});

test('growing: the VMs short of memory get it first; the others only when the short ones can take nothing', () => {
  // a: free 10 MiB <= 25% of its 512 MiB minimum: short. b: 300 MiB free: not short.
  const vms = [vm('a', 512, { freeMiB: 10 }), vm('b', 512, { freeMiB: 300 })];
  assert.deepEqual(mib(autoBalloonRound(vms, 60 * MiB)), { a: 572 });
  // A balloon below its minimum counts as short whatever the guest has free, and is raised
  // towards its minimum (by the step at most) even past the goal.
  assert.deepEqual(mib(autoBalloonRound([vm('a', 400, { freeMiB: 300 }), vm('b', 512, { freeMiB: 300 })], 60 * MiB)), { a: 500 });
  // The short VM is at its maximum (and at its fair size): the goal goes to everyone.
  const full = [vm('a', 600, { maxMiB: 600, freeMiB: 0, shares: 3000 }), vm('b', 512, { freeMiB: 300 })];
  assert.deepEqual(mib(autoBalloonRound(full, 60 * MiB)), { b: 572 });
  // Unknown free memory (no statistics yet) is short, as pvestatd treats a missing free_mem.
  assert.deepEqual(mib(autoBalloonRound([vm('a', 512, { freeMiB: null }), vm('b', 512, { freeMiB: 300 })], 40 * MiB)), { a: 552 });
});

test('shrinking: the VMs with free memory give first, the others only when those can give nothing', () => {
  const vms = [vm('a', 1024, { freeMiB: 10 }), vm('b', 1024, { freeMiB: 300 })];
  assert.deepEqual(mib(autoBalloonRound(vms, -60 * MiB)), { b: 964 });
  const atMin = [vm('a', 1024, { freeMiB: 10 }), vm('b', 512, { freeMiB: 300 })];
  assert.deepEqual(mib(autoBalloonRound(atMin, -60 * MiB)), { a: 964 }, 'b is at its minimum');
});

test('step: no VM moves more than 100 MiB in a round, whatever the goal', () => {
  const grow = autoBalloonRound([vm('a', 512), vm('b', 512)], 1000 * MiB);
  assert.deepEqual(mib(grow), { a: 612, b: 612 });
  const shrink = autoBalloonRound([vm('a', 2048, { freeMiB: 900 })], -1000 * MiB);
  assert.deepEqual(mib(shrink), { a: 1948 });
  assert.equal(PVE_AUTOBALLOON.maxStepKiB, 100 * MiB);
});

test('shares: the goal is split in proportion, each VM between its minimum and maximum', () => {
  // What they hold above their minimums (0) plus 90 MiB, 2:1.
  assert.deepEqual(mib(autoBalloonRound([vm('a', 512, { shares: 2000 }), vm('b', 512)], 90 * MiB)), { a: 572, b: 542 });
  // b may hold at most 530 MiB. It stays in the split at its maximum, so what it cannot take
  // is not handed on to a in the same round (as pvestatd: only a VM already at its fair size
  // leaves the split).
  assert.deepEqual(mib(autoBalloonRound([vm('a', 512, { shares: 2000 }), vm('b', 512, { maxMiB: 530 })], 90 * MiB)), { a: 572, b: 530 });
  // Shrinking never goes below a minimum.
  assert.deepEqual(mib(autoBalloonRound([vm('a', 540, { freeMiB: 300 })], -90 * MiB)), { a: 512 });
  // Growing rebalances: a holds more than its fair 672 MiB, so it gives while b grows, each by
  // at most the step from where its balloon is.
  assert.deepEqual(mib(autoBalloonRound([vm('a', 812), vm('b', 512)], 20 * MiB)), { a: 712, b: 612 });
});

test('left out: no running balloon, no minimum, or shares 0', () => {
  const vms = [vm('off', 0, { balloonKiB: 0 }), vm('nomin', 512, { minKiB: 0 }), vm('zero', 512, { shares: 0 }), vm('in', 512)];
  assert.deepEqual(mib(autoBalloonRound(vms, 50 * MiB)), { in: 562 });
});

// pve-manager test/balloontest.pl: its MB and GB are 10^6 and 10^9 bytes, its step MB(100), its
// dead band 10 MiB in bytes. Sizes here in units of 1000 bytes, so its numbers carry over.
const MB = (n: number) => n * 1000;
const GB = (n: number) => n * 1_000_000;
const PVE_TEST = { maxStepKiB: MB(100), deadBandKiB: (10 * 1024 * 1024) / 1000 };
type PveVm = { maxmem: number; shares: number; balloon: number; balloon_min: number; freemem: number };
const asVms = (s: Record<string, PveVm>): AutoBalloonVm[] =>
  Object.entries(s).map(([id, d]) => ({ id, balloonKiB: d.balloon, minKiB: d.balloon_min, maxKiB: d.maxmem, freeKiB: d.freemem, shares: d.shares }));
const once = (s: Record<string, PveVm>, goal: number) => Object.fromEntries(autoBalloonRound(asVms(s), goal, PVE_TEST));
/** balloontest.pl's absim: apply rounds (free memory following the balloon) until nothing moves. */
function sim(s0: Record<string, PveVm>, goal0: number): { last: Record<string, number>; state: Record<string, PveVm> } {
  const s = structuredClone(s0);
  const last: Record<string, number> = {};
  let goal = goal0;
  for (let round = 0; round < 100; round++) {
    const res = autoBalloonRound(asVms(s), goal, PVE_TEST);
    if (res.size === 0) break;
    for (const [id, size] of res) {
      const d = s[id]!;
      d.freemem = Math.max(0, d.freemem + size - d.balloon);
      goal -= size - d.balloon;
      d.balloon = size;
      last[id] = size;
    }
  }
  return { last, state: s };
}

test("pve-manager's balloontest.pl: single rounds and rounds until nothing moves", () => {
  const s1 = {
    100: { maxmem: GB(2), shares: 2000, balloon: GB(1), balloon_min: GB(1), freemem: MB(0) },
    101: { maxmem: GB(2), shares: 1000, balloon: GB(1), balloon_min: GB(1), freemem: MB(0) },
  };
  assert.deepEqual(once(s1, 0), {});
  assert.deepEqual(once(s1, MB(90)), { 100: MB(1060), 101: MB(1030) });
  assert.deepEqual(once(s1, MB(150)), { 100: MB(1100), 101: MB(1050) });
  assert.deepEqual(once(s1, MB(270)), { 100: MB(1100), 101: MB(1090) });
  assert.deepEqual(sim(s1, MB(180)).last, { 100: MB(1120), 101: MB(1060) });
  assert.deepEqual(sim(s1, MB(270)).last, { 100: MB(1180), 101: MB(1090) });
  assert.deepEqual(sim(s1, MB(600)).last, { 100: MB(1300), 101: MB(1300) });
  assert.deepEqual(sim(s1, MB(900)).last, { 100: MB(1600), 101: MB(1300) });

  const s2 = {
    100: { maxmem: GB(2), shares: 2000, balloon: GB(2), balloon_min: GB(2), freemem: MB(0) },
    101: { maxmem: GB(2), shares: 1000, balloon: GB(1), balloon_min: GB(1), freemem: MB(0) },
  };
  assert.deepEqual(once(s2, 0), {});
  assert.deepEqual(once(s2, MB(18)), { 101: MB(1018) });
  assert.deepEqual(once(s2, MB(500)), { 101: MB(1100) });

  const s3 = {
    100: { maxmem: GB(2), shares: 2000, balloon: GB(2), balloon_min: GB(2), freemem: MB(0) },
    101: { maxmem: GB(2), shares: 1000, balloon: GB(1) + MB(7), balloon_min: GB(1), freemem: MB(0) },
    102: { maxmem: GB(2), shares: 1000, balloon: GB(1), balloon_min: GB(1), freemem: MB(512) },
  };
  assert.deepEqual(once(s3, 0), {});
  assert.deepEqual(once(s3, MB(11)), { 101: MB(1018) });
  assert.deepEqual(once(s3, MB(80)), { 101: MB(1087) });
  assert.deepEqual(once(s3, MB(200)), { 101: MB(1107) });
  const grown = sim(s3, MB(593));
  assert.deepEqual(grown.last, { 101: MB(1300), 102: MB(1300) });
  assert.deepEqual(sim(grown.state, -MB(200)).last, { 101: MB(1200), 102: MB(1200) });
  assert.deepEqual(sim(grown.state, -MB(400)).last, { 101: MB(1200), 102: GB(1) });
  assert.deepEqual(sim(grown.state, -MB(593)).last, { 101: MB(1007), 102: GB(1) });
});

test("the lab's guests: balloon minimum half of memory, in whole MiB as a VM config holds it", () => {
  assert.equal(pveMinKiB(384 * MiB), 192 * MiB);
  assert.equal(pveMinKiB(383 * MiB), 191 * MiB);
});
