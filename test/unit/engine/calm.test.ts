// When the loop may slow down (src/engine/calm.ts, Engine.calm / Engine.peek): after policy
// cycles that changed nothing, with no guest held and no stall; woken by what the cheap host
// sources show.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CALM_AFTER_CYCLES, hostMoved, hostStalls } from '../../../src/engine/calm.js';
import { Engine } from '../../../src/engine/engine.js';
import type { HostSource, Stats } from '../../../src/types.js';
import { evaluateFn, FakeHypervisor, type FakeKsm, guest, MiB, targetPolicy, type FnPolicy } from './fakes.js';

test('hostMoved: a fall of free memory of 64 MiB (or 2% of memory if more) or a stall wakes; less does not', () => {
  const last = { mem_available: 1280 * MiB, mem_free: 600 * MiB, psi_some_avg10: 0 };
  assert.equal(hostMoved(last, { ...last, mem_free: 540 * MiB }), null);
  assert.match(hostMoved(last, { ...last, mem_free: 536 * MiB }) ?? '', /free memory fell 64 MiB \(wakes at 64 MiB\)/);
  assert.equal(hostMoved(last, { ...last, mem_free: 900 * MiB }), null, 'freed memory is no reason to hurry');
  // 2% of a 16 GiB host is 328 MiB.
  const big = { mem_available: 16384 * MiB, mem_free: 8000 * MiB };
  assert.equal(hostMoved(big, { ...big, mem_free: 7700 * MiB }), null);
  assert.match(hostMoved(big, { ...big, mem_free: 7600 * MiB }) ?? '', /fell 400 MiB \(wakes at 328 MiB\)/);
  assert.match(hostMoved(last, { ...last, psi_some_avg10: 1.5 }) ?? '', /psi some avg10 1.5%/);
  assert.equal(hostMoved({}, { psi_some_avg10: null }), null, 'unknown fields wake nothing');
  assert.equal(hostStalls({ psi_some_avg10: 0.99, psi_io_some_avg10: 4.9 }), null);
  assert.match(hostStalls({ psi_some_avg10: 0, psi_io_some_avg10: 5 }) ?? '', /I\/O stall: psi io some avg10 5%/);
  assert.match(hostStalls({ psi_some_avg10: 0, domain_psi_some_avg10: 2 }) ?? '', /memory stall/, "a memory domain's own stall counts first");
});

function setup(sources: HostSource[], policy: FnPolicy) {
  const hv = new FakeHypervisor([guest('a'), guest('b')]);
  const engine = new Engine<FnPolicy>({ hypervisor: hv, hostSources: sources, policy, evaluate: evaluateFn, now: () => 0 });
  return { hv, engine };
}

const cycles = async (engine: Engine<FnPolicy>, n: number) => {
  for (let i = 0; i < n; i++) {
    await engine.collect();
    await engine.evaluateAndAct();
  }
};

test('calm after policy cycles that changed nothing; an action, a held guest, a stall, a stale guest or a new guest end it', async () => {
  let host: Stats = { mem_available: 8192 * MiB, mem_free: 4000 * MiB, psi_some_avg10: 0 };
  const src: HostSource = { name: 'meminfo', watch: true, collect: async () => ({ ...host }) };
  let target: number | undefined;
  const { hv, engine } = setup(
    [src],
    targetPolicy(() => target),
  );
  await cycles(engine, CALM_AFTER_CYCLES - 1);
  assert.equal(engine.calm(), false, `not before ${CALM_AFTER_CYCLES} quiet cycles`);
  await cycles(engine, 1);
  assert.equal(engine.calm(), true);

  // The policy inflates a guest: an action, and then a guest held below its maximum.
  target = 1900 * MiB;
  await cycles(engine, 1);
  assert.equal(engine.calm(), false);
  await cycles(engine, CALM_AFTER_CYCLES + 1);
  assert.equal(engine.calm(), false, 'a guest held below its maximum keeps the full cadence');
  target = 2048 * MiB;
  await cycles(engine, 1 + CALM_AFTER_CYCLES);
  assert.equal(engine.calm(), true, 'deflated again: calm');

  host = { ...host, psi_some_avg10: 3 };
  await engine.collect();
  assert.equal(engine.calm(), false, 'a stall');
  host = { ...host, psi_some_avg10: 0 };
  await cycles(engine, CALM_AFTER_CYCLES);
  assert.equal(engine.calm(), true);

  hv.guests.set('id-c', guest('c'));
  await engine.collect();
  assert.equal(engine.calm(), false, 'a new guest');
  await cycles(engine, CALM_AFTER_CYCLES);
  assert.equal(engine.calm(), true);

  hv.failCollect = 'connection reset';
  await engine.collect();
  assert.equal(engine.calm(), false, 'stale guests');
  hv.failCollect = undefined;
  await cycles(engine, CALM_AFTER_CYCLES);
  assert.equal(engine.calm(), true);
  hv.destroy('id-c');
  assert.equal(engine.calm(), false, 'a lifecycle event');
});

test('a host knob set as asked (KSM) leaves the engine calm; one that fails to be set does not', async () => {
  const src: HostSource = { name: 'meminfo', watch: true, collect: async () => ({ mem_available: 8192 * MiB, mem_free: 4000 * MiB, psi_some_avg10: 0 }) };
  let n = 0;
  const { hv, engine } = setup([src], (h) => ({ host: { controls: { ksm_pages_to_scan: 100 * (2 + (n++ % 2)) }, vars: h.vars } }));
  const ksm = hv.capabilities.ksm as FakeKsm;
  await cycles(engine, CALM_AFTER_CYCLES);
  assert.equal(ksm.writes.length, CALM_AFTER_CYCLES, 'a KSM knob written every cycle');
  assert.equal(engine.calm(), true, 'and the loop calm all the same');
  ksm.fail = 'EACCES';
  await cycles(engine, 1);
  assert.equal(engine.calm(), false, 'a failed write is a change: the full cadence retries it');
});

test('peek reads only the watch sources, records no sample, and says why the host moved', async () => {
  let host: Stats = { mem_available: 1280 * MiB, mem_free: 600 * MiB };
  let costly = 0;
  let fail: string | undefined;
  const watched: HostSource = {
    name: 'memory-domain',
    watch: true,
    collect: async () => {
      if (fail) throw new Error(fail);
      return { ...host };
    },
  };
  const other: HostSource = { name: 'ksm', collect: async () => ({ ksm_run: 0, n: ++costly }) };
  const { engine } = setup(
    [watched, other],
    targetPolicy(() => undefined),
  );
  await cycles(engine, CALM_AFTER_CYCLES);
  const before = engine.timedHistory('host')!.length;
  const read = costly;
  assert.equal(await engine.peek(), null);
  assert.equal(engine.counters.calmSkips, 1);
  host = { ...host, mem_free: 500 * MiB };
  assert.match((await engine.peek()) ?? '', /free memory fell 100 MiB/);
  assert.equal(engine.counters.calmSkips, 1, 'a wake is no skip');
  fail = 'EIO';
  assert.match((await engine.peek()) ?? '', /host source memory-domain: EIO/);
  assert.equal(costly, read, 'the other sources were not read');
  assert.equal(engine.timedHistory('host')!.length, before, 'no sample recorded');
});
