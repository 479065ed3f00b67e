import { test } from 'node:test';
import assert from 'node:assert/strict';
import { History, peakRate } from '../../../src/engine/history.js';

test('history keeps the newest N samples, oldest first in toArray, by reference', () => {
  const h = new History(3);
  const s = [1, 2, 3, 4, 5].map((v) => ({ v }));
  s.forEach((x, i) => {
    h.push(x, i * 5);
  });
  assert.equal(h.length, 3);
  assert.equal(h.latest(), s[4]);
  assert.deepEqual(
    h.toArray().map((x) => x.v),
    [3, 4, 5],
  );
  assert.equal(h.toArray()[2], s[4], 'samples are not copied');
  assert.equal(h.toArray(), h.toArray(), 'the view is reused until the next push');
  assert.equal(h.timeAt(0), 20);
  assert.equal(h.at(3), undefined);
});

test('history refuses a bad length', () => {
  assert.throws(() => new History(0), /positive integer/);
});

test('peakRate finds the highest rate after a time, skipping counter resets', () => {
  const h = new History(10);
  h.push({ swap_in: 0 }, 0);
  h.push({ swap_in: 100 }, 5); // 20/s
  h.push({ swap_in: 1100 }, 10); // 200/s
  h.push({ swap_in: 50 }, 15); // reset: skipped
  h.push({ swap_in: 100 }, 20); // 10/s
  assert.equal(peakRate(h, 'swap_in', 0), 200);
  assert.equal(peakRate(h, 'swap_in', 10), 10, 'only pairs whose newer sample is after `since`');
  assert.equal(peakRate(h, 'swap_in', 20), null);
  assert.equal(peakRate(h, 'major_fault', 0), null);
});
