// Tokenizer and parser: MOM's token rules, positions, and whole-policy refusal.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tokenize } from '../../../src/policy/lexer.js';
import { MAX_NESTING } from '../../../src/policy/parser.js';
import { PolicyParseError, checkPolicy, compilePolicies, parsePolicy } from '../../../src/policy/index.js';

const kinds = (src: string) => tokenize(src).map((t) => `${t.kind}${t.numKind ? ':' + t.numKind : ''}=${t.text}`);

test('tokens: brackets, numbers of each kind, strings, symbols, operators', () => {
  assert.deepEqual(kinds('(+ -7 0.5 .5 1e3 0x1F 0o17 "s" \'q\' guest.balloon_cur a-b_c)'), [
    '(=(',
    'op=+',
    'num:int=-7',
    'num:float=0.5',
    'num:float=.5',
    'num:float=1e3',
    'num:hex=0x1F',
    'num:octal=0o17',
    'str="s"',
    "str='q'",
    'sym=guest.balloon_cur',
    'sym=a-b_c',
    ')=)',
  ]);
  assert.deepEqual(kinds('[<< >> <= >= == != < > * /]'), ['[=[', 'op=<<', 'op=>>', 'op=<=', 'op=>=', 'op===', 'op=!=', 'op=<', 'op=>', 'op=*', 'op=/', ']=]']);
  // Word operators lex as symbols; a minus not attached to digits is the operator.
  assert.deepEqual(kinds('and - x -x'), ['sym=and', 'op=-', 'sym=x', 'op=-', 'sym=x']);
  // MOM's rules split a number from letters that follow it.
  assert.deepEqual(kinds('12abc'), ['num:int=12', 'sym=abc']);
  assert.deepEqual(kinds('1.5.5'), ['num:float=1.5', 'num:float=.5']);
});

test('comments run to end of line, also on the last line without a newline', () => {
  assert.deepEqual(kinds('1 # two ( [ "\n3 # end'), ['num:int=1', 'num:int=3']);
  assert.equal(tokenize('# only', 'f', true)[0]!.kind, 'comment');
});

test('positions: line and column of every token, strings spanning lines', () => {
  const t = tokenize('(a\n  "x\ny" b)', 'f.policy');
  assert.deepEqual(
    t.map((x) => [x.text, x.line, x.col]),
    [
      ['(', 1, 1],
      ['a', 1, 2],
      ['"x\ny"', 2, 3],
      ['b', 3, 4],
      [')', 3, 5],
    ],
  );
});

function parseError(src: string, file = 'p.policy'): PolicyParseError {
  try {
    parsePolicy(src, file);
  } catch (e) {
    assert.ok(e instanceof PolicyParseError, String(e));
    return e;
  }
  assert.fail(`expected a parse error for ${JSON.stringify(src)}`);
}

test('an unknown character refuses the whole policy with FILE:LINE:COL', () => {
  const e = parseError('(defvar a 1)\n(defvar b (+ a 1)) ; MOM would drop the rest silently\n(defvar c 3)');
  assert.equal(e.message, "p.policy:2:20: unexpected character ';' (U+003B)");
  assert.deepEqual([e.file, e.line, e.col], ['p.policy', 2, 20]);
  for (const bad of ['=', '!', '%', '&', '@', '$', '1.', '0x', '007', '1e', '\u00e9', '\u0000']) {
    assert.ok(parseError(`(x ${bad})`) instanceof PolicyParseError, bad);
  }
});

test('an unterminated string is refused at its opening quote', () => {
  const e = parseError('(defvar a\n   "never closed)\n');
  assert.match(e.message, /^p\.policy:2:4: unterminated string/);
  assert.match(parseError("'abc").message, /unterminated string/);
  // A backslash may not escape a newline (MOM's `\\.` does not match one).
  assert.match(parseError('"a\\\nb"').message, /unterminated string/);
});

test('unbalanced and mismatched brackets are refused', () => {
  assert.equal(parseError('(+ 1\n (* 2 3)').message, "p.policy:1:1: unclosed '(' (missing ')')");
  assert.equal(parseError('(+ 1 2))').message, "p.policy:1:8: unexpected ')' with no open bracket");
  assert.equal(parseError('(def f (x) {\n  x\n)').message, "p.policy:3:1: ')' does not match '{' opened at p.policy:1:12");
  assert.match(parseError('[1 2)').message, /does not match '\['/);
});

test('checkPolicy returns the errors instead of throwing', () => {
  assert.deepEqual(checkPolicy('(a b)'), []);
  const errs = checkPolicy('(a', 'x.policy');
  assert.equal(errs.length, 1);
  assert.equal(errs[0]!.message, "x.policy:1:1: unclosed '(' (missing ')')");
});

test('AST nodes carry file, line and column', () => {
  const p = parsePolicy('(defvar x\n  (+ 1 2))', 'f');
  const top = p.exprs[0]!;
  assert.equal(top.kind, 'list');
  if (top.kind !== 'list') return;
  const inner = top.items[2]!;
  assert.deepEqual([inner.file, inner.line, inner.col], ['f', 2, 3]);
});

test('deep nesting: refused cleanly beyond the limit, no stack overflow in the parser', () => {
  const deep = '('.repeat(200_000) + ')'.repeat(200_000);
  const e = parseError(deep);
  assert.match(e.message, /nested deeper than/);
  const ok = '(+ 1 '.repeat(MAX_NESTING - 1) + '1' + ')'.repeat(MAX_NESTING - 1);
  assert.doesNotThrow(() => parsePolicy(ok));
});

test('long digit runs tokenize without exponential backtracking (this would hang)', () => {
  assert.match(parseError('1'.repeat(50_000) + 'x!').message, /unexpected character '!'/);
});

test('named policies: concatenated in order as one program; errors name the file', () => {
  const p = compilePolicies([
    { name: 'a', text: '(defvar x 1)' },
    { name: 'b', text: '(defvar y (+ x 1))' },
  ]);
  assert.equal(p.exprs.length, 2);
  assert.throws(
    () =>
      compilePolicies([
        { name: 'a', text: '1' },
        { name: 'b', file: 'b.policy', text: '\n  2 ^' },
      ]),
    (e: unknown) => e instanceof PolicyParseError && e.message === "b.policy:2:5: unexpected character '^' (U+005E)",
  );
});

test('orderNamedPolicies: MOM order is by name; the unnamed default is 50_main_', async () => {
  const { orderNamedPolicies, DEFAULT_POLICY_NAME } = await import('../../../src/policy/index.js');
  assert.equal(DEFAULT_POLICY_NAME, '50_main_');
  const order = orderNamedPolicies({ '60_ksm': 'b', [DEFAULT_POLICY_NAME]: 'a', '10_base': 'c', Zed: 'z' });
  assert.deepEqual(
    order.map((s) => s.name),
    ['10_base', '50_main_', '60_ksm', 'Zed'],
  );
  assert.deepEqual(order[0], { name: '10_base', text: 'c', file: '10_base' });
  // An empty set of policies is MOM's program `0`.
  assert.equal(compilePolicies([]).exprs.length, 1);
});
