import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Scheduler } from '../../../src/engine/scheduler.js';

test('tasks run on their intervals, never overlap, and stop() waits for the one in flight', async () => {
  let active = 0;
  let maxActive = 0;
  const log: string[] = [];
  const task = (name: string, ms: number) => async () => {
    active++;
    maxActive = Math.max(maxActive, active);
    log.push(name);
    await sleep(ms);
    active--;
  };
  const errors: string[] = [];
  const s = new Scheduler(
    [
      { name: 'fast', intervalS: 0.02, run: task('fast', 5) },
      { name: 'slow', intervalS: 0.05, run: task('slow', 30), runAtStart: false },
      {
        name: 'bad',
        intervalS: 0.03,
        run: () => {
          throw new Error('nope');
        },
      },
    ],
    { onError: (t, e) => errors.push(`${t}: ${(e as Error).message}`) },
  );
  s.start();
  await sleep(300);
  await s.stop();
  assert.equal(active, 0, 'stop() resolved after the task in flight');
  assert.equal(maxActive, 1, 'tasks never overlap');
  assert.ok(s.runs.fast! >= 3, `fast ran ${s.runs.fast}`);
  assert.ok(s.runs.slow! >= 1);
  assert.equal(log[0], 'fast', 'runAtStart');
  assert.ok(errors.length >= 2 && errors.every((e) => e === 'bad: nope'), 'errors reported, loop goes on');
  const after = s.runs.fast!;
  await sleep(60);
  assert.equal(s.runs.fast, after, 'no run after stop');
});

test('a tick that comes while the task is still queued is skipped and counted', async () => {
  const s = new Scheduler([{ name: 'busy', intervalS: 0.01, run: () => sleep(60) }]);
  s.start();
  await sleep(150);
  await s.stop();
  assert.ok(s.skipped.busy! > 0);
});

test('bad intervals are refused', () => {
  assert.throws(() => new Scheduler([{ name: 'x', intervalS: 0, run: () => {} }]), /positive/);
});

test('unref timers do not keep a process alive; stop() leaves no handle behind', async () => {
  const { spawnSync } = await import('node:child_process');
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join, resolve } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'ballast-sched-'));
  const mod = resolve('src/engine/scheduler.ts');
  try {
    const unref = join(dir, 'unref.mts');
    writeFileSync(unref, `import { Scheduler } from '${mod}';\nnew Scheduler([{ name: 't', intervalS: 0.05, run: () => {} }], { unref: true }).start();\n`);
    const stopped = join(dir, 'stopped.mts');
    writeFileSync(
      stopped,
      `import { Scheduler } from '${mod}';\nconst s = new Scheduler([{ name: 't', intervalS: 0.05, run: () => {} }]);\ns.start();\nsetTimeout(() => s.stop(), 120);\n`,
    );
    for (const f of [unref, stopped]) {
      const r = spawnSync(process.execPath, ['--import', 'tsx', f], { encoding: 'utf8', timeout: 10_000 });
      assert.equal(r.status, 0, `${f}: ${r.stderr} (signal ${r.signal})`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
