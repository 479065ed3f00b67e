// Runaway policies stop with a clean error: step budget, recursion depth, deep nesting.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_NESTING } from '../../../src/policy/parser.js';
import { DEFAULT_MAX_DEPTH } from '../../../src/policy/index.js';
import { MAX_ERRORS } from '../../../src/policy/evaluate.js';
import { HOST, guest, run } from './helpers.js';

test('infinite recursion stops at the depth limit with line:col', () => {
  const r = run('(def loop (n) (loop (+ n 1)))\n(loop 0)');
  assert.equal(r.aborted, true);
  assert.equal(r.errors.length, 1);
  assert.match(r.errors[0]!.message, new RegExp(`recursion deeper than ${DEFAULT_MAX_DEPTH} calls \\(in loop\\)`));
  assert.deepEqual([r.errors[0]!.line, r.errors[0]!.col], [1, 15]);
});

test('the depth limit is configurable; recursion within it works', () => {
  const src = '(def down (n) (if (<= n 0) 0 (+ 1 (down (- n 1)))))\n(down 50)';
  assert.deepEqual(run(src).values, ['down', 50]);
  const r = run(src, HOST, [], { maxDepth: 10 });
  assert.match(r.errors[0]!.message, /recursion deeper than 10/);
});

test('exponential work stops at the step budget', () => {
  const src = '(def fib (n) (if (< n 2) n (+ (fib (- n 1)) (fib (- n 2)))))\n(fib 60)';
  const r = run(src, HOST, [], { stepBudget: 100_000 });
  assert.equal(r.aborted, true);
  assert.match(r.errors[0]!.message, /step budget of 100000 exhausted/);
});

test('the default budget stops a runaway without hanging', () => {
  const r = run('(def fib (n) (if (< n 2) n (+ (fib (- n 1)) (fib (- n 2)))))\n(fib 80)');
  assert.match(r.errors[0]!.message, /step budget/);
});

test('the budget is global: one guest burning it aborts the whole evaluation', () => {
  const gs = [guest('a', { balloon_cur: 1 }), guest('b', { balloon_cur: 1 })];
  const src = '(def spin (n) (if (< n 0) 0 (+ (spin (- n 1)) (spin (- n 1)))))\n(with Guests g (spin 40))';
  const r = run(src, HOST, gs, { stepBudget: 50_000 });
  assert.equal(r.aborted, true);
  assert.equal(r.errors.length, 1);
});

test("the recursion limit is fatal even inside a guest's part (as MOM's RecursionError)", () => {
  const gs = [guest('deep', { balloon_cur: 10_000 }), guest('shallow', { balloon_cur: 3 })];
  const src = '(def down (n) (if (<= n 0) 0 (+ 1 (down (- n 1)))))\n(with Guests g (g.Control "balloon_target" (down g.balloon_cur)))';
  const r = run(src, HOST, gs);
  assert.equal(r.aborted, true);
  assert.equal(r.errors.length, 1);
  assert.deepEqual(
    r.guests.map((g) => g.controls),
    [{}, {}],
  );
});

test('runaway recursion through with and guests ends at once (harness case H2)', () => {
  const gs = [guest('a', { balloon_cur: 1 })];
  const r = run('(defvar x 1)\n(defun g (p) (g (with Guests guest (g Host.mem_free))))\n(g x)', HOST, gs);
  assert.equal(r.aborted, true);
  assert.equal(r.errors.length, 1);
  assert.match(r.errors[0]!.message, /recursion deeper than 400/);
});

test('guest errors are listed up to a limit, then summed up in one entry', () => {
  const gs = Array.from({ length: 250 }, (_, i) => guest(`vm${i}`, { balloon_cur: 0 }));
  const r = run('(with Guests g (/ 1 g.balloon_cur))', HOST, gs);
  assert.equal(r.aborted, false);
  assert.equal(r.errors.length, MAX_ERRORS + 1);
  assert.match(r.errors[MAX_ERRORS]!.message, /^150 more error\(s\) not listed; the last: division by zero$/);
  assert.equal(r.errors[MAX_ERRORS]!.guest, 'vm249');
});

test('failing guest parts cost steps, so error loops end at the budget quickly', () => {
  const gs = Array.from({ length: 10 }, (_, i) => guest(`vm${i}`, { balloon_cur: 0 }));
  const src = '(def again (n) { (with Guests g (/ 1 g.balloon_cur)) (if (> n 0) (again (- n 1)) 0) })\n(again 300)';
  const r = run(src, HOST, gs, { stepBudget: 100_000 });
  assert.equal(r.aborted, true);
  assert.match(r.errors[r.errors.length - 1]!.message, /step budget/);
});

test('deeply nested source evaluates without overflowing the JS stack', () => {
  const n = MAX_NESTING - 1;
  const src = '(+ 1 '.repeat(n) + '0' + ')'.repeat(n);
  assert.deepEqual(run(src).values, [n]);
});

test('deep nesting inside deep recursion ends in a clean error, never a crash', () => {
  const body = '(+ 1 '.repeat(900) + '(f (- n 1))' + ')'.repeat(900);
  const src = `(def f (n) (if (<= n 0) 0 ${body}))\n(f 300)`;
  const r = run(src, HOST, [], { maxDepth: 100_000 });
  assert.equal(r.aborted, true);
  assert.match(r.errors[0]!.message, /too deep for the evaluator stack|recursion deeper/);
});

test('building huge strings is refused, not attempted', () => {
  const r = run('(defvar s "abcdefgh")\n(* s 100000000)');
  assert.match(r.errors[0]!.message, /result too long/);
});

test('repeating an empty string or list any number of times is instant', () => {
  const r = run('(defvar e (with Guests g 1))\n(* e 1000000000000000)\n(* "" 1000000000000000)');
  assert.deepEqual(r.errors, []);
  assert.deepEqual(r.values, [[], [], '']);
});
