import { test } from 'node:test';
import { tempDir } from '../temp-dir.js';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { builtinScenarios, loadScenario, memknobsScenario, cloudyScenario, parseScenario } from '../../../src/sim/scenarios.js';
import { SimWorld } from '../../../src/sim/world.js';

test('every built-in scenario loads and runs', () => {
  for (const name of Object.keys(builtinScenarios)) {
    const spec = loadScenario(name);
    assert.ok(spec.guests.length > 0, name);
    new SimWorld(spec).advance(30);
  }
});

test("the experiments' defaults are the seed paper's setups, and scale", () => {
  const m = memknobsScenario();
  assert.equal(m.guests.length, 32);
  assert.ok(m.guests.every((g) => g.memMiB === 2048 && g.vcpus === 1 && g.workload.kind === 'memknobs'));
  assert.equal(m.host.memMiB, 48 * 1024);
  assert.equal(m.host.cpus, 16);
  const c = cloudyScenario();
  assert.ok(c.guests.every((g) => g.memMiB === 1024 && g.workload.kind === 'web'));
  assert.equal(c.host.reservedMiB, 15714 * 2);
  const small = memknobsScenario({ guests: 4, guestMiB: 512, hostMiB: 1536 });
  assert.equal(small.guests.length, 4);
  for (const g of small.guests) {
    const w = g.workload;
    assert.ok(w.kind === 'memknobs' && Math.max(...w.sizesMiB) <= 512);
  }
});

test('scenario files in JSON and TOML, with guest counts', () => {
  const dir = tempDir('ballast-scn-');
  const json = join(dir, 's.json');
  writeFileSync(
    json,
    JSON.stringify({
      host: { memMiB: 4096, swapMiB: 1024, cpus: 2 },
      guests: [{ name: 'web', count: 3, memMiB: 1024, workload: { kind: 'web', requestRate: 5, anonMiB: 100, fileSetMiB: 200 } }],
    }),
  );
  const s = loadScenario(json);
  assert.deepEqual(
    s.guests.map((g) => g.name),
    ['web-1', 'web-2', 'web-3'],
  );
  const toml = join(dir, 's.toml');
  writeFileSync(
    toml,
    `
seed = 9
[host]
memMiB = 2048
swapMiB = 512
cpus = 1
[[guests]]
name = "k"
memMiB = 1024
startS = 10
[guests.workload]
kind = "memknobs"
sizesMiB = [100, 200]
runS = 30
`,
  );
  const t = loadScenario(toml);
  assert.equal(t.seed, 9);
  assert.equal(t.guests[0]!.startS, 10);
  new SimWorld(t).advance(60);
});

test('bad scenarios are refused with the key that is wrong', () => {
  const base = { host: { memMiB: 4096, swapMiB: 0, cpus: 1 }, guests: [] as unknown[] };
  assert.throws(() => parseScenario({ ...base, host: { memMiB: -1, swapMiB: 0, cpus: 1 } }, 'x.json'), /x\.json: invalid scenario[\s\S]*host\.memMiB/);
  assert.throws(() => parseScenario({ ...base, guests: [{ name: 'a', memMiB: 512, workload: { kind: 'fly' } }] }), /guests\.0\.workload/);
  assert.throws(() => parseScenario({ ...base, guests: [{ name: 'a', memMiB: 512, wrkload: { kind: 'idle' }, workload: { kind: 'idle' } }] }), /wrkload/);
  assert.throws(
    () =>
      parseScenario({
        ...base,
        guests: [
          { name: 'a', memMiB: 512, workload: { kind: 'idle' } },
          { name: 'a', memMiB: 512, workload: { kind: 'idle' } },
        ],
      }),
    /guest name a appears twice/,
  );
  assert.throws(
    () => parseScenario({ ...base, guests: [{ name: 'a', memMiB: 512, startS: 10, stopS: 5, workload: { kind: 'idle' } }] }),
    /stopS must be after startS/,
  );
  assert.throws(() => loadScenario('/nonexistent/file.json'), /not a built-in scenario \(demo, memknobs, cloudy, leak\)/);
  const dir = tempDir('ballast-scn-');
  writeFileSync(join(dir, 'bad.json'), '{ nope');
  assert.throws(() => loadScenario(join(dir, 'bad.json')), /bad\.json: cannot parse/);
});

test('the example scenario file loads and its guests expand', () => {
  const s = loadScenario('scenarios/example.toml');
  assert.deepEqual(
    s.guests.map((g) => g.name),
    ['batch-1', 'batch-2', 'batch-3', 'web-1', 'web-2', 'leaky'],
  );
  assert.equal(s.host.ksm?.pages_to_scan, 100);
  new SimWorld(s).advance(30);
});

test("--param overrides are checked like a scenario's params", async () => {
  const { parseParamOverrides } = await import('../../../src/sim/scenarios.js');
  assert.deepEqual(parseParamOverrides(['hostSeesGuestAccess=true', 'hostSwapDevice.readIops=20000']), {
    hostSeesGuestAccess: true,
    hostSwapDevice: { readIops: 20000 },
  });
  assert.throws(() => parseParamOverrides(['nosuch=1']), /nosuch/);
  assert.throws(() => parseParamOverrides(['touchCostS=-1']), /touchCostS/);
  assert.throws(() => parseParamOverrides(['touchCostS']), /expected key=value/);
});
