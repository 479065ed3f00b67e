// Reading `policy eval` snapshots: shape errors name the bad field; numbers keep float-ness.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SnapshotError, parseSnapshots } from '../../../src/policy/snapshot.js';
import { PyFloat } from '../../../src/policy/values.js';

const SNAP = { host: { props: {}, stats: [{ mem_free: 1 }], vars: {} }, guests: [{ props: { name: 'a' }, stats: [], vars: {} }] };

function fails(text: string, msg: RegExp): void {
  assert.throws(
    () => parseSnapshots(text, 'in.json'),
    (e: unknown) => e instanceof SnapshotError && msg.test(e.message),
    text,
  );
}

test('bad JSON and bad shapes name what is wrong', () => {
  fails('{"host": ', /^in\.json: invalid JSON: /);
  fails('{"guests": []}', /^in\.json: snapshot\.host: /);
  fails(JSON.stringify({ host: { stats: {} } }), /snapshot\.host\.stats: /);
  fails(JSON.stringify({ host: {}, guests: [{ props: {} }] }), /snapshot\.guests\[0\]\.props\.name: /);
  fails(JSON.stringify([SNAP, { host: { stats: [{ mem_free: [1] }] } }]), /snapshot\[1\]\.host\.stats\[0\]\.mem_free: /);
  fails(JSON.stringify({ host: { vars: 3 } }), /snapshot\.host\.vars: /);
  fails('3', /snapshot: /);
});

test('one snapshot or an array; missing props/stats/vars default to empty', () => {
  const one = parseSnapshots(JSON.stringify({ host: {} }));
  assert.equal(one.isArray, false);
  assert.deepEqual(one.snapshots, [{ host: { props: {}, stats: [], vars: {} }, guests: [] }]);
  const many = parseSnapshots(JSON.stringify([SNAP, SNAP]));
  assert.equal(many.isArray, true);
  assert.equal(many.snapshots.length, 2);
  assert.equal(many.snapshots[1]!.guests[0]!.props['name'], 'a');
});

test('stats written as 2.0 stay floats, 2 stays an int', () => {
  const s = parseSnapshots('{"host": {"stats": [{"a": 2.0, "b": 2, "c": 1e3}]}}').snapshots[0]!;
  const row = s.host.stats[0]!;
  assert.ok(row['a'] instanceof PyFloat);
  assert.equal(row['b'], 2);
  assert.ok(row['c'] instanceof PyFloat);
});
