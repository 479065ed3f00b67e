import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BalloonController } from '../../../src/controls/balloon/controller.js';
import { CgroupController } from '../../../src/controls/cgroup/controller.js';
import { KsmController } from '../../../src/controls/ksm/controller.js';
import { mapLimited, type Action } from '../../../src/controls/control.js';
import type { CgroupBackend, GuestSample, MemLimits } from '../../../src/types.js';
import { FakeHypervisor, FakeKsm, guest, MiB } from '../engine/fakes.js';

const act = (entity: string, control: string, to: number | null, guestId?: string): Action => ({ entity, guestId, control, from: null, to, reasons: ['test'] });
const none = { isGone: () => false };

test('balloon: applies, reports a vanished guest as dropped and a driver error as failed', async () => {
  const hv = new FakeHypervisor([guest('a'), guest('b'), guest('c')]);
  hv.failSet.set('id-c', 'virDomainSetMemoryFlags: Requested operation is not valid');
  const c = new BalloonController(hv);
  const out = await c.apply(
    [act('a', 'balloon_target', 1500 * MiB, 'id-a'), act('b', 'balloon_target', 1500 * MiB, 'id-b'), act('c', 'balloon_target', 1500 * MiB, 'id-c')],
    { isGone: (id) => id === 'id-b' },
  );
  assert.deepEqual(
    out.map((o) => o.result),
    ['applied', 'dropped', 'failed'],
  );
  assert.match(out[2]!.error!, /not valid/);
  assert.deepEqual(hv.setCalls, [{ id: 'id-a', target: 1500 * MiB }]);
});

test('KSM: one write with only the changed knobs; a failed write forgets what it knew', async () => {
  const ksm = new FakeKsm();
  const c = new KsmController(ksm);
  assert.deepEqual(await c.readSettings(), { run: 0, pages_to_scan: 100, sleep_millisecs: 20, merge_across_nodes: 1 });
  let out = await c.apply([act('host', 'ksm_run', 1), act('host', 'ksm_pages_to_scan', 100), act('host', 'ksm_sleep_millisecs', 50)]);
  assert.deepEqual(out.map((o) => `${o.action.control}:${o.result}`).sort(), ['ksm_pages_to_scan:unchanged', 'ksm_run:applied', 'ksm_sleep_millisecs:applied']);
  assert.deepEqual(ksm.writes, [{ run: 1, sleep_millisecs: 50 }]);
  out = await c.apply([act('host', 'ksm_run', 1)]);
  assert.equal(out[0]!.result, 'unchanged');
  ksm.fail = 'EBUSY';
  out = await c.apply([act('host', 'ksm_merge_across_nodes', 0)]);
  assert.equal(out[0]!.result, 'failed');
  assert.equal(c.currentValue('ksm_run'), null, 'state after a failed write is unknown');
  ksm.fail = undefined;
  out = await c.apply([act('host', 'ksm_run', 1)]);
  assert.equal(out[0]!.result, 'applied', 'so the next request is written again');
  c.learn({ ksm_run: 0 });
  assert.equal(c.currentValue('ksm_run'), 0, 'a host sample updates what KSM holds');
});

class FakeCgroups implements CgroupBackend {
  calls: { guest: string; limits: MemLimits }[] = [];
  fail?: string;
  async setLimits(g: GuestSample, limits: MemLimits): Promise<void> {
    if (this.fail) throw new Error(this.fail);
    this.calls.push({ guest: g.name, limits });
  }
}

test('cgroup: one call per guest with both limits, only changed limits, vanished guests dropped', async () => {
  const be = new FakeCgroups();
  const samples = new Map<string, GuestSample>([['id-a', { id: 'id-a', name: 'a', props: { pid: 42 }, stats: {} }]]);
  const c = new CgroupController(be, (id) => samples.get(id));
  let out = await c.apply([act('a', 'mem_high', 900 * MiB, 'id-a'), act('a', 'mem_max', 1000 * MiB, 'id-a'), act('b', 'mem_high', 1, 'id-b')], none);
  assert.deepEqual(be.calls, [{ guest: 'a', limits: { high: 900 * MiB, max: 1000 * MiB } }]);
  assert.deepEqual(out.map((o) => o.result).sort(), ['applied', 'applied', 'dropped']);
  assert.equal(c.limits('id-a'), true, 'a limit in force holds the guest (the loop keeps its full cadence)');
  assert.equal(c.limits('id-b'), false);
  out = await c.apply([act('a', 'mem_high', 900 * MiB, 'id-a'), act('a', 'mem_max', null, 'id-a')], none);
  assert.deepEqual(be.calls[1], { guest: 'a', limits: { max: null } }, 'mem_high unchanged: not written again');
  be.fail = 'EACCES';
  out = await c.apply([act('a', 'mem_high', 800 * MiB, 'id-a')], none);
  assert.equal(out[0]!.result, 'failed');
  c.forget('id-a');
  be.fail = undefined;
  await c.apply([act('a', 'mem_max', null, 'id-a')], none);
  assert.equal(be.calls.length, 3, 'after forget() nothing is assumed about the guest');
  await c.apply([act('a', 'mem_high', null, 'id-a')], none);
  assert.equal(c.limits('id-a'), false, 'both limits lifted');
});

test('mapLimited keeps order and the concurrency bound', async () => {
  let inFlight = 0;
  let peak = 0;
  const out = await mapLimited([1, 2, 3, 4, 5, 6, 7], 3, async (x) => {
    inFlight++;
    peak = Math.max(peak, inFlight);
    await new Promise((r) => setTimeout(r, 5 * (8 - x)));
    inFlight--;
    return x * 10;
  });
  assert.deepEqual(out, [10, 20, 30, 40, 50, 60, 70]);
  assert.equal(peak, 3);
});
