// Every form of the language, with MOM's (Python's) semantics.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { err, py, run } from './helpers.js';

test('numbers: ints, floats, hex, octal, exponents, attached minus', () => {
  assert.equal(py('42'), '42');
  assert.equal(py('-7'), '-7');
  assert.equal(py('0.2'), '0.2');
  assert.equal(py('.5'), '0.5');
  assert.equal(py('1e3'), '1000.0');
  assert.equal(py('2.5E-3'), '0.0025');
  assert.equal(py('0x1F'), '31');
  assert.equal(py('0o17'), '15');
  assert.equal(py('(- 5 -3)'), '8');
});

test('strings keep backslash escapes as written; both quote kinds', () => {
  assert.equal(py('"a\\nb"'), JSON.stringify('a\\nb'));
  assert.equal(py("'it'"), '"it"');
  assert.equal(py('"say \\"hi\\""'), JSON.stringify('say \\"hi\\"'));
});

test('arithmetic: true division, exact ints, bools as 1 and 0', () => {
  assert.equal(py('(/ 7 2)'), '3.5');
  assert.equal(py('(/ 4 2)'), '2.0');
  assert.equal(py('(+ 1 2)'), '3');
  assert.equal(py('(+ 1 2.0)'), '3.0');
  assert.equal(py('(* 4503599627370495 2)'), '9007199254740990');
  assert.equal(py('(+ (< 1 2) (< 1 2))'), '2');
  assert.equal(py('(* (> 1 2) 5)'), '0');
  assert.equal(py('(- 0.5 0.5)'), '0.0');
  assert.equal(py('(* 0.1 3)'), '0.30000000000000004');
  assert.equal(py('(/ 1 3)'), '0.3333333333333333');
  assert.equal(py('(* 1e16 1)'), '1e+16');
  assert.equal(py('(/ 1 100000)'), '1e-05');
});

test('strings: + joins, * repeats either way, other mixes are errors', () => {
  assert.equal(py('(+ "ab" "cd")'), '"abcd"');
  assert.equal(py('(* 3 "ab")'), '"ababab"');
  assert.equal(py('(* "ab" 2)'), '"abab"');
  assert.equal(py('(* "ab" -1)'), '""');
  assert.match(err('(+ "a" 1)').message, /concatenate str/);
  assert.match(err('(- "a" "b")').message, /unsupported operand/);
  assert.match(err('(* "a" 1.5)').message, /non-int of type 'float'/);
  assert.match(err('(< "a" 1)').message, /not supported between instances of 'str' and 'int'/);
  assert.equal(py('(< "abc" "abd")'), 'true');
});

test('comparisons and equality follow Python', () => {
  assert.equal(py('(== 1 1.0)'), 'true');
  assert.equal(py('(== 1 (< 0 1))'), 'true'); // 1 == True
  assert.equal(py('(== "1" 1)'), 'false');
  assert.equal(py('(!= nil 0)'), 'true');
  assert.equal(py('(== nil nil)'), 'true');
  assert.equal(py('(<= 2 2)'), 'true');
  assert.equal(py('(>= 1 2)'), 'false');
  assert.equal(py('(> 2.5 2)'), 'true');
  assert.match(err('(< nil 1)').message, /'<' not supported/);
});

test('shifts need integers', () => {
  assert.equal(py('(<< 1 10)'), '1024');
  assert.equal(py('(>> 1024 3)'), '128');
  assert.equal(py('(>> -5 1)'), '-3');
  assert.equal(py('(>> -1 1024)'), '-1'); // Python floors; 2 ** 1024 overflows doubles
  assert.equal(py('(>> -1 5000)'), '-1');
  assert.equal(py('(>> 7 1030)'), '0');
  assert.equal(py('(<< (< 0 1) 2)'), '4');
  assert.match(err('(<< 1.5 2)').message, /unsupported operand/);
  assert.match(err('(>> 4 -1)').message, /negative shift count/);
});

test('truthiness: 0, 0.0, nil, false, "" and empty lists are false', () => {
  for (const f of ['0', '0.0', 'nil', '(< 2 1)', '""', '(with nothing x x)']) {
    const pre = f.includes('nothing') ? '(defvar nothing "")\n' : '';
    assert.equal(py(`${pre}(if ${f} 1 2)`), '2', f);
  }
  for (const t of ['1', '-1', '0.5', '"x"', '(< 1 2)']) assert.equal(py(`(if ${t} 1 2)`), '1', t);
});

test('defvar defines once per scope and returns the value', () => {
  assert.equal(py('(defvar a 1)'), '1');
  assert.equal(py('(defvar a 1) (defvar a 2) a'), '1');
  assert.equal(py('(defvar a 1) (defvar a 2)'), '1');
  assert.equal(py('(defvar a 1) (let ((b 0)) (defvar a 5) a)'), '5');
  assert.equal(py('(defvar a 1) (let ((b 0)) (defvar a 5)) a'), '1');
});

test('set and setq assign the nearest binding; undefined is an error', () => {
  assert.equal(py('(defvar a 1) (set a 2) a'), '2');
  assert.equal(py('(defvar a 1) (setq a 3)'), '3');
  assert.equal(py('(defvar a 1) (let ((b 0)) (set a 7)) a'), '7');
  assert.equal(py('(defvar a 1) (let ((a 0)) (set a 7)) a'), '1');
  const e = err('(set nope 1)');
  assert.match(e.message, /undefined symbol nope/);
  assert.deepEqual([e.line, e.col], [1, 1]);
});

test('def and defun define functions and return their name', () => {
  assert.equal(py('(def f (x) (* x 2))'), '"f"');
  assert.equal(py('(def f (x) (* x 2)) (f 21)'), '42');
  assert.equal(py('(defun g (a b) (- a b)) (g 5 3)'), '2');
  assert.equal(py('(def h () 7) (h)'), '7');
  assert.equal(py('(def f [x] (+ x 1)) (f 1)'), '2');
  assert.match(err('(def f (x) x) (f 1 2)').message, /takes 1 argument/);
  assert.match(err('(f 1)').message, /unknown function f/);
});

test("dynamic scoping: a function sees its caller's variables", () => {
  assert.equal(py('(def show () y) (def caller (y) (show)) (caller 9)'), '9');
  assert.equal(py('(defvar y 1) (def show () y) (def caller (y) (show)) (caller 9)'), '9');
  assert.match(err('(def show () y) (show)').message, /undefined symbol y/);
  // Arguments are evaluated in the caller, before the call's scope exists.
  assert.equal(py('(defvar x 1) (defvar y 2) (def f (y x) (- y x)) (f x y)'), '-1');
});

test('let: new scope, sequential bindings, value of the last body expression', () => {
  assert.equal(py('(let ((a 1) (b 2)) (+ a b))'), '3');
  assert.equal(py('(let ((a 1) (b (+ a 1))) b)'), '2');
  assert.equal(py('(let ((a 1)) 5 6 (+ a 6))'), '7');
  assert.equal(py('(defvar a 10) (let ((a 1)) a) a'), '10');
  assert.match(err('(let ((a 1)))').message, /let takes at least 2/);
  assert.match(err('(let (a 1) a)').message, /\(name value\) pair/);
  assert.match(err('(let ((1 2)) 1)').message, /must be a symbol/);
});

test('if takes exactly three arguments and evaluates only the chosen branch', () => {
  assert.equal(py('(if 1 2 3)'), '2');
  assert.equal(py('(if 0 2 3)'), '3');
  assert.equal(py('(if 1 5 (/ 1 0))'), '5');
  const e = err('(if 1 2)');
  assert.match(e.message, /if takes 3 arguments, got 2/);
  assert.match(err('(if 1 2 3 4)').message, /if takes 3 arguments, got 4/);
});

test('and/or evaluate every argument, then pick like Python', () => {
  assert.equal(py('(and 1 2 3)'), '3');
  assert.equal(py('(and 1 0 3)'), '0');
  assert.equal(py('(or 0 "" 4)'), '4');
  assert.equal(py('(or 0 "")'), '""');
  assert.equal(py('(and 5)'), '5');
  // No short-circuit: the later argument still runs (and can fail).
  assert.equal(py('(defvar n 0) (and 0 (set n 1)) n'), '1');
  assert.equal(py('(defvar n 0) (or 1 (set n 2)) n'), '2');
  assert.match(err('(or 1 (/ 1 0))').message, /division by zero/);
  assert.match(err('(and)').message, /at least 1/);
  assert.match(err('(or)').message, /at least 1/);
});

test('not, min, max, abs', () => {
  assert.equal(py('(not 0)'), 'true');
  assert.equal(py('(not "x")'), 'false');
  assert.match(err('(not)').message, /not takes 1 argument/);
  assert.match(err('(not 1 2)').message, /not takes 1 argument/);
  assert.equal(py('(min 3 1 2)'), '1');
  assert.equal(py('(max 3 1 2.5)'), '3');
  assert.equal(py('(max 1 1.0)'), '1');
  assert.equal(py('(min 7)'), '7');
  assert.equal(py('(min "b" "a")'), '"a"');
  assert.match(err('(min)').message, /at least 1/);
  assert.match(err('(max 1 "a")').message, /not supported/);
  assert.equal(py('(abs -3)'), '3');
  assert.equal(py('(abs -2.0)'), '2.0');
  assert.match(err('(abs "x")').message, /bad operand type for abs/);
  assert.match(err('(abs 1 2)').message, /exactly one argument/);
});

test('null and valid', () => {
  assert.equal(py('(null nil)'), 'true');
  assert.equal(py('(null nil "")'), 'true');
  assert.equal(py('(null 0)'), 'false');
  assert.equal(py('(null "a")'), 'false');
  assert.equal(py('(null)'), 'true');
  assert.equal(py('(valid 1 0 "")'), 'true');
  assert.equal(py('(valid 1 nil)'), 'false');
  assert.equal(py('(valid)'), 'true');
});

test('debug logs its values and returns the last', () => {
  const lines: string[] = [];
  const r = run('(debug 1 "a" 2.0)', undefined, [], { debug: (t) => lines.push(t) });
  assert.deepEqual(r.errors, []);
  assert.deepEqual(lines, ["debug: (1, 'a', 2.0)"]);
  assert.match(err('(debug)').message, /at least one/);
});

test('nil, blocks and brackets', () => {
  assert.equal(py('nil'), 'null');
  assert.equal(py('{ 1 2 3 }'), '3');
  assert.equal(py('(eval 1 2)'), '2');
  assert.match(err('{}').message, /empty block/);
  assert.match(err('()').message, /empty list/);
  assert.equal(py('[+ 1 2]'), '3'); // brackets are lists too, as in MOM
  assert.match(err('(1 2)').message, /cannot be called/);
  assert.match(err('((f) 2)').message, /function name or operator/);
  assert.match(err('(defvar x 1) (x 2)').message, /'int' object is not callable/);
});

test('operator names work as symbols too (MOM maps + to add)', () => {
  assert.equal(py('(add 1 2)'), '3');
  assert.equal(py('(lte 2 2)'), 'true');
});

test('with evaluates the body per item and returns the list', () => {
  assert.equal(py('(defvar xs (with Guests g 1)) xs'), '[]');
  const gs = [
    { props: { name: 'a' }, stats: [{ balloon_cur: 10 }], vars: {} },
    { props: { name: 'b' }, stats: [{ balloon_cur: 20 }], vars: {} },
  ];
  assert.equal(py('(with Guests g (* 2 g.balloon_cur))', gs), '[20,40]');
  assert.equal(py('(defvar ys (with Guests g g.balloon_cur)) (with ys y (+ y 1))', gs), '[11,21]');
  assert.match(err('(defvar n 5) (with n x x)').message, /not iterable/);
  assert.match(err('(with Guests 5 1)').message, /argument 2 must be a symbol/);
  assert.match(err('(with nope x 1)').message, /undefined symbol nope/);
});

test('top-level values: def gives the name, defvar the value, with the list', () => {
  const r = run('(def f () 1)\n(defvar v 2)\n(with Guests g 3)');
  assert.deepEqual(r.values, ['f', 2, []]);
});

test('runtime errors carry line and column of the failing form', () => {
  const cases: Array<[string, RegExp, number, number]> = [
    ['1\n  (+ 1 nope)', /undefined symbol nope/, 2, 8],
    ['(def f (a) a)\n\n   (f)', /takes 1 argument/, 3, 4],
    ['(if 1\n (/ 10 0) 2)', /division by zero/, 2, 2],
    ['  (+ "a" 2)', /concatenate/, 1, 3],
    ['(Host.Stat "no_such_field")', /not declared in any collector/, 1, 1],
    ['(not)', /not takes 1/, 1, 1],
  ];
  for (const [src, msg, line, col] of cases) {
    const e = err(src);
    assert.match(e.message, msg, src);
    assert.deepEqual([e.line, e.col], [line, col], src);
  }
});

test('an error stops evaluation: aborted, values so far kept', () => {
  const r = run('1\n(/ 1 0)\n3');
  assert.equal(r.aborted, true);
  assert.deepEqual(r.values, [1]);
  assert.equal(r.errors.length, 1);
});

test('an octal literal with digits 8 or 9 fails when evaluated, like int("0o8", 0)', () => {
  assert.match(err('0o8').message, /invalid literal/);
  assert.equal(py('(def f () 0o9) 1'), '1');
});

test('Guests is a dict values view as in MOM: iterable, sized, equal only to itself', () => {
  const gs = [{ props: { name: 'a' }, stats: [{ balloon_cur: 1 }], vars: {} }];
  assert.equal(py('(== Guests (with Guests g g))', gs), 'false');
  assert.equal(py('(defvar G Guests) (== G Guests)', gs), 'true');
  assert.equal(py('(null Guests)', gs), 'false');
  assert.equal(py('(null Guests)'), 'true');
  assert.equal(py('(if Guests 1 2)', gs), '1');
  assert.match(err('(+ Guests Guests)').message, /unsupported operand type\(s\) for \+: 'dict_values' and 'dict_values'/);
  assert.match(err('(* Guests 2)').message, /for \*: 'dict_values' and 'int'/);
  assert.match(err('(< Guests Guests)').message, /'<' not supported between instances of 'dict_values'/);
});
