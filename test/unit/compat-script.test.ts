// scripts/mom-compare (run by hand against a MOM checkout, which CI does not have) must not
// rot: its argument handling, generators and comparison are checked here without MOM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
// @ts-expect-error: a plain JavaScript script, no types
import { compareResults, parseArgs, program, rng, same, snapshot } from '../../scripts/mom-compare/compare.mjs';
import { compilePolicies, evaluate, toPlain } from '../../src/policy/index.js';
import { parseSnapshots } from '../../src/policy/snapshot.js';

const run = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', 'scripts/mom-compare/compare.mjs', ...args], { encoding: 'utf8' });

test('compat script: --help, and clear errors with exit 2 for a missing or wrong --mom', (t) => {
  assert.equal(run(['--help']).status, 0);
  const missing = run([]);
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /--mom PATH .* is required/);
  const dir = mkdtempSync(join(tmpdir(), 'not-mom-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const wrong = run(['--mom', dir]);
  assert.equal(wrong.status, 2);
  assert.match(wrong.stderr, /is not a MOM checkout/);
  assert.throws(() => parseArgs(['--mom', 'x', '--cases', '-1']), /whole number/);
});

test('compat script: seeded generators give the same snapshots and programs again; ballast runs them', () => {
  const a = rng(7);
  const b = rng(7);
  assert.deepEqual(snapshot(a), snapshot(b));
  assert.equal(program(a), program(b));
  const snap = snapshot(rng(3));
  const [s] = parseSnapshots(JSON.stringify([snap]), 'gen').snapshots;
  const r = toPlain(evaluate(compilePolicies([{ name: 'p', text: program(rng(5)) }]), s!.host, s!.guests)) as { guests: unknown };
  assert.ok(Array.isArray(r.guests));
});

test('compat script: numbers compare by value (2 and 2.0), and each kind of disagreement is named', () => {
  assert.ok(same({ a: 2, b: [1, { c: 0.1 + 0.2 }] }, { b: [1, { c: 0.3 }], a: 2.0 }));
  assert.ok(!same({ a: 1 }, { a: 1, b: 2 }));
  const ok = { host: { controls: { ksm_run: 1 }, vars: {} }, guests: [{ name: 'g', controls: { balloon_target: 5 }, vars: {} }] };
  assert.equal(compareResults(ok, { ...ok, errors: [] }), 'same');
  assert.equal(compareResults({ error: 'x' }, { ...ok, errors: [{ message: 'y' }] }), 'both-error');
  assert.equal(compareResults(ok, { ...ok, errors: [{ message: 'result too long (5 elements; limit 1)' }] }), 'intended');
  assert.match(compareResults(ok, { ...ok, guests: [{ name: 'g', controls: { balloon_target: 6 }, vars: {} }], errors: [] }), /g controls/);
  assert.match(compareResults({ error: 'KeyError' }, { ...ok, errors: [] }), /MOM aborted/);
});
