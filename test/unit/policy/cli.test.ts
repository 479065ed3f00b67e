// `ballast policy check|eval|fmt`, spawned as a user runs them.
import { test } from 'node:test';
import { tempDir } from '../temp-dir.js';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = new URL('../../../', import.meta.url).pathname;
const dir = tempDir('ballast-policy-');
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};

function cli(args: string[], input?: string) {
  return spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'policy', ...args], { cwd: ROOT, encoding: 'utf8', input });
}

const SNAP = {
  host: { props: {}, stats: [{ mem_available: 1000, mem_free: 100 }], vars: {} },
  guests: [
    { props: { name: 'vm1' }, stats: [{ balloon_cur: 400 }], vars: { n: 1 } },
    { props: { name: 'vm2' }, stats: [{ balloon_cur: 0 }], vars: {} },
  ],
};

test('check: exit 0 when every file parses', () => {
  const r = cli(['check', 'policies/balloon.policy', 'policies/ksm.policy', 'policies/default.policy']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
});

test('check: prints FILE:LINE:COL: message for each bad file, exit 1', () => {
  const bad1 = file('bad1.policy', '(defvar a 1)\n(defvar b ;)\n');
  const bad2 = file('bad2.policy', '(+ 1 2');
  const good = file('good.policy', '(+ 1 2)');
  const r = cli(['check', bad1, good, bad2]);
  assert.equal(r.status, 1);
  assert.deepEqual(r.stderr.trim().split('\n'), [`${bad1}:2:11: unexpected character ';' (U+003B)`, `${bad2}:1:1: unclosed '(' (missing ')')`]);
});

test('check: an unreadable file is a usage error (exit 2)', () => {
  const r = cli(['check', join(dir, 'missing.policy')]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /missing\.policy: cannot read: ENOENT/);
});

test('eval: one snapshot -> one result with controls, vars and errors (line, col, guest)', () => {
  const pol = file(
    'p.policy',
    '(with Guests g {\n  (g.SetVar "n" (+ 1 (or (g.GetVar "n") 0)))\n  (g.Control "balloon_target" (/ 800 g.balloon_cur))\n})\n(Host.Control "ksm_run" 1)\n',
  );
  const snap = file('s.json', JSON.stringify(SNAP));
  const r = cli(['eval', '--policy', pol, '--input', snap]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /"balloon_target": 2\.0/); // Python's float display
  const out = JSON.parse(r.stdout);
  assert.deepEqual(out.host, { controls: { ksm_run: 1 }, vars: {} });
  assert.deepEqual(out.guests, [
    { name: 'vm1', controls: { balloon_target: 2 }, vars: { n: 2 } },
    { name: 'vm2', controls: {}, vars: { n: 1 } },
  ]);
  assert.deepEqual(out.errors, [{ message: 'division by zero', line: 3, col: 31, guest: 'vm2', file: pol }]);
  assert.equal(out.values, undefined);
});

test('eval: an array of snapshots -> an array of results; --values; several --policy in order', () => {
  const a = file('a.policy', '(defvar x 2)\n');
  const b = file('b.policy', '(/ x 4)\n(* x 0.5)\n(with Guests g g.balloon_cur)\nHost\n');
  const snap = file('arr.json', JSON.stringify([SNAP, { ...SNAP, guests: [] }]));
  const r = cli(['eval', '--policy', a, '--policy', b, '--input', snap, '--values']);
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.equal(out.length, 2);
  assert.deepEqual(out[0].values, [2, 0.5, 1, [400, 0], '<Entity Host>']);
  assert.deepEqual(out[1].values, [2, 0.5, 1, [], '<Entity Host>']);
  assert.match(r.stdout, /1\.0,/); // (* 2 0.5) is the float 1.0
});

test('eval: --time prints the evaluation seconds as the last stderr line', () => {
  const pol = file('t.policy', '(debug "hello")\n');
  const snap = file('t.json', JSON.stringify(SNAP));
  const r = cli(['eval', '--policy', pol, '--input', snap, '--time']);
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines[0], "debug: ('hello',)");
  assert.match(lines[lines.length - 1]!, /^\d+\.\d+$/);
});

test('eval: input from stdin with --input -', () => {
  const pol = file('s.policy', 'Host.mem_free\n');
  const r = cli(['eval', '--policy', pol, '--input', '-', '--values'], JSON.stringify(SNAP));
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout).values, [100]);
});

test('eval: bad JSON and bad snapshot shapes are clear errors, exit 2 (more cases in snapshot.test.ts)', () => {
  const pol = file('ok.policy', '1');
  const cases: Array<[string, RegExp]> = [
    ['{"host": ', /invalid JSON/],
    [JSON.stringify({ host: {}, guests: [{ props: {} }] }), /snapshot\.guests\[0\]\.props\.name: /],
  ];
  for (const [text, msg] of cases) {
    const r = cli(['eval', '--policy', pol, '--input', file('bad.json', text)]);
    assert.equal(r.status, 2, text);
    assert.match(r.stderr, msg, text);
    assert.equal(r.stdout, '');
  }
});

test('eval: a policy that does not parse is refused (exit 1), nothing evaluated', () => {
  const pol = file('broken.policy', '(defvar a "oops)\n');
  const r = cli(['eval', '--policy', pol, '--input', file('s2.json', JSON.stringify(SNAP))]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /broken\.policy:1:11: unterminated string/);
  assert.equal(r.stdout, '');
});

test('fmt prints the canonical layout; shipped policies come out unchanged', () => {
  const r = cli(['fmt', file('f.policy', '(defvar   a   1)   # c\n')]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, '(defvar a 1) # c\n');
  const d = cli(['fmt', 'policies/default.policy']);
  assert.equal(d.status, 0);
  assert.equal(d.stdout, readFileSync(join(ROOT, 'policies/default.policy'), 'utf8'));
});
