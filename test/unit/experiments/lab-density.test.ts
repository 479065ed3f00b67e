// lab-density's pure parts: what passes, the bisection's next limit, the smallest passing
// limit when confirmations disagree, the row (memory saved against the unconstrained peak),
// and the CLI's refusals before anything starts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { densityRow, nextRatio, passes, smallestPassing, type Probe } from '../../../src/experiments/lab-density/search.js';
import { formatDensityTable, type DensityResult } from '../../../src/experiments/lab-density/experiment.js';

const p = (ratio: number, pass: boolean, throughput = 100, oomKills = 0, confirm = false): Probe => ({
  ratio,
  limitMiB: Math.round(ratio * 1920),
  throughput,
  work: 210,
  oomKills,
  pass,
  confirm,
});

test("a run passes with no OOM kill and the guests' throughput within the tolerance of the baseline", () => {
  assert.equal(passes(95, 0, 100, 0.05), true);
  assert.equal(passes(94.9, 0, 100, 0.05), false);
  assert.equal(passes(120, 1, 100, 0.05), false, 'an OOM kill fails whatever the throughput');
  assert.equal(nextRatio(0.4, 1), 0.7);
  assert.equal(nextRatio(0.4, 0.7), 0.55);
});

test('the smallest passing limit: a failed confirmation disqualifies its limit, the ceiling passes by definition', () => {
  assert.equal(smallestPassing([p(0.7, true), p(0.55, false), p(0.625, true)], 1), 0.625);
  assert.equal(smallestPassing([p(0.7, true), p(0.55, false), p(0.625, true), p(0.625, false, 90, 0, true)], 1), 0.7);
  assert.equal(smallestPassing([p(0.7, false), p(0.85, false)], 1), 1);
  const row = densityRow(
    'ballast',
    [p(0.7, true, 98), p(0.55, false, 60), p(0.625, true, 97), p(0.625, true, 99, 0, true)],
    1,
    1920,
    { throughput: 100, work: 200 },
    1600,
  );
  assert.equal(row.limitMiB, 1200);
  assert.equal(row.saved, 0.25, '1 - 1200 / 1600');
  assert.equal(row.throughputVsUnconstrained, 0.98, 'median of the two runs at the limit');
  assert.equal(row.workVsUnconstrained, 1.05, 'work time is reported beside it');
  assert.equal(row.runsAtLimit, 2);
  const none = densityRow('none', [p(0.7, false, 50, 2)], 1, 1920, { throughput: 100, work: 200 }, 1600);
  assert.equal(none.limitMiB, 1920);
  assert.equal(none.saved, -0.2, 'a limit above the peak saves nothing');
  assert.equal(none.throughputVsUnconstrained, null);
  const table = formatDensityTable({
    experiment: 'lab-density',
    scale: { guests: 4, memMiB: 384, durationS: 150, periodS: 120, qemuOverheadMiB: 96, rampSteps: 12 },
    tolerance: 0.05,
    unconstrained: { limitMiB: 1920, throughput: 30e6, work: 180, peakMiB: 1600, runs: 2 },
    swap: { mode: 'device', totalMiB: 1408, source: 'host', preset: 'hdd' },
    cpuPerGuest: 0.4,
    thp: 'off',
    rows: [row, none],
    probes: [
      { ...p(0.625, true, 29e6), config: 'ballast' },
      { ...p(0.625, false, 27e6, 2, true), config: 'ballast' },
    ],
  } satisfies DensityResult);
  assert.match(table.split('\n').find((l) => l.startsWith('ballast'))!, /1200\s+25%\s+0\.98x\s+1\.05x\s+0\s+2$/);
  assert.match(table, /peak use 1600 MiB/);
  const runs = table.split('\n').slice(table.split('\n').indexOf('every run, as a share of unconstrained:'));
  assert.match(runs[2]!, /^ballast\s+1200\s+97%\s+117%\s+0\s+passes$/);
  assert.match(runs[3]!, /^ballast\s+1200 \(confirmation\)\s+90%\s+117%\s+2\s+fails$/);
  assert.match(table, /throughput within 5% of unconstrained \(30\.00 Mpages\/s\)/);
  assert.match(table, /\(0\.4 CPU each, no huge pages for guest RAM\)/);
});

test('CLI: lab-density runs with huge pages off unless asked (its criterion is throughput)', () => {
  const help = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'experiment', 'lab-density', '--help'], { encoding: 'utf8' });
  assert.equal(help.status, 0, help.stderr);
  assert.match(help.stdout.replace(/\s+/g, ' '), /--thp <host\|off> (?:(?!--\w).)*\(default: "off"\)/);
  const memknobs = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'experiment', 'lab-memknobs', '--help'], { encoding: 'utf8' });
  assert.match(memknobs.stdout.replace(/\s+/g, ' '), /--thp <host\|off> (?:(?!--\w).)*\(default: "host"\)/);
});

test('CLI: lab-density refuses bad options by name before anything starts', () => {
  const cases: [string[], RegExp][] = [
    [['--tolerance', '2'], /--tolerance must be in \(0, 1\), got 2/],
    [['--steps', '0'], /--steps must be 1\.\.8, got 0/],
    [['--min-ratio', '1.5'], /--min-ratio must be in \(0\.2, 1\)/],
    [['--swap', 'tape'], /--swap must be one of host, nvme, ssd, hdd/],
    [['--cpu-per-guest', '0'], /--cpu-per-guest must be a number of CPUs in \(0, 8\] or "off", got "0"/],
    [['--thp', 'maybe'], /--thp must be host or off, got "maybe"/],
    [['--configs', 'x'], /--configs: unknown "x"/],
    [['--seed', '3'], /--seed is an option of the simulated experiments, not of lab-density/],
    [[], /lab-density cannot run here: BALLAST_LAB=0/],
  ];
  for (const [args, want] of cases) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'experiment', 'lab-density', ...args], {
      encoding: 'utf8',
      env: { ...process.env, BALLAST_LAB: '0' },
    });
    assert.equal(r.status, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, want, args.join(' '));
    assert.equal(r.stdout, '');
  }
});
