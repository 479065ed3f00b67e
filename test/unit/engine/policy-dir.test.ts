import { test } from 'node:test';
import { tempDir } from '../temp-dir.js';
import assert from 'node:assert/strict';
import { closeSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { compilePolicyFiles, evaluatePolicy, type CompiledPolicy } from '../../../src/engine/policy-adapter.js';
import { loadPolicies, PolicyWatcher } from '../../../src/engine/policy-dir.js';
import { memoryLogger } from '../../../src/log/logger.js';

function tmp(): string {
  return tempDir('ballast-policy-');
}

/** The host control a policy sets, to tell policies apart. */
function marker(p: CompiledPolicy): unknown {
  return evaluatePolicy(p, { props: { name: 'host' }, stats: [{}], vars: {} }, []).host.controls.mark;
}

test('files are concatenated in name order as one program', () => {
  const dir = tmp();
  try {
    writeFileSync(join(dir, '20_b.policy'), '(set x (+ x 1))\n(Host.Control "mark" x)\n');
    writeFileSync(join(dir, '10_a.policy'), '(defvar x 41)\n');
    writeFileSync(join(dir, 'notes.txt'), 'ignored (');
    const r = loadPolicies({ dir }, compilePolicyFiles);
    assert.ok(r.ok, r.ok ? '' : r.error);
    assert.deepEqual(r.files, ['10_a.policy', '20_b.policy']);
    assert.equal(marker(r.policy), 42);
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test('hot reload: a good change is taken, a bad file is refused with FILE:LINE:COL and the last good policy stays', async () => {
  const dir = tmp();
  const logger = memoryLogger();
  const accepted: CompiledPolicy[] = [];
  const w = new PolicyWatcher({
    source: { dir },
    compile: compilePolicyFiles,
    logger,
    pollS: 0.05,
    debounceMs: 10,
    settleMs: 50,
    onPolicy: (p) => accepted.push(p),
  });
  try {
    writeFileSync(join(dir, '50_main.policy'), '(Host.Control "mark" 1)\n');
    assert.equal(w.start(), true);
    assert.equal(marker(accepted.at(-1)!), 1);

    writeFileSync(join(dir, '50_main.policy'), '(Host.Control "mark" 2)\n');
    await waitFor(() => accepted.length === 2);
    assert.equal(marker(accepted.at(-1)!), 2);

    const bad = join(dir, '60_bad.policy');
    writeFileSync(bad, '(defvar y 1)\n(Host.Control "mark" $)\n');
    await waitFor(() => w.refusals === 1);
    assert.equal(accepted.length, 2, 'nothing new accepted');
    const refused = logger.records.find((r) => r.event === 'policy_refused')!;
    assert.match(String(refused.error), new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:2:22: `));
    assert.equal(refused.reason, 'the last good policy stays in force');

    writeFileSync(bad, '(Host.Control "mark" 3)\n');
    await waitFor(() => accepted.length === 3);
    assert.equal(marker(accepted.at(-1)!), 3);
  } finally {
    w.stop();
    rmSync(dir, { recursive: true });
  }
});

test('a policy file rewritten in place is loaded only once whole: a half-written prefix that compiles is never taken', async () => {
  const dir = tmp();
  const accepted: number[] = [];
  const w = new PolicyWatcher({
    source: { dir },
    compile: compilePolicyFiles,
    pollS: 0.02,
    debounceMs: 5,
    settleMs: 400,
    onPolicy: (p) => accepted.push(marker(p) as number),
  });
  try {
    const file = join(dir, '50_main.policy');
    writeFileSync(file, '(Host.Control "mark" 1)\n');
    assert.equal(w.start(), true);
    // A slow writer: truncate, write the first form (which compiles on its own), pause, write the rest.
    const fd = openSync(file, 'w');
    writeSync(fd, '(Host.Control "mark" 2)\n');
    await sleep(250); // many polls and watch events see the prefix meanwhile
    writeSync(fd, '(Host.Control "mark" 3)\n');
    closeSync(fd);
    await waitFor(() => accepted.length === 2);
    await sleep(600);
    assert.deepEqual(accepted, [1, 3], 'the prefix ("mark" 2) was never in force');
    assert.equal(w.refusals, 0);
  } finally {
    w.stop();
    rmSync(dir, { recursive: true });
  }
});

test('an empty or missing directory is reported, not thrown', () => {
  const r = loadPolicies({ dir: '/nonexistent/ballast' }, compilePolicyFiles);
  assert.equal(r.ok, false);
  const dir = tmp();
  const r2 = loadPolicies({ dir }, compilePolicyFiles);
  assert.ok(!r2.ok && /no \*\.policy files/.test(r2.error));
  rmSync(dir, { recursive: true });
});

async function waitFor(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await sleep(10);
  }
}
