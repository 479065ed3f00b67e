// The entities: fields, Stat, StatAvg, Prop, SetVar/GetVar, Control/GetControl, and the
// per-guest isolation of errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compilePolicies, evaluate } from '../../../src/policy/index.js';
import { stringifyPyJson } from '../../../src/policy/json.js';
import { HOST, err, guest, host, py, run } from './helpers.js';

const G = [guest('vm1', { balloon_cur: 100, mem_unused: 10 }, { balloon_cur: 200, mem_unused: null, rss: 7 })];

test('x.field is the newest sample; a missing field is an undefined symbol', () => {
  assert.equal(py('(with Guests g g.balloon_cur)', G), '[200]');
  assert.equal(py('(with Guests g g.mem_unused)', G), '[null]');
  assert.equal(py('Host.mem_free'), '500');
  assert.match(err('(with Guests g g.swap_in)', G).message, /undefined symbol g\.swap_in/);
  assert.match(err('nothing.field').message, /undefined symbol nothing\.field/);
});

test('Stat: newest value, nil (or the default) when absent, error for unknown fields', () => {
  assert.equal(py('(with Guests g (g.Stat "balloon_cur"))', G), '[200]');
  assert.equal(py('(with Guests g (g.Stat "swap_in"))', G), '[null]');
  assert.equal(py('(with Guests g (g.Stat "swap_in" 5))', G), '[5]');
  assert.equal(py('(with Guests g (g.Stat "rss"))', G), '[7]');
  const e = err('(with Guests g (g.Stat "bogus"))', G);
  assert.match(e.message, /Field 'bogus' is not declared in any collector/);
  assert.equal(e.guest, 'vm1');
  assert.equal(py('(Host.Stat "mem_free")'), '500');
  const empty = run('(Host.Stat "mem_free")', host());
  assert.deepEqual(empty.values, [null]);
});

test('StatAvg: mean over the history, nil samples skipped, 0.0 when none has it', () => {
  assert.equal(py('(with Guests g (g.StatAvg "balloon_cur"))', G), '[150.0]');
  assert.equal(py('(with Guests g (g.StatAvg "mem_unused"))', G), '[10.0]');
  assert.equal(py('(with Guests g (g.StatAvg "swap_out"))', G), '[0.0]');
  assert.match(err('(with Guests g (g.StatAvg "nope"))', G).message, /not declared/);
  const none = run('(Host.StatAvg "mem_free")', host());
  assert.match(none.errors[0]!.message, /Statistic 'mem_free' not available/);
  assert.equal(py('(with Guests g (g.StatAvg "x"))', [guest('a', { x: 1 }, { x: 2 }, { x: 4 })]), '[2.3333333333333335]');
});

test('Prop: a property; a missing one is an error', () => {
  assert.equal(py('(with Guests g (g.Prop "uuid"))', G), '["uuid-vm1"]');
  assert.equal(py('(Host.Prop "name")'), '"host"');
  assert.match(err('(Host.Prop "pid")').message, /no property 'pid'/);
});

test('SetVar/GetVar keep values on the entity; inputs are not mutated', () => {
  const g = guest('vm1', { balloon_cur: 1 });
  g.vars = { seen: 1 };
  const before = JSON.stringify(g);
  const r = run('(with Guests g { (g.SetVar "seen" (+ (g.GetVar "seen") 1)) (g.GetVar "seen") })\n(Host.SetVar "k" "v")\n(Host.GetVar "missing")', HOST, [g]);
  assert.deepEqual(r.errors, []);
  assert.deepEqual(r.values, [[2], null, null]);
  assert.deepEqual(r.guests[0]!.vars, { seen: 2 });
  assert.deepEqual(r.host.vars, { k: 'v' });
  assert.equal(JSON.stringify(g), before);
  assert.deepEqual(HOST.vars, {});
});

test('Control/GetControl: requests per entity, read back in the same evaluation', () => {
  const r = run(
    '(Host.Control "ksm_run" 1)\n(Host.GetControl "ksm_run")\n(Host.GetControl "ksm_pages_to_scan")\n' +
      '(with Guests g { (g.Control "balloon_target" 50) (g.GetControl "balloon_target") })',
    HOST,
    G,
  );
  assert.deepEqual(r.values, [null, 1, null, [50]]);
  assert.deepEqual(r.host.controls, { ksm_run: 1 });
  assert.deepEqual(r.guests, [{ name: 'vm1', controls: { balloon_target: 50 }, vars: {} }]);
});

test('entity methods check their arity', () => {
  assert.match(err('(Host.Control "x")').message, /Control\(\) takes 2 arguments \(1 given\)/);
  assert.match(err('(Host.Stat)').message, /Stat\(\) takes 1 to 2 arguments/);
  assert.match(err('(Host.GetVar 1 2)').message, /GetVar\(\) takes 1 argument/);
});

test('a method used as a value is a callable', () => {
  assert.equal(py('(defvar f Host.Stat) (f "mem_free")'), '500');
});

test("an error in one guest's part drops only that guest's controls and goes on", () => {
  const gs = [guest('ok1', { balloon_cur: 100 }), guest('bad', { balloon_cur: 0 }), guest('ok2', { balloon_cur: 300 })];
  const r = run(
    '(Host.Control "ksm_run" 1)\n(with Guests g {\n  (g.Control "balloon_target" 1)\n  (g.Control "balloon_target" (/ 1000 g.balloon_cur))\n})',
    HOST,
    gs,
  );
  assert.equal(r.aborted, false);
  assert.deepEqual(r.values, [null, [null, null, null]]);
  assert.deepEqual(r.errors, [{ message: 'division by zero', line: 4, col: 31, guest: 'bad', file: 'test.policy' }]);
  assert.equal(
    stringifyPyJson(
      r.guests.map((g) => g.controls),
      0,
    ),
    `[{"balloon_target":10.0},{},{"balloon_target":${1000 / 300}}]`,
  );
  assert.deepEqual(r.host.controls, { ksm_run: 1 });
});

test('a guest that failed keeps no controls even if a later part sets some', () => {
  const gs = [guest('bad', { balloon_cur: 0 })];
  const r = run('(with Guests g (/ 1 g.balloon_cur))\n(with Guests g (g.Control "balloon_target" 5))', HOST, gs);
  assert.equal(r.errors.length, 1);
  assert.deepEqual(r.guests[0]!.controls, {});
});

test('scopes are restored after a guest fails inside nested calls', () => {
  const gs = [guest('a', { balloon_cur: 0 }), guest('b', { balloon_cur: 4 })];
  const r = run('(defvar x 1)\n(def inner (v) (let ((x 99)) (/ 8 v)))\n(with Guests g (inner g.balloon_cur))\nx', HOST, gs);
  assert.equal(stringifyPyJson(r.values, 0), '[1,"inner",[null,2.0],1]');
  assert.equal(r.errors[0]!.guest, 'a');
});

test("an error outside a guest's part aborts: nothing applied, vars unchanged", () => {
  const g = guest('vm1', { balloon_cur: 10 });
  const r = run('(with Guests g { (g.Control "balloon_target" 5) (g.SetVar "a" 1) })\n(Host.Control "ksm_run" 1)\n(+ 1 "x")', HOST, [g]);
  assert.equal(r.aborted, true);
  assert.deepEqual(r.host.controls, {});
  assert.deepEqual(r.guests[0]!.controls, {});
  assert.deepEqual(r.guests[0]!.vars, {});
  assert.equal(r.errors[0]!.guest, undefined);
  assert.deepEqual([r.errors[0]!.line, r.errors[0]!.col], [3, 1]);
});

test('stats histories are read in place, not copied', () => {
  // Count element reads: reading g.balloon_cur needs the newest sample only.
  let reads = 0;
  const history = Array.from({ length: 1000 }, (_, i) => ({ balloon_cur: i }));
  const counted = new Proxy(history, {
    get(target, key, recv) {
      if (typeof key === 'string' && /^\d+$/.test(key)) reads++;
      return Reflect.get(target, key, recv);
    },
  });
  const p = compilePolicies([{ name: 'p', text: '(with Guests g (g.Control "balloon_target" g.balloon_cur))' }]);
  const r = evaluate(p, HOST, [{ props: { name: 'a' }, stats: counted, vars: {} }]);
  assert.deepEqual(r.guests[0]!.controls, { balloon_target: 999 });
  assert.equal(reads, 1);
});

test('plain output by default: integral floats come back as JS numbers', () => {
  const p = compilePolicies([{ name: 'p', text: '(Host.Control "x" (/ 4 2))\n(/ 4 2)' }]);
  const r = evaluate(p, HOST, [], { collectValues: true });
  assert.deepEqual(r.host.controls, { x: 2 });
  assert.deepEqual(r.values, [null, 2]);
});

test('JSON objects in vars and props behave as Python dicts', () => {
  const g = guest('vm1', { balloon_cur: 1 });
  g.vars = { cfg: { a: 1 }, empty: {} };
  const lines: string[] = [];
  const r = run('(with Guests g { (debug (g.GetVar "cfg")) (if (g.GetVar "empty") 1 2) })', HOST, [g], { debug: (t) => lines.push(t) });
  assert.deepEqual(r.errors, []);
  assert.deepEqual(r.values, [[2]]);
  assert.deepEqual(lines, ["debug: ({'a': 1},)"]);
  assert.match(err('(+ (Host.Prop "name") (Host.GetVar "x"))').message, /concatenate str \(not "NoneType"\)/);
});

test("a dotted name skips inner bindings that lack the attribute, as MOM's scope walk does", () => {
  const gs = [guest('vm1', { balloon_cur: 5 })];
  assert.equal(py('(let ((Host 1)) Host.mem_free)'), '500');
  assert.equal(py('(let ((Host 1)) (Host.Stat "mem_free"))'), '500');
  assert.equal(py('(defvar g Host) (with Guests g g.mem_free)', gs), '[500]');
  assert.equal(py('(defvar g Host) (with Guests g g.balloon_cur)', gs), '[5]');
  assert.match(err('(let ((Host 1)) Host.nothing)').message, /undefined symbol Host\.nothing/);
  assert.match(err('(let ((x 1)) (x.Stat "mem_free"))').message, /unknown function x\.Stat/);
});

test('variable and control names that are not strings follow Python dict keys (momcheck)', () => {
  // True, 1 and 1.0 are one key, named by its first spelling; nil is a key; output names
  // are what Python's json.dumps writes for such keys.
  const r = run(
    '(Host.SetVar (< 1 2) 5)\n(Host.GetVar 1)\n(Host.SetVar 1.0 6)\n(Host.GetVar (< 1 2))\n' +
      '(Host.SetVar nil 7)\n(Host.GetVar nil)\n(Host.SetVar -0.0 8)\n(Host.GetVar 0)\n(Host.SetVar 0.25 9)\n' +
      '(Host.Control 2 3)\n(Host.GetControl 2.0)\n(Host.GetVar "1")\n(Host.GetVar Guests)',
  );
  assert.deepEqual(r.errors, []);
  assert.deepEqual(r.values, [null, 5, null, 6, null, 7, null, 8, null, null, 3, null, null]);
  assert.equal(stringifyPyJson(r.host, 0), '{"controls":{"2":3},"vars":{"true":6,"null":7,"-0.0":8,"0.25":9}}');
  assert.match(err('(Host.SetVar (with Guests g 1) 1)').message, /unhashable type: 'list'/);
});

test('a non-string variable name kept from an earlier cycle is found under its JSON text', () => {
  const h = host({ mem_available: 1 });
  h.vars = { '1': 'earlier', '1.5': 'f' };
  const r = run('(Host.GetVar 1)\n(Host.GetVar 1.5)', h);
  assert.deepEqual(r.values, ['earlier', 'f']);
});
