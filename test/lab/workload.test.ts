// lab/workload.c's clock ("@" steps), the lab build's binary run natively on the host (the
// lab build may first have to build it): a cycle starts P s after the last one whatever
// happened in it, a touch ends at its set time, and a step whose time has passed is skipped
// with 0 pages in 0 s (the work a late program loses). Timing bounds are loose (a busy CI
// machine) but a program that carried its delay on would miss them by seconds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { ensureLabBuilt } from '../../src/lab/build.js';
import { parseConsole, summarizeConsole, type ConsoleSummary } from '../../src/lab/console.js';

/** Runs the workload with `spec` for `seconds` and returns what it reported. */
async function runWorkload(bin: string, spec: string, seconds: number): Promise<ConsoleSummary> {
  const child = spawn(bin, [spec, '0.5'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  await new Promise((r) => setTimeout(r, seconds * 1000));
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  return summarizeConsole(parseConsole(out));
}

test("workload's clock: cycles start P s apart, touches end on time, a late step is skipped", { timeout: 20 * 60_000 }, async (t) => {
  // The very binary the lab's guests run (static, built with -Werror by the lab build).
  let bin: string;
  try {
    bin = (await ensureLabBuilt()).manifest.workload;
  } catch (e) {
    console.error(`LAB SKIPPED: cannot build the lab image: ${(e as Error).message}`);
    t.skip(`LAB SKIPPED: cannot build the lab image: ${(e as Error).message}`);
    return;
  }

  // idle:2 (a duration) overruns touch@1, as an alloc stalled on swap-ins would: that touch is
  // lost. The cycle's steps end at 4 s; the next cycle starts at 5 s (an elastic loop: at 4).
  const { phases, rates } = await runWorkload(bin, 'alloc:4,idle:2,touch@1,alloc:8,touch@3,idle:1,loop@5', 11.5);
  const starts = phases.filter((p) => p.idx === 0).map((p) => p.t);
  assert.ok(starts.length >= 3, `three cycles in 11.5 s: ${JSON.stringify(phases)}`);
  for (let i = 1; i < starts.length; i++) {
    const gap = starts[i]! - starts[i - 1]!;
    assert.ok(gap > 4.8 && gap < 5.3, `cycle ${i} started ${gap.toFixed(3)} s after the last (clock: 5 s)`);
  }
  const late = rates.filter((r) => r.idx === 2);
  assert.ok(late.length >= 2, 'the late touch reports');
  for (const r of late) assert.deepEqual([r.pages, r.secs], [0, 0], 'a touch whose time has passed writes nothing');
  // touch@3 runs from ~2 s (after the idle and a fast alloc) to 3 s into the cycle: ~1 s of work
  const onTime = rates.filter((r) => r.idx === 4 && r.op === 'touch');
  const perCycle = new Map<number, number>();
  for (const r of onTime) {
    const cycle = starts.filter((s) => s <= r.t - r.secs + 1e-3).length - 1;
    perCycle.set(cycle, (perCycle.get(cycle) ?? 0) + r.secs);
  }
  const full = [...perCycle.entries()].filter(([c]) => c < starts.length - 1);
  assert.ok(full.length >= 2, 'two complete cycles touched');
  for (const [c, secs] of full) assert.ok(secs > 0.7 && secs < 1.2, `cycle ${c}: touched ${secs.toFixed(3)} s until its set time`);
  assert.ok(
    onTime.every((r) => r.pages > 0),
    'the on-time touch wrote pages',
  );
});
