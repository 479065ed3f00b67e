import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SimWorld } from '../../../src/sim/world.js';
import { SimHypervisor, SimKsm, simHostSource, simWorldMetrics } from '../../../src/hypervisor/sim/index.js';
import { MIB } from '../../../src/sim/params.js';
import type { LifecycleEvent } from '../../../src/types.js';

function world() {
  return new SimWorld({
    host: { memMiB: 4096, swapMiB: 1024, cpus: 4 },
    guests: [
      { name: 'a', memMiB: 1024, workload: { kind: 'memknobs', sizesMiB: [400], runS: 1000 } },
      { name: 'b', memMiB: 2048, vcpus: 2, stopS: 20, workload: { kind: 'idle' } },
    ],
  });
}

test('collect returns every running guest in one batch with MOM fields in KiB', async () => {
  const w = world();
  const hv = new SimHypervisor(w);
  await hv.connect();
  w.advance(10);
  const samples = await hv.collect();
  assert.deepEqual(
    samples.map((s) => s.id),
    ['a', 'b'],
  );
  const a = samples[0]!.stats;
  for (const f of [
    'balloon_cur',
    'balloon_max',
    'balloon_min',
    'mem_available',
    'mem_unused',
    'mem_free',
    'swap_in',
    'swap_out',
    'major_fault',
    'minor_fault',
    'rss',
    'vcpu_count',
  ])
    assert.equal(typeof a[f], 'number', f);
  assert.equal(a.balloon_max, 1024 * MIB);
  assert.equal(a.balloon_cur, 1024 * MIB);
  assert.ok((a.mem_free as number) >= (a.mem_unused as number));
  assert.ok((a.rss as number) > 400 * MIB, 'the buffer is resident on the host');
  assert.equal(samples[1]!.stats.vcpu_count, 2);
  assert.equal(samples[0]!.props.name, 'a');
  assert.ok((a.mem_usable as number) >= (a.mem_unused as number) && (a.mem_usable as number) <= (a.mem_free as number));
  // Guest counters grow like virtio-balloon's (since boot), they are not reset per read.
  w.advance(30);
  const later = (await hv.collect())[0]!.stats;
  assert.ok((later.minor_fault as number) >= (a.minor_fault as number));
  await hv.close();
});

test('setBalloon moves the guest; a vanished guest or a bad target rejects with a clear error', async () => {
  const w = world();
  const hv = new SimHypervisor(w);
  await hv.setBalloon('b', 1024 * MIB);
  w.advance(5);
  assert.equal((await hv.collect()).find((s) => s.id === 'b')!.stats.balloon_cur, 1024 * MIB);
  assert.equal(hv.balloonActions, 1);
  await assert.rejects(hv.setBalloon('a', 4096 * MIB), /exceeds its maximum/);
  await assert.rejects(hv.setBalloon('a', -5), /positive/);
  await assert.rejects(hv.setBalloon('a', Number.NaN), /positive/);
  w.advance(20); // b stops at 20 s
  await assert.rejects(hv.setBalloon('b', 512 * MIB), /guest b: it is not running|guest b.*not running/);
  await assert.rejects(hv.setBalloon('zzz', 512 * MIB), /not running/);
});

test('lifecycle events reach listeners until they unsubscribe', () => {
  const w = new SimWorld({
    host: { memMiB: 4096, swapMiB: 0, cpus: 1 },
    guests: [
      { name: 'late', memMiB: 512, startS: 5, stopS: 10, workload: { kind: 'idle' } },
      { name: 'later', memMiB: 512, startS: 15, workload: { kind: 'idle' } },
    ],
  });
  const hv = new SimHypervisor(w);
  const got: LifecycleEvent[] = [];
  const off = hv.onEvent((e) => got.push(e));
  w.advance(12);
  off();
  w.advance(10);
  assert.deepEqual(
    got.map((e) => `${e.kind}:${e.id}`),
    ['started:late', 'stopped:late'],
  );
  w.destroyGuest('later');
  assert.equal(got.length, 2);
  const w2 = new SimWorld({ host: { memMiB: 1024, swapMiB: 0, cpus: 1 }, guests: [{ name: 'x', memMiB: 256, workload: { kind: 'idle' } }] });
  const seen: LifecycleEvent[] = [];
  new SimHypervisor(w2).onEvent((e) => seen.push(e));
  assert.equal(w2.destroyGuest('x', 'operator'), true);
  assert.equal(w2.destroyGuest('x'), false);
  assert.deepEqual(
    seen.map((e) => `${e.kind}:${e.id}:${e.detail}`),
    ['destroyed:x:operator'],
  );
});

test('SimKsm reads the ksm_* fields and writes only valid settings, all or nothing', async () => {
  const w = world();
  const ksm = new SimKsm(w);
  const r0 = await ksm.read();
  assert.equal(r0.ksm_run, 0);
  assert.equal(r0.ksm_pages_to_scan, 100);
  await ksm.write({ run: 1, pages_to_scan: 1250, sleep_millisecs: 10 });
  assert.deepEqual([w.ksm.run, w.ksm.pages_to_scan, w.ksm.sleep_millisecs], [1, 1250, 10]);
  await assert.rejects(ksm.write({ pages_to_scan: 500, run: 7 }), /run must be an integer in \[0, 2\]/);
  assert.equal(w.ksm.pages_to_scan, 1250, 'nothing written when one value is bad');
  await assert.rejects(ksm.write({ sleep_millisecs: 1.5 }), /sleep_millisecs/);
  await assert.rejects(ksm.write({ bogus: 1 } as never), /unknown setting bogus/);
  w.advance(120);
  const r1 = await ksm.read();
  assert.ok((r1.ksm_pages_sharing as number) > 0);
  assert.ok((r1.ksm_full_scans as number) >= 1);
  assert.ok((r1.ksm_pages_volatile as number) > 0, 'the Memknobs buffer is being written');
});

test('the host source reports totals and per-interval deltas (null on the first read)', async () => {
  const w = new SimWorld({
    host: { memMiB: 2048, swapMiB: 2048, cpus: 2, ksm: { run: 1, pages_to_scan: 1000, sleep_millisecs: 10 } },
    guests: [{ name: 'a', memMiB: 2048, workload: { kind: 'memknobs', sizesMiB: [1800], runS: 1000 } }],
    params: { hostOsKiB: 256 * MIB },
  });
  const src = simHostSource(w);
  const s0 = await src.collect();
  assert.equal(s0.mem_available, 2048 * MIB);
  assert.equal(s0.swap_in, null);
  assert.equal(s0.ksmd_cpu_usage, null);
  assert.equal(s0.cpu_count, 2);
  w.advance(60);
  const s1 = await src.collect();
  assert.ok((s1.swap_out as number) > 0, 'the host had to swap the guest');
  assert.ok((s1.swap_usage as number) > 0 && (s1.swap_usage as number) <= (s1.swap_total as number));
  assert.ok((s1.ksmd_cpu_usage as number) > 0);
  assert.ok((s1.ksm_shareable as number) > 0);
  assert.ok((s1.mem_free as number) < 2048 * MIB);
  const m = simWorldMetrics(w);
  assert.ok(m.host_swap_ops > 0 && m.swap_ops >= m.host_swap_ops);
  assert.equal(m.throughput_unit, 'pages/s');
  assert.ok(m.throughput > 0);
});

test('oom_kills counts the guest OOM killer since boot, as QEMU 9.1+ reports it', async () => {
  const w = new SimWorld({
    host: { memMiB: 4096, swapMiB: 0, cpus: 2 },
    guests: [{ name: 'leaky', memMiB: 256, swapMiB: 0, workload: { kind: 'leak', leakMiBPerMin: 600 } }],
  });
  const hv = new SimHypervisor(w);
  assert.equal((await hv.collect())[0]!.stats.oom_kills, 0);
  w.advance(120);
  const kills = (await hv.collect())[0]!.stats.oom_kills as number;
  assert.ok(kills >= 1, `the leak was killed: ${kills}`);
  assert.equal(kills, w.guests.get('leaky')!.c.oomKills);
});
