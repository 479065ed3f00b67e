// Property tests: random text never crashes the engine (only PolicyParseError, or a result
// with clean errors); fmt is idempotent and never changes what a program computes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PolicyParseError, compilePolicies, evaluate, formatPolicy, parsePolicy } from '../../../src/policy/index.js';
import { stringifyPyJson } from '../../../src/policy/json.js';
import { guest, host } from './helpers.js';

const H = host({ mem_available: 1000, mem_free: 150, ksm_shareable: 900, ksm_pages_to_scan: 100 }, { mem_available: 1000, mem_free: 100 });
const GS = [
  guest('a', { balloon_cur: 100, balloon_max: 200, balloon_min: 10, mem_unused: 20 }),
  guest('b', { balloon_cur: 0, balloon_max: 50, balloon_min: 0, mem_unused: null }),
];

const VOCAB = [
  '(',
  ')',
  '(',
  ')',
  '[',
  ']',
  '{',
  '}',
  '+',
  '-',
  '*',
  '/',
  '<',
  '>',
  '<=',
  '>=',
  '==',
  '!=',
  '<<',
  '>>',
  'and',
  'or',
  'not',
  'if',
  'defvar',
  'set',
  'setq',
  'def',
  'defun',
  'let',
  'with',
  'min',
  'max',
  'abs',
  'null',
  'valid',
  'debug',
  'nil',
  'eval',
  'Host',
  'Guests',
  'g',
  'x',
  'y',
  'f',
  'Host.mem_free',
  'g.balloon_cur',
  'Host.Stat',
  'g.StatAvg',
  'g.Control',
  'Host.Control',
  'g.SetVar',
  'g.GetVar',
  'Host.GetControl',
  'g.Prop',
  '"balloon_cur"',
  '"mem_free"',
  '"name"',
  '"k"',
  "'s'",
  '0',
  '1',
  '-1',
  '2.5',
  '.5',
  '1e3',
  '0x10',
  '0o7',
  '0o9',
  '# c\n',
  '\n',
  '"',
  ';',
  '#',
  '0.0',
  '1000000',
];

const soup = fc.array(fc.constantFrom(...VOCAB), { maxLength: 60 }).map((ts) => ts.join(' '));
const noisy = fc.string({ unit: fc.constantFrom(...'()[]{}+-*/<>=!#"\'\\ \n\t.0123456789abcxyzeEoOX_;é\u0000'), maxLength: 80 });

/** What a program computes, without positions (fmt moves tokens around). */
function outcome(text: string): string {
  const r = evaluate(compilePolicies([{ name: 'p', text }]), H, GS, { collectValues: true, rawValues: true, stepBudget: 20_000 });
  return stringifyPyJson({ ...r, errors: r.errors.map((e) => [e.message, e.guest ?? null]) }, 0);
}

function neverCrashes(text: string): void {
  let parsed = false;
  try {
    parsePolicy(text, 'fuzz.policy');
    parsed = true;
  } catch (e) {
    if (!(e instanceof PolicyParseError)) throw e;
    assert.match(e.message, /^fuzz\.policy:\d+:\d+: /);
  }
  if (!parsed) return;
  const r = evaluate(compilePolicies([{ name: 'p', text }]), H, GS, { collectValues: true, stepBudget: 20_000 });
  for (const e of r.errors) {
    assert.equal(typeof e.message, 'string');
    assert.ok(e.line >= 1 && e.col >= 1, JSON.stringify(e));
    assert.doesNotMatch(e.message, /internal error/);
  }
}

test('random text: only PolicyParseError or clean evaluation errors', () => {
  fc.assert(fc.property(noisy, neverCrashes), { numRuns: 1500 });
  fc.assert(fc.property(fc.string({ maxLength: 60 }), neverCrashes), { numRuns: 500 });
});

test('random token soup: only PolicyParseError or clean evaluation errors', () => {
  fc.assert(fc.property(soup, neverCrashes), { numRuns: 3000 });
});

// Well-formed random programs, so that the fmt properties are exercised on things that parse.
const atom = fc.constantFrom('1', '-2', '0.5', '"s"', 'x', 'y', 'nil', 'Host.mem_free', 'g.balloon_cur', '# note\n');
const { expr } = fc.letrec((tie) => ({
  expr: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    atom,
    fc
      .tuple(
        fc.constantFrom('+', '-', '*', '/', '<', '==', 'and', 'or', 'max', 'min', 'if', 'defvar x', 'set y', 'debug'),
        fc.array(tie('expr'), { maxLength: 4 }),
      )
      .map(([h, xs]) => `(${h} ${xs.join(' ')})`),
    fc.array(tie('expr'), { minLength: 1, maxLength: 4 }).map((xs) => `{ ${xs.join('\n')} }`),
    tie('expr').map((b) => `(with Guests g (g.Control "balloon_target" ${b}))`),
    tie('expr').map((b) => `(let ((x 1) (y 2)) ${b})`),
  ),
}));
const program = fc.array(expr, { minLength: 1, maxLength: 6 }).map((xs) => '(defvar y 3)\n' + xs.join('\n') + '\n');

test('fmt is idempotent and eval(fmt(p)) == eval(p) on random programs', () => {
  fc.assert(
    fc.property(program, (p) => {
      const f = formatPolicy(p);
      assert.equal(formatPolicy(f), f);
      assert.equal(outcome(f), outcome(p));
    }),
    { numRuns: 1000 },
  );
});

test('fmt is idempotent on random token soup that parses', () => {
  fc.assert(
    fc.property(soup, (p) => {
      let f: string;
      try {
        f = formatPolicy(p);
      } catch (e) {
        if (e instanceof PolicyParseError) return;
        throw e;
      }
      assert.equal(formatPolicy(f), f);
      assert.equal(outcome(f), outcome(p));
    }),
    { numRuns: 2000 },
  );
});
