// `ballast demo` as `npm start` runs it, but with stdout a pipe: plain status lines, one line
// per action with its reason, and it stops by itself with --duration.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { renderView, statusLine } from '../../../src/cli/demo.js';
import type { EngineSnapshot } from '../../../src/engine/engine.js';

test('ballast demo --duration prints status and actions with reasons, then stops', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'demo', '--duration', '3', '--speed', '600'], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.match(lines[0]!, /^ballast demo: scenario demo, x600; policy .*default\.policy/);
  const status = lines.filter((l) => /^t=\d+s cycle \d+ host free [\d.]+% \| /.test(l));
  assert.ok(status.length >= 10, `status lines: ${status.length}`);
  assert.match(status[0]!, /web1 2048\/2048 used \d+/);
  const balloon = lines.filter((l) => /^ {2}t=\d+s \S+ balloon_target \d+ -> \d+ MiB \(policy asked to (inflate|deflate)/.test(l));
  assert.ok(balloon.length > 0, 'the demo shows balloon actions with their reasons');
  // The demo scenario has a leaking guest: an alert says so when it starts.
  const leak = lines.filter((l) =>
    /^ {2}alert warning: guest leaky: used memory \(page cache not counted\) kept rising and did not come back: its low rose \d+ MiB over 10 min/.test(l),
  );
  assert.ok(leak.length >= 1, lines.filter((l) => l.includes('alert')).join('\n'));
  assert.match(lines.at(-1)!, /^demo stopped after \d+ policy cycles: \d+ actions/);
  assert.equal(r.stderr, '', 'no warnings or errors');
});

test('ballast demo refuses bad options', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'demo', '--speed', '0'], { encoding: 'utf8' });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /--speed: expected a positive number/);
});

test('the terminal view shows host, guests with their bars, and recent actions', () => {
  const snap: EngineSnapshot = {
    time: 605,
    cycle: 60,
    policyLoaded: true,
    host: { stats: { mem_free: 1024 * 1024, mem_available: 8 * 1024 * 1024, ksm_run: 1, ksm_pages_to_scan: 300, ksm_pages_sharing: 2560 }, vars: {} },
    guests: [
      {
        id: 'a',
        name: 'web1',
        props: { workload: 'web' },
        stats: { balloon_cur: 1536 * 1024, balloon_max: 2048 * 1024, mem_unused: 512 * 1024 },
        vars: {},
        holdUntil: 900,
      },
    ],
    recent: [
      {
        cycle: 60,
        time: 605,
        entity: 'web1',
        control: 'balloon_target',
        from: 2048 * 1024,
        to: 1536 * 1024,
        result: 'applied',
        reasons: ['policy asked to inflate'],
      },
    ],
    counters: {
      collections: 1,
      cycles: 60,
      policyErrors: 0,
      abortedEvaluations: 0,
      controllerErrors: 0,
      driverErrors: 0,
      sourceErrors: 0,
      actionsApplied: 1,
      vetoes: 0,
      rollbacks: 0,
      dropped: 0,
      deferred: 0,
      guestsAppeared: 1,
      guestsVanished: 0,
      calmSkips: 0,
    },
  };
  const v = renderView(snap, 'ballast demo');
  assert.match(v, /host: free 12\.5% \(1024 of 8192 MiB\)/);
  assert.match(v, /web1 +web +1536 \/ 2048 +1024 {2}#{16}-{8}\.{8} backing off until t=900s/);
  assert.match(v, /t=605s web1 balloon_target 2048 -> 1536 MiB \(policy asked to inflate\)/);
  assert.equal(statusLine(snap), 't=605s cycle 60 host free 12.5% | web1 1536/2048 used 1024');
  assert.match(v, /^alerts: none$/m);
  const withAlert = renderView(snap, 'ballast demo', 100, [
    { kind: 'low_available', severity: 'warning', entity: 'host', message: 'host available memory 12.5% is under 20.0%', value: 0.125, threshold: 0.2 },
  ]);
  assert.match(withAlert, /^alerts:\n {2}WARNING host available memory 12\.5% is under 20\.0%$/m);
});
