import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parse as parseToml } from 'smol-toml';
import { ConfigError, parseConfigText } from '../../../src/config/load.js';
import { defaultConfig } from '../../../src/config/schema.js';
import { toSafeguardConfig } from '../../../src/daemon/convert.js';

function errorOf(text: string): string {
  try {
    parseConfigText(text);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.message;
  }
  assert.fail('expected a config error');
}

test('an empty file means every default', () => {
  const c = parseConfigText('');
  assert.deepEqual(c, defaultConfig());
  assert.equal(c.engine.stats_interval, 5);
  assert.equal(c.engine.policy_interval, 10);
  assert.equal(c.engine.history_length, 10);
  assert.equal(c.engine.calm_stride, 4);
  assert.equal(c.hypervisor.driver, 'libvirt');
  assert.equal(c.shutdown.balloons, 'leave');
});

test('errors name the key', () => {
  assert.equal(errorOf('[engine]\npolicy_interval = -1\n'), 'config error: engine.policy_interval: expected seconds from 0.5 to 3600');
  assert.equal(errorOf('[engine]\npolicy_interval = "10"\n'), 'config error: engine.policy_interval: expected seconds from 0.5 to 3600');
  assert.equal(errorOf('[engine]\npolcy_interval = 10\n'), 'config error: engine.polcy_interval: unknown key');
  assert.equal(errorOf('[hypervisor]\ndriver = "xen"\n'), 'config error: hypervisor.driver: expected one of "libvirt", "qmp", "sim"');
  assert.equal(errorOf('[engine]\nhistory_length = 2.5\n'), 'config error: engine.history_length: expected a positive integer');
  assert.equal(errorOf('[engine]\ncalm_stride = 0\n'), 'config error: engine.calm_stride: expected a positive integer');
  assert.equal(errorOf('[safeguards]\nmax_step_percent = 150\n'), 'config error: safeguards.max_step_percent: expected a percentage (0 to 100)');
  assert.equal(errorOf('[safeguards]\nmax_step_percent = 0\n'), 'config error: safeguards.max_step_percent: expected a percentage above 0 (up to 100)');
  assert.equal(errorOf('engine = 3\n'), 'config error: engine: expected a table');
  assert.equal(errorOf('[nonsense]\n'), 'config error: nonsense: unknown key');
  assert.match(errorOf('[engine\n'), /^config error: TOML syntax at line 1, column \d+/);
});

test('every problem is reported at once', () => {
  const msg = errorOf('[engine]\nstats_interval = 0\n[log]\nlevel = "loud"\n');
  assert.deepEqual(msg.split('\n'), [
    'config error: engine.stats_interval: expected seconds from 0.5 to 3600',
    'config error: log.level: expected one of "debug", "info", "warn", "error"',
  ]);
});

test('examples/ballast.toml documents every key, with the defaults', () => {
  const text = readFileSync('examples/ballast.toml', 'utf8');
  const c = parseConfigText(text);
  const raw = parseToml(text) as Record<string, Record<string, unknown>>;
  const defaults = defaultConfig() as unknown as Record<string, Record<string, unknown>>;
  for (const [section, keys] of Object.entries(defaults)) {
    for (const key of Object.keys(keys)) {
      const commented = new RegExp(`^# ${key} = `, 'm').test(text);
      assert.ok(raw[section]?.[key] !== undefined || commented, `${section}.${key} is not in examples/ballast.toml`);
    }
  }
  // step_budget is optional (commented out in the example)
  assert.match(text, /^# step_budget = /m);
  assert.deepEqual(c, defaultConfig(), 'the example shows the defaults');
});

test('safeguard keys convert from MiB and percent to KiB and fractions', () => {
  const c = parseConfigText('[safeguards]\nmin_guest_mib = 256\nheadroom_mib = 32\nmax_step_percent = 5\n');
  const s = toSafeguardConfig(c);
  assert.equal(s.minGuestKiB, 256 * 1024);
  assert.equal(s.headroomKiB, 32 * 1024);
  assert.equal(s.maxStepFraction, 0.05);
  assert.equal(s.minChangeFraction, 0.0025);
  assert.equal(s.rollbackBackoffS, 300);
});

test('per-guest floors are a table of MiB by name or UUID', () => {
  const c = parseConfigText('[guest_min_mib]\nweb1 = 1024\n"5f3c2a9e-0000-4000-8000-000000000001" = 512\n');
  assert.deepEqual(c.guest_min_mib, { web1: 1024, '5f3c2a9e-0000-4000-8000-000000000001': 512 });
  assert.equal(errorOf('[guest_min_mib]\nweb1 = -1\n'), 'config error: guest_min_mib.web1: expected a number of MiB >= 0');
  assert.equal(errorOf('[guest_min_mib]\nweb1 = "big"\n'), 'config error: guest_min_mib.web1: expected a number of MiB >= 0');
});

test('relative paths are relative to the config file', async () => {
  const { resolveRelativePaths } = await import('../../../src/config/load.js');
  const c = parseConfigText('[engine]\npolicy_dir = "policies"\n[hypervisor]\nscenario = "scenarios/big.json"\n');
  resolveRelativePaths(c, '/etc/ballast');
  assert.equal(c.engine.policy_dir, '/etc/ballast/policies');
  assert.equal(c.hypervisor.scenario, '/etc/ballast/scenarios/big.json');
  const d = parseConfigText('[hypervisor]\nscenario = "demo"\n[engine]\npolicy_dir = "/var/lib/p"\n');
  resolveRelativePaths(d, '/etc/ballast');
  assert.equal(d.hypervisor.scenario, 'demo', 'a built-in scenario name stays a name');
  assert.equal(d.engine.policy_dir, '/var/lib/p');
});

test('cgroup limits: [cgroup] enabled, or its older spelling host.cgroup_limits, turns the cgroup module on', () => {
  assert.equal(parseConfigText('').cgroup.enabled, false);
  assert.equal(parseConfigText('[cgroup]\nenabled = true\n').cgroup.enabled, true);
  assert.equal(parseConfigText('[host]\ncgroup_limits = true\n').cgroup.enabled, true, 'the alias still works');
  assert.match(errorOf('[cgroup]\nenabled = "yes"\n'), /cgroup\.enabled/);
});

test("each control module's section comes from the registry: [shutdown] is the balloon's, [vmem], [ksm], [cgroup], [cputune] their modules'", async () => {
  const { CONTROLS } = await import('../../../src/controls/registry.js');
  const keys = CONTROLS.flatMap((m) => (m.section ? [m.section.key] : []));
  assert.deepEqual(keys.sort(), ['cgroup', 'cputune', 'ksm', 'reclaim', 'shutdown', 'vmem']);
  const d = defaultConfig() as unknown as Record<string, unknown>;
  for (const m of CONTROLS) if (m.section) assert.deepEqual(d[m.section.key], m.section.schema.parse(undefined), `${m.name}: its defaults are the config's`);
});
