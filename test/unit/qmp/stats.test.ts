import { test } from 'node:test';
import assert from 'node:assert/strict';
import { guestStatsToMom, staleReason, statValue } from '../../../src/hypervisor/qmp/stats.js';

// biome-ignore lint/correctness/noPrecisionLoss: the imprecise double is exactly what JSON.parse gives for QEMU's 2^64-1
const UNSET = 18446744073709551615; // -1 as QEMU's uint64, as JSON.parse reads it

test('guest-stats in bytes -> MOM fields in KiB; unset stats are null', () => {
  const { stats, lastUpdate } = guestStatsToMom({
    stats: {
      'stat-swap-in': 4096 * 10,
      'stat-swap-out': 0,
      'stat-major-faults': 321,
      'stat-minor-faults': 65432,
      'stat-free-memory': 100 * 1048576,
      'stat-total-memory': 376 * 1048576,
      'stat-available-memory': 250 * 1048576,
      'stat-disk-caches': 30 * 1048576,
      'stat-htlb-pgalloc': UNSET,
      'stat-htlb-pgfail': UNSET,
    },
    'last-update': 1764068000,
  });
  assert.deepEqual(stats, {
    mem_available: 376 * 1024,
    mem_unused: 100 * 1024,
    mem_free: 130 * 1024,
    mem_usable: 250 * 1024,
    swap_in: 40,
    swap_out: 0,
    major_fault: 321,
    minor_fault: 65432,
    htlb_pgalloc: null,
    htlb_pgfail: null,
    oom_kills: null,
    alloc_stalls: null,
    async_scan: null,
    direct_scan: null,
    async_reclaim: null,
    direct_reclaim: null,
  });
  assert.equal(lastUpdate, 1764068000);
  assert.equal(staleReason(lastUpdate, stats), null);
});

test('QEMU 9.1+ statistics of a Linux 6.12+ guest: OOM kills and allocation stalls as counts, scan and reclaim in KiB', () => {
  const { stats } = guestStatsToMom({
    stats: {
      'stat-total-memory': 256 * 1048576,
      'stat-oom-kills': 2,
      'stat-alloc-stalls': 37,
      'stat-async-scans': 4096 * 1000,
      'stat-direct-scans': 4096 * 200,
      'stat-async-reclaims': 4096 * 900,
      'stat-direct-reclaims': UNSET,
    },
    'last-update': 5,
  });
  assert.deepEqual(
    [stats.oom_kills, stats.alloc_stalls, stats.async_scan, stats.direct_scan, stats.async_reclaim, stats.direct_reclaim],
    [2, 37, 4000, 800, 3600, null],
  );
});

test('no update yet, all unset, or garbage values: stale, never numbers from nothing', () => {
  const none = guestStatsToMom({ stats: { 'stat-total-memory': UNSET, 'stat-free-memory': UNSET }, 'last-update': 0 });
  assert.equal(none.stats.mem_available, null);
  assert.match(staleReason(none.lastUpdate, none.stats)!, /no balloon statistics from the guest yet/);
  const empty = guestStatsToMom({ stats: {}, 'last-update': 5 });
  assert.match(staleReason(empty.lastUpdate, empty.stats)!, /reports no memory statistics/);
  assert.equal(statValue('12'), null);
  assert.equal(statValue(-1), null);
  assert.equal(statValue(Number.NaN), null);
  assert.equal(guestStatsToMom({}).lastUpdate, 0);
});
