import { test } from 'node:test';
import { tempDir } from '../temp-dir.js';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { parseDuration, parseMiB } from '../../../src/cli/sim.js';

function runCli(args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { encoding: 'utf8' });
}

test('durations and sizes parse; nonsense does not', () => {
  assert.equal(parseDuration('2h'), 7200);
  assert.equal(parseDuration('1h30m'), 5400);
  assert.equal(parseDuration('45s'), 45);
  assert.equal(parseDuration('600'), 600);
  assert.throws(() => parseDuration('2 hours'), /bad duration/);
  assert.throws(() => parseDuration(''), /bad duration/);
  assert.equal(parseMiB('2G'), 2048);
  assert.equal(parseMiB('512MiB'), 512);
  assert.equal(parseMiB('1024'), 1024);
  assert.throws(() => parseMiB('lots'), /bad memory size/);
});

test('ballast sim runs a scenario with a policy, prints a summary and writes a CSV series', () => {
  const dir = tempDir('ballast-sim-');
  const out = join(dir, 'series.csv');
  const r = runCli(['sim', '--scenario', 'leak', '--policy', 'policies/default.policy', '--duration', '10m', '--out', out, '--seed', '4']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /scenario leak \(4 guests\), seed 4/);
  assert.match(r.stdout, /throughput +[\d,]+ requests\/s/);
  assert.match(r.stdout, /swap operations/);
  assert.match(r.stdout, /OOM kills/);
  assert.match(r.stdout, /balloon actions/);
  assert.match(r.stderr, /sim: 600 \/ 600 simulated s/);
  const lines = readFileSync(out, 'utf8').trim().split('\n');
  assert.match(lines[0]!, /^t,guests,host_mem_free_kib,/);
  assert.equal(lines.length, 1 + 600 / 5 + 1);
  assert.equal(lines[lines.length - 1]!.split(',')[0], '600');
});

test('ballast sim --json and a JSONL series', () => {
  const dir = tempDir('ballast-sim-');
  const out = join(dir, 'series.jsonl');
  const r = runCli(['sim', '--scenario', 'demo', '--duration', '2m', '--json', '--out', out]);
  assert.equal(r.status, 0, r.stderr);
  const summary = JSON.parse(r.stdout);
  assert.equal(summary.scenario, 'demo');
  assert.equal(summary.duration_s, 120);
  for (const k of ['throughput', 'swap_ops', 'oom_kills', 'balloon_actions', 'pressure_s']) assert.equal(typeof summary[k], 'number', k);
  const rows = readFileSync(out, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.equal(rows.length, 120 / 5 + 1);
  assert.ok(Array.isArray(rows[1].guest) && rows[1].guest[0].name);
});

test('ballast sim refuses bad input with a clear message', () => {
  let r = runCli(['sim', '--scenario', 'nope', '--duration', '1m']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /scenario nope: not a built-in scenario/);
  r = runCli(['sim', '--scenario', 'demo', '--duration', 'soon']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /bad duration "soon"/);
  r = runCli(['sim', '--scenario', 'demo', '--duration', '1m', '--policy', 'test/unit/sim/no-such.policy']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /policy test\/unit\/sim\/no-such\.policy/);
  r = runCli(['sim', '--scenario', 'demo', '--duration', '1m', '--out', '/tmp/x.txt']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /must end in \.csv or \.jsonl/);
});

test('ballast experiment --json prints exactly {experiment, runs} with the three configurations', () => {
  const r = runCli(['experiment', 'memknobs', '--guests', '4', '--guest-mem', '1G', '--host-mem', '3G', '--cpus', '2', '--duration', '10m', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.deepEqual(Object.keys(j), ['experiment', 'runs']);
  assert.equal(j.experiment, 'memknobs');
  assert.deepEqual(
    j.runs.map((x: { config: string }) => x.config),
    ['none', 'ksm', 'balloon+ksm'],
  );
  for (const run of j.runs) for (const k of ['throughput', 'swap_ops', 'oom_kills']) assert.equal(typeof run[k], 'number', k);
  assert.match(r.stderr, /memknobs balloon\+ksm: done/);
});

test("ballast experiment prints a table like the paper's; refuses unknown experiments", () => {
  const r = runCli(['experiment', 'cloudy', '--guests', '4', '--host-mem', '6G', '--cpus', '2', '--duration', '5m']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^cloudy: 4 guests x 1024 MiB/);
  assert.match(r.stdout, /none +[\d,]+/);
  assert.match(r.stdout, /balloon\+ksm +[\d,]+ +[+-]?[\d.]+%/);
  assert.match(r.stdout, /paper \(Cloudy/);
  assert.match(r.stdout, /one guest alone on the host: [\d.]+ requests\/s; per guest above: none [\d.]+/);
  const bad = runCli(['experiment', 'speedy']);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /unknown experiment "speedy"/);
});

test('ballast sim --out: an unwritable path fails before the run; a full disk (/dev/full) fails the run with ENOSPC, exit 1', (t) => {
  const r = runCli(['sim', '--scenario', 'demo', '--duration', '60', '--out', '/proc/no-such-dir/x.csv']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /--out \/proc\/no-such-dir\/x\.csv: cannot write: ENOENT/);
  assert.doesNotMatch(r.stdout, /engine/, 'refused before running');
  if (!existsSync('/dev/full')) {
    t.diagnostic('no /dev/full here: the disk-full half is not checked');
    return;
  }
  const dir = tempDir('ballast-full-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  symlinkSync('/dev/full', join(dir, 'full.csv'));
  const full = runCli(['sim', '--scenario', 'demo', '--duration', '600', '--out', join(dir, 'full.csv')]);
  assert.equal(full.status, 1);
  assert.match(full.stderr, /writing failed: ENOSPC/);
});

test("the demo's targets: 2 h with the default policy against none (issue 25: stall and swap down, no more OOM kills)", () => {
  const run = (policy: string[]) => {
    const r = runCli(['sim', '--scenario', 'demo', '--duration', '2h', ...policy, '--json']);
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as { throughput: number; swap_ops: number; guest_stalled_s: number; oom_kills: number; engine: { rollbacks: number } };
  };
  const none = run([]);
  const def = run(['--policy', 'policies/default.policy']);
  const why = JSON.stringify({ none, def: { ...def, engine: def.engine.rollbacks } });
  assert.ok(def.engine.rollbacks <= 5, why);
  assert.ok(def.guest_stalled_s <= 0.5 * none.guest_stalled_s, why);
  assert.ok(def.swap_ops <= 0.7 * none.swap_ops, why);
  assert.ok(def.oom_kills <= none.oom_kills, why);
  assert.ok(def.throughput >= 3.4e6, why);
});
