// Reaction time: from a guest's ramp starting while its balloon holds memory back to its memory
// growing, from the console lines the guests write.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConsoleLine } from '../../../src/lab/console.js';
import type { TimedLine } from '../../../src/experiments/lab-memknobs/metrics.js';
import { guestReactions, summarizeReactions } from '../../../src/experiments/lab-memknobs/reaction.js';

const FULL = 344 * 1024;
/** Console lines as a guest writes them; the host reads each 0.5 s after the guest's t (+1000). */
const mem = (t: number, totalKiB: number) => `BALLAST meminfo t=${t} total_kib=${totalKiB} free_kib=1000 avail_kib=2000`;
const alloc = (t: number, mib: number, wsKiB: number) => `BALLAST phase t=${t} idx=0 op=alloc arg=${mib} ws_kib=${wsKiB}`;
const timed = (raw: string[]): TimedLine[] =>
  raw.map((r) => {
    const line = parseConsoleLine(r)!;
    return { at: 1000 + line.t! + 0.5, line };
  });

test('a ramp under a balloon: the time until the memory grows, on the guest clock', () => {
  const lines = timed([
    mem(0, FULL),
    mem(10, FULL - 100 * 1024), // the balloon took 100 MiB
    alloc(12, 64, 64 * 1024), // the cycle's base: not growing
    alloc(14, 80, 64 * 1024), // the ramp starts: the demand step
    mem(16, FULL - 100 * 1024),
    alloc(18, 96, 80 * 1024), // still the same ramp
    mem(18, FULL - 98 * 1024), // 2 MiB: below the slack, not yet a reaction
    mem(20, FULL - 60 * 1024), // grows: 20 - 14 = 6 s
    mem(22, FULL),
  ]);
  assert.deepEqual(guestReactions(lines, 0, 2000), { times: [6], unanswered: 0, pending: 0 });
});

test('no demand step while the balloon is empty, or outside the window', () => {
  const empty = timed([mem(0, FULL), alloc(2, 64, 0), alloc(4, 80, 64 * 1024), mem(6, FULL)]);
  assert.deepEqual(guestReactions(empty, 0, 2000), { times: [], unanswered: 0, pending: 0 });
  const ballooned = [mem(0, FULL), mem(1, FULL - 50 * 1024), alloc(2, 64, 0), mem(8, FULL)];
  assert.deepEqual(guestReactions(timed(ballooned), 0, 2000), { times: [6], unanswered: 0, pending: 0 }, "the workload's first alloc is a ramp too");
  assert.deepEqual(guestReactions(timed(ballooned), 1010, 2000), { times: [], unanswered: 0, pending: 0 }, 'the step arrived before the window');
});

test('unanswered until the next ramp; still open when the lines end: pending', () => {
  const lines = timed([
    mem(0, FULL),
    mem(1, FULL - 100 * 1024),
    alloc(2, 80, 64 * 1024),
    alloc(6, 96, 80 * 1024),
    alloc(10, 64, 96 * 1024), // shrinks back
    mem(12, FULL - 100 * 1024),
    alloc(20, 80, 64 * 1024), // next ramp: the first went unanswered
    mem(22, FULL - 100 * 1024),
  ]);
  assert.deepEqual(guestReactions(lines, 0, 2000), { times: [], unanswered: 1, pending: 1 });
});

test('a workload the OOM killer took starts over: its first alloc is a new demand step', () => {
  const lines = timed([
    mem(0, FULL),
    mem(1, FULL - 150 * 1024),
    alloc(2, 80, 64 * 1024),
    alloc(6, 96, 80 * 1024),
    'BALLAST workload-exit t=7 status=137',
    'BALLAST workload-start t=8 spec=x report_s=2',
    alloc(8, 64, 0),
    mem(12, FULL - 100 * 1024), // grows 4 s after the restart
  ]);
  assert.deepEqual(guestReactions(lines, 0, 2000), { times: [4], unanswered: 1, pending: 0 });
});

test('summary: median and max over every guest, answered steps only', () => {
  assert.deepEqual(
    summarizeReactions([
      { times: [6, 20], unanswered: 1, pending: 0 },
      { times: [10], unanswered: 0, pending: 1 },
    ]),
    { medianS: 10, maxS: 20, answered: 3, unanswered: 1, pending: 1 },
  );
  assert.deepEqual(summarizeReactions([{ times: [4, 8], unanswered: 0, pending: 0 }]).medianS, 6);
  assert.deepEqual(summarizeReactions([{ times: [], unanswered: 2, pending: 0 }]), { medianS: null, maxS: null, answered: 0, unanswered: 2, pending: 0 });
});
