// Named policies as the daemon keeps them (MOM's setNamedPolicy / setPolicy semantics).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PolicyStore, evaluate } from '../../../src/policy/index.js';
import { HOST } from './helpers.js';

const values = (s: PolicyStore) => evaluate(s.policy, HOST, [], { collectValues: true }).values;

test('empty store is the program 0; named policies run in name order', () => {
  const s = new PolicyStore();
  assert.deepEqual(values(s), [0]);
  assert.equal(s.set('20_b', '(defvar y (+ x 1))\ny'), null);
  assert.equal(s.set('10_a', '(defvar x 1)'), null);
  assert.deepEqual(values(s), [1, 2, 2]);
  assert.equal(s.getText(), '(defvar x 1)\n(defvar y (+ x 1))\ny');
  assert.deepEqual(Object.keys(s.getNamed()).sort(), ['10_a', '20_b']);
});

test('a change that does not parse is refused with file:line:col; the last good set stays', () => {
  const s = new PolicyStore();
  s.set(null, '(defvar x 5)\nx');
  const err = s.set('90_bad', '(+ 1');
  assert.ok(err);
  assert.equal(err.message, "90_bad:1:1: unclosed '(' (missing ')')");
  assert.deepEqual(s.getNamed(), { '50_main_': '(defvar x 5)\nx' });
  assert.deepEqual(values(s), [5, 5]);
});

test('deleting, replacing everything, clearing', () => {
  const s = new PolicyStore();
  s.set('a', '1');
  s.set('b', '2');
  s.set('a', null);
  assert.deepEqual(values(s), [2]);
  assert.equal(s.replaceAll('3'), null);
  assert.deepEqual(s.getNamed(), { '50_main_': '3' });
  assert.ok(s.replaceAll('('));
  assert.deepEqual(s.getNamed(), { '50_main_': '3' });
  s.clear();
  assert.deepEqual(values(s), [0]);
});
