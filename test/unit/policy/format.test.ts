// `policy fmt`: canonical layout, comments kept, idempotent, meaning unchanged.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { PolicyParseError, formatPolicy } from '../../../src/policy/index.js';
import { tokenize } from '../../../src/policy/lexer.js';

const SAMPLE = `# header comment
(defvar   a 1)  # trailing
(def f (x)
{
    # inside
    (defvar y (* x 2))

    (+ y a)
})
(if (> a 0) { (Host.Control "ksm_run" 1) (Host.Control "ksm_pages_to_scan" 100) } 0)
`;

test('fmt: canonical layout of a sample', () => {
  assert.equal(
    formatPolicy(SAMPLE),
    `# header comment
(defvar a 1) # trailing
(def f (x) {
  # inside
  (defvar y (* x 2))

  (+ y a)
})
(if (> a 0)
  {
    (Host.Control "ksm_run" 1)
    (Host.Control "ksm_pages_to_scan" 100)
  }
  0)
`,
  );
});

test('fmt is idempotent and keeps the exact token sequence and every comment', () => {
  const once = formatPolicy(SAMPLE);
  assert.equal(formatPolicy(once), once);
  const toks = (s: string) => tokenize(s, 'f', true).map((t) => t.text.trimEnd());
  assert.deepEqual(toks(once), toks(SAMPLE));
});

test('fmt keeps long forms within 80 columns where it can', () => {
  const src = '(defvar result (+ (* first_long_variable_name 2) (* second_long_variable_name 3) (* third 4)))';
  const out = formatPolicy(src);
  for (const line of out.split('\n')) assert.ok(line.length <= 80, line);
  assert.ok(out.split('\n').length > 2);
});

test('fmt handles a comment right after an opening bracket and before a closing one', () => {
  const src = '( # why\n + 1 2 # two\n)\n';
  const out = formatPolicy(src);
  assert.equal(formatPolicy(out), out);
  assert.deepEqual(
    tokenize(out, 'f', true).map((t) => t.text),
    tokenize(src, 'f', true).map((t) => t.text),
  );
});

test('fmt refuses what does not parse', () => {
  assert.throws(() => formatPolicy('(a', 'x.policy'), PolicyParseError);
});

test('the shipped policies are in canonical layout', () => {
  for (const f of ['balloon', 'ksm', 'default']) {
    const text = readFileSync(new URL(`../../../policies/${f}.policy`, import.meta.url), 'utf8');
    assert.equal(formatPolicy(text), text, f);
  }
});
