import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AlertTracker, evaluateAlerts, guestLeakAlert, guestUsed, hostAlerts, LeakLows, DEFAULT_THRESHOLDS } from '../../../src/host/alerts.js';

const host = (free: number, swapIn = 0, swapOut = 0) => ({ mem_available: 1000, mem_free: free, swap_in: swapIn, swap_out: swapOut });

test('low available (under 20%) and high usage (over 85%), with value and threshold', () => {
  assert.deepEqual(hostAlerts([host(500)]), []);
  const a = hostAlerts([host(190)]);
  assert.deepEqual(
    a.map((e) => [e.kind, e.severity]),
    [['low_available', 'warning']],
  );
  assert.equal(a[0]!.value, 0.19);
  assert.equal(a[0]!.threshold, 0.2);
  const b = hostAlerts([host(80)]);
  assert.deepEqual(b.map((e) => [e.kind, e.severity]).sort(), [
    ['high_usage', 'warning'],
    ['low_available', 'critical'],
  ]);
  assert.match(b.find((e) => e.kind === 'high_usage')!.message, /92\.0% is above 85\.0%/);
  assert.deepEqual(hostAlerts([{ mem_available: null, mem_free: 1 }]), [], 'no data, no alert');
});

test('paging must be sustained: every one of the last 3 samples above 10 pages/s', () => {
  // 5 s interval: 60 pages = 12 pages/s.
  assert.deepEqual(
    hostAlerts([host(900, 60), host(900, 30, 30), host(900, 0, 60)]).map((e) => e.kind),
    ['paging'],
  );
  assert.deepEqual(hostAlerts([host(900, 60), host(900, 10), host(900, 0, 60)]), [], 'one quiet sample breaks it');
  assert.deepEqual(hostAlerts([host(900, 60), host(900, 60)]), [], 'not enough history');
  assert.deepEqual(
    hostAlerts([host(900, 60), host(900, 60)], { ...DEFAULT_THRESHOLDS, pagingSamples: 2, pagingPagesPerSec: 11.9 }).map((e) => e.value),
    [12],
  );
  assert.deepEqual(hostAlerts([host(900, null as never, null as never), host(900, 60), host(900, 60), host(900, 60)]).length, 1);
});

test('guest leak: the lows of used memory rising in most parts of the window, by enough', () => {
  const steady = Array.from({ length: 10 }, (_, i) => 100_000 + i * 5_000);
  const a = guestLeakAlert('vm1', steady)!;
  assert.equal(a.kind, 'guest_leak');
  assert.equal(a.entity, 'vm1');
  assert.equal(a.value, 45_000);
  assert.match(a.message, /over 30 min/);
  const flat = Array.from({ length: 10 }, (_, i) => 100_000 + (i % 2) * 60_000);
  assert.equal(guestLeakAlert('vm1', flat), null, 'up and down is not a leak');
  const small = Array.from({ length: 10 }, (_, i) => 100_000 + i * 100);
  assert.equal(guestLeakAlert('vm1', small), null, 'rising by less than 32 MiB in total');
  assert.equal(guestLeakAlert('vm1', steady.slice(0, 5)), null, 'window not full');
  const evs = evaluateAlerts(
    [host(900)],
    new Map([
      ['vm1', steady],
      ['vm2', flat],
    ]),
  );
  assert.deepEqual(
    evs.map((e) => e.entity),
    ['vm1'],
  );
});

test('guest leak: page cache is not used memory; a workload that ramps up and comes back is no leak, growth that stays is', () => {
  // MemAvailable (mem_usable) counts cache as free: a guest filling its cache uses nothing more.
  assert.equal(guestUsed({ mem_available: 1000, mem_free: 900, mem_unused: 50, mem_usable: 800 }), 200);
  assert.equal(guestUsed({ mem_available: 1000, mem_free: 900, mem_unused: 50 }), 100);
  assert.equal(guestUsed({ mem_available: 1000, mem_unused: 50 }), 950);
  const t = { ...DEFAULT_THRESHOLDS, intervalS: 5, leakWindowS: 600, leakSamples: 10 }; // parts of 12 samples
  const MiB = 1024;
  const feed = (usedAt: (i: number) => number, n: number) => {
    const lows = new LeakLows(t);
    let alerted = false;
    for (let i = 0; i < n; i++) {
      lows.observe('g', usedAt(i));
      if (guestLeakAlert('g', lows.lows('g'), t)) alerted = true;
    }
    return { alerted, lows: lows.lows('g') };
  };
  // The lab workload's shape: a ramp of 48 s to a peak 250 MiB above the base, back down,
  // every 120 s (24 samples), for an hour. The old rule (used rising in 80% of 10 samples)
  // fired on every ramp.
  const ramp = (i: number) => {
    const p = i % 24;
    return (64 + (p < 10 ? p * 25 : p < 12 ? 250 : 0)) * MiB;
  };
  const r = feed(ramp, 720);
  assert.equal(r.alerted, false, 'a ramp that comes back is not a leak');
  assert.equal(r.lows.length, 10);
  // A slow leak of 5 MiB a minute under the same ramps: every part's low is higher.
  const leak = feed((i) => ramp(i) + ((i * 5) / 60) * 5 * MiB, 720);
  assert.equal(leak.alerted, true, 'growth that does not come back is a leak');
  // A guest's used memory that is only page cache, filling up: no leak.
  const cacheT = { ...t };
  const lows = new LeakLows(cacheT);
  for (let i = 0; i < 240; i++)
    lows.observe('g', guestUsed({ mem_available: 1024 * MiB, mem_unused: Math.max(10 * MiB, 900 * MiB - i * 4 * MiB), mem_usable: 900 * MiB }));
  assert.equal(guestLeakAlert('g', lows.lows('g'), cacheT), null);
  lows.retain(() => false);
  assert.deepEqual(lows.lows('g'), [], 'a vanished guest is forgotten');
});

test('tracker reports raise once and clear once', () => {
  const t = new AlertTracker();
  const low = hostAlerts([host(100)]);
  assert.equal(t.update(low).raised.length, 2);
  assert.equal(t.update(low).raised.length, 0);
  const r = t.update([]);
  assert.deepEqual(r.cleared.map((e) => e.kind).sort(), ['high_usage', 'low_available']);
});

test('tracker with clearAfter: an alert hovering at its threshold stays one alert', () => {
  const t = new AlertTracker(3);
  const low = hostAlerts([host(100)]);
  assert.equal(t.update(low).raised.length, 2);
  assert.deepEqual(t.update([]).cleared, [], 'one sample without it is not enough');
  assert.equal(t.update(low).raised.length, 0, 'back again: not raised a second time');
  assert.deepEqual(t.update([]).cleared, []);
  assert.deepEqual(t.update([]).cleared, []);
  const r = t.update([]);
  assert.deepEqual(r.cleared.map((e) => e.kind).sort(), ['high_usage', 'low_available']);
  assert.deepEqual(r.active, []);
  assert.equal(t.update(low).raised.length, 2, 'after clearing it can start again');
  assert.deepEqual(
    t
      .dropEntities((e) => e !== 'host')
      .map((e) => e.kind)
      .sort(),
    ['high_usage', 'low_available'],
  );
});
