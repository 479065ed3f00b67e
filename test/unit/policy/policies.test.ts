// The shipped policies on hand-made snapshots: pressure, no pressure, critical pressure,
// changes inside the dead band, and KSM's run rule, scan rate and sleep time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { compilePolicies, evaluate, type EntityState } from '../../../src/policy/index.js';
import { tokenize } from '../../../src/policy/lexer.js';

const read = (f: string) => readFileSync(new URL(`../../../policies/${f}.policy`, import.meta.url), 'utf8');
const BALLOON = compilePolicies([{ name: 'balloon', text: read('balloon') }]);
const KSM = compilePolicies([{ name: 'ksm', text: read('ksm') }]);
const DEFAULT = compilePolicies([{ name: 'default', text: read('default') }]);

const TOTAL = 16 * 1024 * 1024; // KiB

function hostAt(freeShare: number, extra: Record<string, unknown> = {}): EntityState {
  return {
    props: {},
    vars: {},
    stats: [{ mem_available: TOTAL, mem_free: freeShare * TOTAL, mem_unused: 0, ksm_shareable: 0, ksm_pages_to_scan: 100, ...extra }],
  };
}

function vm(name: string, cur: number, unused: number, min = 500_000, max = 4_000_000): EntityState {
  return { props: { name }, vars: {}, stats: [{ balloon_cur: cur, balloon_max: max, balloon_min: min, mem_unused: unused }] };
}

function targets(h: EntityState, guests: EntityState[]) {
  const r = evaluate(BALLOON, h, guests);
  assert.deepEqual(r.errors, []);
  return Object.fromEntries(r.guests.map((g) => [g.name, g.controls['balloon_target']]));
}

test('balloon, no pressure: ballooned guests grow 5% a cycle, to used + 20% free, up to balloon_max', () => {
  const t = targets(hostAt(0.5), [
    vm('roomy', 2_000_000, 1_000_000), // 5% growth is enough: 2.1e6
    vm('tight', 2_000_000, 0), // needs used + 20% = 2.4e6 right away
    vm('near-max', 3_900_000, 0), // capped at balloon_max
    vm('full', 4_000_000, 100_000), // not ballooned: nothing to do
  ]);
  assert.deepEqual(t, { roomy: 2_100_000, tight: 2_400_000, 'near-max': 4_000_000, full: undefined });
});

test('balloon, pressure (10% free): shrink 5% a cycle, not below used + a scaled free share', () => {
  const t = targets(hostAt(0.1), [
    vm('idle', 2_000_000, 1_000_000), // floor 1e6 + 0.1*2e6 = 1.2e6; 5% step wins: 1.9e6
    vm('busy', 2_000_000, 100_000), // floor 1.9e6 + 0.2e6 = 2.1e6 > current: left alone
    vm('min-bound', 2_000_000, 1_000_000, 1_950_000), // balloon_min is the floor
  ]);
  assert.equal(t['idle'], 1_900_000);
  assert.equal(t['busy'], undefined);
  assert.equal(t['min-bound'], 1_950_000);
});

test('balloon, critical pressure (at or below 5% free): the free share goes negative', () => {
  const t = targets(hostAt(0.04), [vm('full-use', 2_000_000, 0)]);
  // share = 0.04 - 0.05 = -0.01: floor = used - 1% of the guest = 1.98e6 (below what it uses)
  assert.equal(t['full-use'], 1_980_000);
  const at = targets(hostAt(0.05), [vm('edge', 2_000_000, 0)]);
  assert.equal(at['edge'], undefined); // share exactly 0: floor = used = current size
});

test('balloon: changes under 0.25% of the guest are skipped', () => {
  const t = targets(hostAt(0.1), [
    vm('tiny', 2_000_000, 1_000_000, 1_996_000), // would move 4000 KiB < 5000 KiB
    vm('small-enough', 2_000_000, 1_000_000, 1_994_000), // 6000 KiB: done
  ]);
  assert.deepEqual(t, { tiny: undefined, 'small-enough': 1_994_000 });
});

test('balloon: host free share is averaged over the history', () => {
  const h: EntityState = {
    props: {},
    vars: {},
    stats: [
      { mem_available: TOTAL, mem_free: 0.3 * TOTAL },
      { mem_available: TOTAL, mem_free: 0.05 * TOTAL }, // alone this would be critical
    ],
  };
  // average 17.5% free: pressure, share 0.175 -> floor = 1.9e6 + 0.35e6 > current: no shrink
  assert.deepEqual(targets(h, [vm('busy', 2_000_000, 100_000)]), { busy: undefined });
  assert.deepEqual(targets(h, [vm('idle', 2_000_000, 1_000_000)]), { idle: 1_900_000 });
});

test('balloon: guests without balloon statistics are left alone without errors', () => {
  const r = evaluate(BALLOON, hostAt(0.1), [{ props: { name: 'nodriver' }, vars: {}, stats: [{ rss: 5 }] }]);
  assert.deepEqual(r.errors, []);
  assert.deepEqual(r.guests[0]!.controls, {});
});

function ksm(h: EntityState) {
  const r = evaluate(KSM, h, []);
  assert.deepEqual(r.errors, []);
  return r.host.controls;
}

test('ksm: idle host -> stopped, scanning slows by 50, sleep 10 ms on 16 GiB', () => {
  assert.deepEqual(ksm(hostAt(0.5)), { ksm_run: 0, ksm_pages_to_scan: 64, ksm_sleep_millisecs: 10 });
  assert.deepEqual(ksm(hostAt(0.5, { ksm_pages_to_scan: 1000 })), { ksm_run: 0, ksm_pages_to_scan: 950, ksm_sleep_millisecs: 10 });
});

test('ksm: runs when free memory is below 20%, scanning 300 more, capped at 1250', () => {
  assert.deepEqual(ksm(hostAt(0.19)), { ksm_run: 1, ksm_pages_to_scan: 400, ksm_sleep_millisecs: 10 });
  assert.deepEqual(ksm(hostAt(0.19, { ksm_pages_to_scan: 1200 })).ksm_pages_to_scan, 1250);
});

test('ksm: runs when shareable memory + 20% headroom exceeds the total', () => {
  assert.equal(ksm(hostAt(0.5, { ksm_shareable: 0.81 * TOTAL })).ksm_run, 1);
  assert.equal(ksm(hostAt(0.5, { ksm_shareable: 0.79 * TOTAL })).ksm_run, 0);
});

test('ksm: sleep scales with 16 GiB / total memory', () => {
  const big: EntityState = { props: {}, vars: {}, stats: [{ mem_available: 4 * TOTAL, mem_free: 2 * TOTAL, ksm_shareable: 0, ksm_pages_to_scan: 100 }] };
  assert.equal(ksm(big).ksm_sleep_millisecs, 2.5);
});

test('default.policy is balloon.policy, ksm.policy and reclaim.policy, token for token', () => {
  const toks = (t: string) => tokenize(t, 'x').map((k) => k.text);
  assert.deepEqual(toks(read('default')), [...toks(read('balloon')), ...toks(read('ksm')), ...toks(read('reclaim'))]);
  const h = hostAt(0.1);
  const gs = [vm('idle', 2_000_000, 1_000_000)];
  const both = evaluate(DEFAULT, h, gs);
  assert.deepEqual(both.errors, []);
  assert.equal(both.guests[0]!.controls['balloon_target'], 1_900_000);
  assert.equal(both.host.controls['ksm_run'], 1);
});

test('shippedPolicy finds the policies next to the sources', async () => {
  const { shippedPolicy, shippedPolicyNames } = await import('../../../src/policy/index.js');
  assert.deepEqual(shippedPolicyNames(), ['balloon', 'default', 'ksm', 'reclaim', 'vmem']);
  const d = shippedPolicy();
  assert.equal(d.name, 'default');
  assert.match(d.file!, /policies\/default\.policy$/);
  assert.equal(d.text, read('default'));
});

test('vmem: under pressure a device unplugs what the guest has free beyond 20% of its size; the host fine, it plugs back; guests without a device are left alone', () => {
  const VMEM = compilePolicies([{ name: 'vmem', text: read('vmem') }]);
  const dev = (name: string, unused: number, size: number, requested = size, max = 1_048_576): EntityState => ({
    props: { name },
    vars: {},
    stats: [
      {
        balloon_cur: 1_000_000,
        balloon_max: 1_000_000,
        mem_available: 2_000_000,
        mem_unused: unused,
        vmem_size: size,
        vmem_requested: requested,
        vmem_block: 2048,
        vmem_max: max,
      },
    ],
  });
  const none: EntityState = {
    props: { name: 'plain' },
    vars: {},
    stats: [
      { balloon_cur: 2_000_000, mem_available: 2_000_000, mem_unused: 1_500_000, vmem_size: null, vmem_requested: null, vmem_block: null, vmem_max: null },
    ],
  };
  const tight = evaluate(VMEM, hostAt(0.1), [dev('spare', 900_000, 1_048_576), dev('busy', 300_000, 1_048_576), none]);
  assert.deepEqual(tight.errors, []);
  assert.equal(tight.guests[0]!.controls['vmem_target'], 1_048_576 - (900_000 - 400_000), 'free beyond 20% of its 2,000,000 KiB total (boot + plugged) goes');
  assert.equal(tight.guests[1]!.controls['vmem_target'], undefined, 'under 20% free: nothing to give');
  assert.deepEqual(tight.guests[2]!.controls, {}, 'no device');
  // Between the two thresholds (20-30% free) nothing moves: no plug-back that refills the host.
  const band = evaluate(VMEM, hostAt(0.25), [dev('shrunk', 900_000, 524_288)]);
  assert.deepEqual(band.guests[0]!.controls, {}, 'in the band: left as it is');
  const fine = evaluate(VMEM, hostAt(0.5), [dev('shrunk', 900_000, 524_288), dev('full', 900_000, 1_048_576)]);
  assert.equal(fine.guests[0]!.controls['vmem_target'], 1_048_576, 'plugged back to its maximum');
  assert.equal(fine.guests[1]!.controls['vmem_target'], undefined, 'already full');
});

test('reclaim: under pressure each guest is asked for a step (5% of its size) less page cache; the host fine, nothing is asked', () => {
  const RECLAIM = compilePolicies([{ name: 'reclaim', text: read('reclaim') }]);
  const g = (name: string, free: number | null, unused: number): EntityState => ({
    props: { name },
    vars: {},
    stats: [{ balloon_cur: 1_000_000, balloon_max: 1_000_000, mem_available: 1_000_000, mem_unused: unused, mem_free: free }],
  });
  const tight = evaluate(RECLAIM, hostAt(0.1), [g('cached', 400_000, 100_000), g('little', 120_000, 100_000), g('unknown', null, 100_000)]);
  assert.deepEqual(tight.errors, []);
  assert.equal(tight.guests[0]!.controls['cache_target'], 300_000 - 50_000, 'its 300,000 KiB of cache less a step');
  assert.equal(tight.guests[1]!.controls['cache_target'], 0, 'less than a step: all of it (the guard keeps a minimum)');
  assert.deepEqual(tight.guests[2]!.controls, {}, 'no cache figure: not asked');
  const fine = evaluate(RECLAIM, hostAt(0.3), [g('cached', 400_000, 100_000)]);
  assert.deepEqual(fine.guests[0]!.controls, {}, 'the host is fine: nothing asked');
});

test('the installed policy directory (default.policy, then vmem.policy) runs as one program: each mechanism acts on its own guests, in its own names', () => {
  const DIR = compilePolicies(['default', 'vmem'].map((name) => ({ name, text: read(name) })));
  const withDevice: EntityState = {
    props: { name: 'vm-dev' },
    vars: {},
    stats: [
      {
        balloon_cur: 2_000_000,
        balloon_max: 2_000_000,
        balloon_min: 0,
        mem_available: 2_000_000,
        mem_unused: 900_000,
        vmem_size: 1_048_576,
        vmem_requested: 1_048_576,
        vmem_block: 2048,
        vmem_max: 1_048_576,
      },
    ],
  };
  // The vmem module gives every guest the device fields, null without one.
  const plain = vm('plain', 2_000_000, 1_000_000);
  Object.assign(plain.stats[0]!, { vmem_size: null, vmem_requested: null, vmem_block: null, vmem_max: null });
  const r = evaluate(DIR, hostAt(0.1), [withDevice, plain]);
  assert.deepEqual(r.errors, []);
  assert.equal(r.guests[0]!.controls['vmem_target'], 1_048_576 - (900_000 - 400_000), 'the device unplugs as vmem.policy alone would');
  assert.equal(
    r.guests[0]!.controls['balloon_target'],
    evaluate(DEFAULT, hostAt(0.1), [withDevice]).guests[0]!.controls['balloon_target'],
    'the balloon as default.policy alone would',
  );
  assert.deepEqual(r.guests[1]!.controls, { balloon_target: 1_900_000 }, 'a guest without a device: the balloon only');
  assert.equal(r.host.controls['ksm_run'], 1);
});
