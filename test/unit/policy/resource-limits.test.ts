// No policy may stall or exhaust the daemon: work is charged by the size of the values it
// touches, values and whole evaluations have allocation caps, evaluations a wall-clock
// deadline, and policy text a size limit. The cases are the ones a first probe found.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compilePolicies, evaluate } from '../../../src/policy/index.js';
import { PolicyParseError } from '../../../src/policy/errors.js';

const guests = Array.from({ length: 10 }, (_, i) => ({ props: { name: `g${i}` }, stats: [{ balloon_cur: 1 }], vars: {} }));
const host = { props: {}, stats: [{ mem_free: 1 }], vars: {} };

// No timing assertions (machines are noisy): each case asserts which limit stopped it.
function timed(text: string, opts = {}) {
  const r = evaluate(compilePolicies([{ name: 'p', text, file: 'p.policy' }]), host, guests, opts);
  return { r, first: r.errors[0] };
}

const thousand = (form: string) => Array.from({ length: 1000 }, () => form).join(' ');

test('comparing long strings is charged by their length: the budget stops it', () => {
  // The step budget must stop it, not the wall-clock deadline (which a loaded machine reaches first).
  const noDeadline = { timeLimitMs: 600_000 };
  const { r, first } = timed(`(defvar a (* "a" 1000000))\n(defvar b (* "a" 1000000))\n(with Guests g { ${thousand('(< a b)')} })`, noDeadline);
  assert.equal(r.aborted, true);
  assert.match(first!.message, /step budget of \d+ exhausted/);
  assert.equal(first!.line, 3, 'with its position');
  const eqs = timed(`(defvar a (* "a" 1000000))\n(defvar b (* "a" 1000000))\n(with Guests g { ${thousand('(== a b)')} })`, noDeadline);
  assert.match(eqs.first!.message, /step budget/);
});

test('values are capped before they are built; so is what one evaluation allocates in all', () => {
  const big = timed('(defvar a (* "a" 16000000))');
  assert.match(big.first!.message, /result too long \(16000000 elements; limit 1048576\)/);
  assert.equal(big.first!.col, 11);
  const lists = timed(Array.from({ length: 30 }, () => '(* (with Guests g 1) 8000000)').join('\n'));
  assert.match(lists.first!.message, /result too long/);
  const many = timed(Array.from({ length: 300 }, () => '(defvar q (* (with Guests g 1) 100000))').join('\n'));
  assert.equal(many.r.aborted, true);
  assert.match(many.first!.message, /allocated more than \d+ string\/list elements/);
});

test('a wall-clock deadline ends an evaluation the budget would let run', () => {
  // Cheap steps (no long values), a budget far above what runs in 50 ms.
  const { r, first } = timed(
    '(def spin (n) (if (> n 0) (spin (- n 1)) 0))\n(with Guests g (spin 300))\n(with Guests g (with Guests h (with Guests i (with Guests j (with Guests k (spin 300))))))',
    { stepBudget: 1e12, timeLimitMs: 50 },
  );
  assert.equal(r.aborted, true);
  assert.match(first!.message, /deadline passed/);
});

test('policy text: a size limit with a clear error; long lists and literals compile without stack overflow', () => {
  assert.throws(
    () => compilePolicies([{ name: 'p', text: `# ${'x'.repeat(2_000_000)}\n1`, file: 'big.policy' }]),
    (e: unknown) => e instanceof PolicyParseError && /^big\.policy:1:1: policies larger than 1048576 bytes/.test(e.message),
  );
  const list = compilePolicies([{ name: 'p', text: `(defvar x [${Array.from({ length: 150000 }, () => '1').join(' ')}])`, file: 'p.policy' }]);
  assert.ok(list, '150k items compile');
  const lit = timed(`(defvar s "${'x'.repeat(1_000_000)}")`);
  assert.equal(lit.r.aborted, false);
});
