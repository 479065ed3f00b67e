import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lifecycleFromMsg, sampleFromStats, statsFromMeminfo, NO_GUEST_STATS } from '../../../src/hypervisor/libvirt/mapping.js';
import { TypedParamType, uuidFromString, type DomainRef } from '../../../src/hypervisor/libvirt/protocol.js';

const dom: DomainRef = { name: 'vm', uuid: uuidFromString('11111111-2222-3333-4444-555555555555'), id: 7 };
const U = TypedParamType.ULLONG;

test('balloon with only host-side numbers: stale, guest fields null, mem_free null', () => {
  const s = sampleFromStats(
    {
      dom,
      params: [
        { field: 'balloon.current', type: U, value: 1000 },
        { field: 'balloon.maximum', type: U, value: 2000 },
      ],
    },
    0,
  );
  assert.equal(s.stale, NO_GUEST_STATS);
  assert.equal(s.stats.balloon_cur, 1000);
  assert.equal(s.stats.balloon_max, 2000);
  assert.equal(s.stats.mem_free, null);
  assert.equal(s.stats.swap_in, null);
  assert.equal('vcpu_count' in s.stats, false);
  assert.equal(s.props.uuid, '11111111-2222-3333-4444-555555555555');
  assert.equal(s.props.domain_id, 7);
});

test('mem_free = unused + disk caches; without caches it is unused alone', () => {
  const base = [{ field: 'balloon.unused', type: U, value: 300 }];
  assert.equal(sampleFromStats({ dom, params: [...base, { field: 'balloon.disk_caches', type: U, value: 45 }] }, 0).stats.mem_free, 345);
  assert.equal(sampleFromStats({ dom, params: base }, 0).stats.mem_free, 300);
});

test('lifecycle: stopped/destroyed, stopped/shutdown, crashed, started, suspended', () => {
  const ev = (event: number, detail: number) => lifecycleFromMsg({ callbackId: 1, dom, event, detail });
  assert.deepEqual(ev(5, 1), { kind: 'destroyed', id: '11111111-2222-3333-4444-555555555555', name: 'vm', detail: 'destroyed' });
  assert.equal(ev(5, 0).kind, 'stopped');
  assert.equal(ev(5, 2).kind, 'crashed');
  assert.equal(ev(8, 0).kind, 'crashed');
  assert.equal(ev(2, 0).detail, 'booted');
  assert.deepEqual([ev(3, 0).kind, ev(3, 0).detail], ['other', 'suspended/0']);
  assert.equal(ev(0, 0).kind, 'defined');
  assert.equal(ev(1, 0).kind, 'undefined');
});

test('/proc/meminfo text -> guest memory fields', () => {
  const st = statsFromMeminfo(
    'MemTotal:  1000 kB\nMemFree:  100 kB\nMemAvailable:  600 kB\nBuffers:  10 kB\nCached:  200 kB\nSwapCached: 0 kB\nHugePages_Total: 0\n',
  );
  assert.deepEqual(st, { mem_unused: 100, mem_available: 600, mem_free: 310, mem_total_guest: 1000 });
  assert.throws(() => statsFromMeminfo('hello'), /not \/proc\/meminfo/);
});

test('huge page allocations from the bulk stats; the newer balloon statistics libvirt has no tag for are null', () => {
  const s = sampleFromStats(
    {
      dom,
      params: [
        { field: 'balloon.current', type: U, value: 1000 },
        { field: 'balloon.unused', type: U, value: 300 },
        { field: 'balloon.hugetlb_pgalloc', type: U, value: 12 },
        { field: 'balloon.hugetlb_pgfail', type: U, value: 3 },
      ],
    },
    0,
  );
  assert.equal(s.stats.htlb_pgalloc, 12);
  assert.equal(s.stats.htlb_pgfail, 3);
  for (const f of ['oom_kills', 'alloc_stalls', 'async_scan', 'direct_scan', 'async_reclaim', 'direct_reclaim']) {
    assert.ok(f in s.stats, `${f} present`);
    assert.equal(s.stats[f], null, f);
  }
  assert.equal(sampleFromStats({ dom, params: [] }, 0).stats.htlb_pgalloc, null);
});
