// scripts/mom-compare (run by hand against a MOM checkout, which CI does not have) must not
// rot: its argument handling, generators and comparison are checked here, and the whole
// pipeline once against a tiny fake MOM (a stand-in Entity and Parser written here).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
// @ts-expect-error: a plain JavaScript script, no types
import * as compat from '../../scripts/mom-compare/compare.mjs';
import { compilePolicies, evaluate } from '../../src/policy/index.js';
import { parseSnapshots } from '../../src/policy/snapshot.js';

const run = (args: string[]) => spawnSync(process.execPath, ['scripts/mom-compare/compare.mjs', ...args], { encoding: 'utf8' });
const hasPython = spawnSync('python3', ['--version']).status === 0;

test('compat script: --help, and clear errors with exit 2 for a missing or wrong --mom or a bad number', (t) => {
  const help = run(['--help']);
  assert.equal(help.status, 0);
  assert.match(help.stdout, /--mom PATH/);
  const missing = run([]);
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /--mom PATH .* is required/);
  const dir = mkdtempSync(join(tmpdir(), 'not-mom-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const wrong = run(['--mom', dir]);
  assert.equal(wrong.status, 2);
  assert.match(wrong.stderr, /is not a MOM checkout/);
  assert.throws(() => compat.parseArgs(['--mom', 'x', '--cases', '-1']), /whole number/);
  assert.throws(() => compat.parseArgs(['--mom', 'x', '--frobnicate']), /unknown argument/);
  assert.throws(() => compat.listPolicies([join(dir, 'nope.policy')]), /no such file/);
  const o = compat.parseArgs(['--mom', 'm', '--policies', 'a.policy', '--policies=b', '--random-programs', '5', '--no-mom-examples']);
  assert.deepEqual([o.mom, o.policies, o.cases, o.randomPrograms, o.seed, o.momExamples], ['m', ['a.policy', 'b'], 200, 5, 7, false]);
});

test('compat script: seeded generators give the same snapshots and programs again; ballast runs them', () => {
  const a = compat.rng(7);
  const b = compat.rng(7);
  assert.deepEqual(compat.snapshot(a), compat.snapshot(b));
  assert.equal(compat.program(a), compat.program(b));
  const [s] = parseSnapshots(JSON.stringify([compat.snapshot(compat.rng(3))]), 'gen').snapshots;
  const r = evaluate(compilePolicies([{ name: 'p', text: compat.program(compat.rng(5)) }]), s!.host, s!.guests);
  assert.ok(Array.isArray(r.guests));
});

test('compat script: numbers compare within 1e-9 relative, NaN/Infinity are read, each kind of disagreement is named', () => {
  assert.ok(compat.same({ a: 2, b: [1, { c: 0.1 + 0.2 }] }, { b: [1, { c: 0.3 }], a: 2.0 }));
  assert.ok(!compat.same({ a: 1 }, { a: 1, b: 2 }));
  assert.ok(!compat.same({ a: 1 }, { a: 1.000001 }));
  assert.deepEqual(compat.parseResultJson('[NaN, -Infinity, "NaN", 1]'), [{ $float: 'nan' }, { $float: '-inf' }, 'NaN', 1]);
  const ok = { host: { controls: { ksm_run: 1 }, vars: {} }, guests: [{ name: 'g', controls: { balloon_target: 5 }, vars: {} }] };
  assert.equal(compat.compareResults(ok, { ...ok, errors: [] }), 'identical');
  assert.equal(compat.compareResults({ error: 'x' }, { ...ok, errors: [{ message: 'y' }] }), 'both-error');
  assert.equal(compat.compareResults(ok, { ...ok, errors: [{ message: 'result too long (5 elements; limit 1)' }] }), 'intended');
  assert.match(compat.compareResults(ok, { ...ok, guests: [{ name: 'g', controls: { balloon_target: 6 }, vars: {} }], errors: [] }), /g controls/);
  assert.match(compat.compareResults({ error: 'KeyError' }, { ...ok, errors: [] }), /MOM aborted/);
  const c = compat.newCounts();
  for (const v of ['identical', 'both-error', 'host controls: ...']) compat.tally(c, v);
  assert.equal(compat.summaryLine('p.policy', c), 'p.policy: 3 cases, 1 identical, 1 both-error, 1 different');
});

// A stand-in for MOM's engine: understands only (Host.Control "NAME" N), and adds 1 when the
// host's mem_free is odd, so one run has both identical and different cases.
const FAKE_ENTITY = `
class Entity:
    def __init__(self, monitor=None):
        self.properties, self.variables, self.statistics, self.controls = {}, {}, [], {}
    def _set_property(self, k, v): self.properties[k] = v
    def _set_variable(self, k, v): self.variables[k] = v
    def _set_statistics(self, rows): self.statistics.extend(rows)
    def _finalize(self):
        for k, v in (self.statistics[-1] if self.statistics else {}).items(): setattr(self, k, v)
    def Prop(self, k): return self.properties[k]
    def Control(self, k, v): self.controls[k] = v
`;
const FAKE_PARSER = `
import re
class Stack:
    def __init__(self): self.names = {}
    def set(self, name, value, alloc=False): self.names[name] = value
class Evaluator:
    def __init__(self): self.stack = Stack()
    def eval(self, expr):
        host = self.stack.names['Host']
        host.Control(expr[0], expr[1] + host.mem_free % 2)
def get_code(evaluator, text):
    return [(m.group(1), int(m.group(2))) for m in re.finditer(r'\\(Host\\.Control "(\\w+)" (\\d+)\\)', text)]
`;

test('compat script: the whole run against a fake MOM: a summary line per policy, differences with files to reproduce, exit 1', {
  skip: !hasPython && 'no python3',
}, (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fake-mom-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'mom', 'Policy'), { recursive: true });
  writeFileSync(join(dir, 'mom', 'Entity.py'), FAKE_ENTITY);
  writeFileSync(join(dir, 'mom', 'Policy', 'Parser.py'), FAKE_PARSER);
  writeFileSync(join(dir, 'p.policy'), '(Host.Control "x" 4)\n');
  const r = run(['--mom', dir, '--policies', join(dir, 'p.policy'), '--cases', '8', '--random-programs', '0', '--no-mom-examples', '--show', '1']);
  const out = /reproduction files under (\S+)/.exec(r.stdout)?.[1];
  if (out) t.after(() => rmSync(out, { recursive: true, force: true }));
  assert.equal(r.status, 1, r.stderr);
  const m = /p\.policy: 8 cases, (\d+) identical, 0 both-error, (\d+) different/.exec(r.stdout);
  assert.ok(m, r.stdout);
  assert.ok(Number(m[1]) > 0 && Number(m[2]) > 0 && Number(m[1]) + Number(m[2]) === 8, r.stdout);
  assert.match(r.stdout, /host controls: MOM \{"x":5\}, ballast \{"x":4\}/);
  assert.match(r.stdout, /MOM: +python3 .*mom_eval\.py --mom .* --input \S+snapshot\.json/);
  assert.match(r.stdout, /ballast: node --import tsx src\/cli\/main\.ts policy eval --input \S+snapshot\.json --policy /);
});
