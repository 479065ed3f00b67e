// Intervals that would hammer libvirtd or overflow Node's timers are refused with clear errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfigText } from '../../../src/config/load.js';
import { Scheduler } from '../../../src/engine/scheduler.js';

test('engine intervals: 0.5 to 3600 s, errors name the key', () => {
  for (const [key, v] of [
    ['stats_interval', '1e-9'],
    ['policy_interval', '3000000'],
    ['stats_interval', '0.1'],
    ['policy_interval', '-5'],
  ] as const) {
    assert.throws(() => parseConfigText(`[engine]\n${key} = ${v}\n`), new RegExp(`engine\\.${key}: expected seconds from 0\\.5 to 3600`), `${key} = ${v}`);
  }
  assert.equal(parseConfigText('[engine]\nstats_interval = 0.5\npolicy_interval = 3600\n').engine.policy_interval, 3600);
});

test('scheduler refuses an interval a timer cannot wait (Node would turn it into 1 ms)', () => {
  const run = async () => {};
  assert.throws(() => new Scheduler([{ name: 'policy', intervalS: 3_000_000, run }]).start(), /outside what a timer can wait/);
  assert.throws(() => new Scheduler([{ name: 'collect', intervalS: 1e-9, run }]).start(), /outside what a timer can wait/);
});
