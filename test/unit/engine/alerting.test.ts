// Alerts as the daemon raises them: from the engine's real histories after each collection,
// one record when an alert starts and one when it ends.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Engine } from '../../../src/engine/engine.js';
import { AlertMonitor } from '../../../src/engine/alerting.js';
import { DEFAULT_THRESHOLDS } from '../../../src/host/alerts.js';
import { memoryLogger } from '../../../src/log/logger.js';
import { toAlertThresholds } from '../../../src/daemon/convert.js';
import { parseConfigText } from '../../../src/config/load.js';
import type { HostSource, Stats } from '../../../src/types.js';
import { evaluateFn, FakeHypervisor, guest, MiB, type FnPolicy } from './fakes.js';

function setup(hv: FakeHypervisor, clearAfter = 1) {
  let host: Stats = { mem_available: 8192 * MiB, mem_free: 4000 * MiB, swap_in: 0, swap_out: 0 };
  const source: HostSource = { name: 'fake', collect: async () => ({ ...host }) };
  let t = 0;
  const logger = memoryLogger();
  const engine = new Engine<FnPolicy>({ hypervisor: hv, hostSources: [source], policy: null, evaluate: evaluateFn, logger, now: () => t });
  // A leak window of 50 s in parts of one 5 s sample: the tests step through it quickly.
  const alerts = new AlertMonitor(engine, { ...DEFAULT_THRESHOLDS, leakWindowS: 50 }, logger, clearAfter);
  const step = async (h: Stats = {}) => {
    host = { ...host, ...h };
    t += 5;
    await engine.collect();
    return alerts.check();
  };
  const events = (name: string) => logger.records.filter((r) => r.event === name);
  return { engine, alerts, step, events };
}

test('a low-memory host raises low_available once, escalates nothing per cycle, and clears when memory returns', async () => {
  const { alerts, step, events } = setup(new FakeHypervisor([guest('a')]));
  assert.deepEqual((await step()).raised, []);
  const r = await step({ mem_free: 1000 * MiB }); // 12% free: low_available (warning) and usage 88% > 85%
  assert.deepEqual(r.raised.map((a) => a.kind).sort(), ['high_usage', 'low_available']);
  await step({ mem_free: 900 * MiB });
  await step({ mem_free: 950 * MiB });
  assert.equal(events('alert').length, 2, 'no repeat while the alert stays active');
  const low = events('alert').find((a) => a.kind === 'low_available')!;
  assert.equal(low.level, 'warn');
  assert.equal(low.entity, 'host');
  assert.match(String(low.msg), /under 20\.0%/);
  const c = await step({ mem_free: 4000 * MiB });
  assert.deepEqual(c.cleared.map((a) => a.kind).sort(), ['high_usage', 'low_available']);
  assert.equal(events('alert_cleared').length, 2);
  assert.equal(events('alert_cleared')[0]!.reason, 'back within the threshold');
  assert.equal(alerts.raisedTotal.low_available, 1);
  assert.deepEqual(alerts.active(), []);
});

test('under half the threshold free the alert is critical and logged at error', async () => {
  const { step, events } = setup(new FakeHypervisor([]));
  await step({ mem_free: 500 * MiB }); // 6%
  const low = events('alert').find((a) => a.kind === 'low_available')!;
  assert.equal(low.severity, 'critical');
  assert.equal(low.level, 'error');
});

test('paging needs the rate above the threshold in each of the newest samples', async () => {
  const { step, events } = setup(new FakeHypervisor([]));
  // 5 s interval: 100 pages per sample = 20 pages/s, above 10.
  await step({ swap_in: 60, swap_out: 40 });
  await step({ swap_in: 100, swap_out: 0 });
  assert.equal(events('alert').length, 0, 'two samples are not enough');
  await step({ swap_in: 0, swap_out: 100 });
  assert.deepEqual(
    events('alert').map((a) => a.kind),
    ['paging'],
  );
  await step({ swap_in: 0, swap_out: 10 }); // 2 pages/s
  assert.deepEqual(
    events('alert_cleared').map((a) => a.kind),
    ['paging'],
  );
});

test('a guest whose used memory climbs steadily gets a leak warning; it clears as gone when the guest vanishes', async () => {
  const a = guest('a');
  const hv = new FakeHypervisor([a, guest('b')]);
  const { step, events, alerts } = setup(hv);
  for (let i = 0; i < 10; i++) {
    a.stats.mem_free = (1200 - i * 10) * MiB; // used rises 10 MiB per sample: 90 MiB over 10
    await step();
  }
  const leaks = events('alert').filter((x) => x.kind === 'guest_leak');
  assert.deepEqual(
    leaks.map((x) => x.entity),
    ['a'],
    'b is flat, a leaks',
  );
  assert.equal(alerts.active().length, 1);
  hv.guests.delete(a.id);
  const r = await step();
  assert.deepEqual(
    r.cleared.map((x) => x.entity),
    ['a'],
  );
  assert.match(String(events('alert_cleared')[0]!.reason), /gone or stale/);
});

test('with clear_after, a host hovering around the threshold gets one alert, cleared once it stays out', async () => {
  const { step, events } = setup(new FakeHypervisor([]), 3);
  await step({ mem_free: 1500 * MiB }); // 18%
  await step({ mem_free: 1700 * MiB }); // 21%
  await step({ mem_free: 1550 * MiB }); // 19%
  await step({ mem_free: 1700 * MiB });
  await step({ mem_free: 1700 * MiB });
  assert.deepEqual(
    events('alert').map((a) => a.kind),
    ['low_available'],
  );
  assert.equal(events('alert_cleared').length, 0);
  await step({ mem_free: 1700 * MiB });
  assert.deepEqual(
    events('alert_cleared').map((a) => a.kind),
    ['low_available'],
  );
});

test('the [alerts] config keys become the thresholds; a bad key is named', () => {
  const config = parseConfigText('[engine]\nstats_interval = 2\n[alerts]\navailable_percent = 10\nleak_min_rise_mib = 8\nleak_rising_percent = 50\n', 'x.toml');
  const t = toAlertThresholds(config);
  assert.equal(t.availableFraction, 0.1);
  assert.equal(t.leakMinRiseKiB, 8 * 1024);
  assert.equal(t.leakRisingShare, 0.5);
  assert.equal(t.intervalS, 2);
  assert.equal(config.alerts.clear_after, 3);
  assert.throws(() => parseConfigText('[alerts]\nleak_samples = 1\n', 'x.toml'), /alerts\.leak_samples/);
});
