// Python-compatible number display and JSON, so `policy eval` output compares with MOM's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parsePyJson, stringifyPyJson } from '../../../src/policy/json.js';
import { PyFloat, floatRepr, repr } from '../../../src/policy/values.js';

test('floatRepr matches Python repr()', () => {
  const cases: Array<[number, string]> = [
    [2, '2.0'],
    [0.1, '0.1'],
    [-0, '-0.0'],
    [1e16, '1e+16'],
    [1e15, '1000000000000000.0'],
    [123456789.125, '123456789.125'],
    [0.0001, '0.0001'],
    [0.00001, '1e-05'],
    [1.5e-7, '1.5e-07'],
    [1e300, '1e+300'],
    [2.5e22, '2.5e+22'],
    [Infinity, 'inf'],
    [-Infinity, '-inf'],
    [NaN, 'nan'],
    [10.485759999999999, '10.485759999999999'],
  ];
  for (const [x, s] of cases) assert.equal(floatRepr(x), s, String(x));
});

test('floatRepr round-trips through Number', () => {
  fc.assert(
    fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), (x) => {
      assert.ok(Object.is(Number(floatRepr(x)), x) || (x === 0 && Number(floatRepr(x)) === 0));
    }),
  );
});

test('repr of values as Python shows them', () => {
  assert.equal(repr([1, new PyFloat(2), "a'b", null, true]), `[1, 2.0, "a'b", None, True]`);
});

test('parsePyJson keeps float-ness of integral floats; ints stay ints', () => {
  const v = parsePyJson('{"a": 2.0, "b": 2, "c": [1e3, -0.5, true, null, "x\\n"], "__proto__": 1}') as Record<string, unknown>;
  assert.ok(v['a'] instanceof PyFloat);
  assert.equal(v['b'], 2);
  assert.deepEqual(v['c'], [new PyFloat(1000), -0.5, true, null, 'x\n']);
  assert.equal(Object.getPrototypeOf(v), Object.prototype);
  assert.equal(Object.keys(v).includes('__proto__'), true);
});

test('stringifyPyJson writes floats like Python json.dumps and parses back to the same numbers', () => {
  assert.equal(stringifyPyJson({ x: new PyFloat(2), y: 3, z: 0.25, w: [NaN, Infinity] }, 0), '{"x":2.0,"y":3,"z":0.25,"w":[NaN,Infinity]}');
  fc.assert(
    fc.property(fc.jsonValue(), (v) => {
      assert.deepEqual(JSON.parse(stringifyPyJson(v)), JSON.parse(JSON.stringify(v)));
    }),
  );
});
