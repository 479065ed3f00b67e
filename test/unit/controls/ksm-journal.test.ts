// The KSM module with a state directory: what a crashed daemon found is what the next one puts
// back, through the module's start (remember) and stop (restore) hooks, on KSM files in a
// fixture tree (the kernel's own are tested in the lab).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KSM_JOURNAL, ksm as ksmModule } from '../../../src/controls/ksm/index.js';
import { ksmSection } from '../../../src/controls/ksm/config.js';
import { KsmSysfs } from '../../../src/host/ksm-sysfs.js';
import { memoryLogger } from '../../../src/log/logger.js';
import type { Hypervisor } from '../../../src/types.js';

function fixture(t: { after(fn: () => void): void }) {
  const root = mkdtempSync(join(tmpdir(), 'ballast-ksm-mod-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const dir = join(root, 'sys/kernel/mm/ksm');
  mkdirSync(dir, { recursive: true });
  for (const [k, v] of Object.entries({ run: '1', pages_to_scan: '1250', sleep_millisecs: '10', merge_across_nodes: '1' }))
    writeFileSync(join(dir, k), `${v}\n`);
  const state = join(root, 'run-ballast');
  mkdirSync(state);
  return { root, dir, state };
}

function instance(root: string, state: string | undefined, log = memoryLogger()) {
  const hypervisor = { name: 'fixture', capabilities: { ksm: new KsmSysfs({ root }) } } as unknown as Hypervisor;
  const inst = ksmModule.setup({ hypervisor, stateDir: state, lookup: () => undefined, log }, ksmSection.parse({}));
  assert.ok(typeof inst !== 'string');
  return { inst, log };
}

test('KSM module: a daemon started after one that crashed puts back what the crashed one found, and says so', async (t) => {
  const { root, dir, state } = fixture(t);
  // The crashed daemon found KSM stopped (run 0, 100 pages, 20 ms) and left it scanning hard.
  const dead = spawnSync('true').pid!;
  writeFileSync(
    join(state, KSM_JOURNAL),
    JSON.stringify({
      pid: dead,
      knobs: { run: { found: '0', wrote: '1' }, pages_to_scan: { found: '100', wrote: '1250' }, sleep_millisecs: { found: '20', wrote: '10' } },
    }),
  );
  const { inst, log } = instance(root, state);
  await inst.remember?.();
  const taken = log.records.find((r) => r.event === 'ksm_journal_taken_over');
  assert.deepEqual(taken?.knobs, { run: '0', pages_to_scan: '100', sleep_millisecs: '20' });
  const said = await inst.restore?.();
  assert.match(said ?? '', /"run":"0"/);
  const read = (k: string) => readFileSync(join(dir, k), 'utf8').trim();
  assert.deepEqual([read('run'), read('pages_to_scan'), read('sleep_millisecs')], ['0', '100', '20']);
  assert.equal(existsSync(join(state, KSM_JOURNAL)), false);
});

test('KSM module: without a state directory, or with one it cannot write, KSM is still put back on a clean stop', async (t) => {
  const { root, dir } = fixture(t);
  for (const state of [undefined, join(root, 'missing', 'dir')]) {
    writeFileSync(join(dir, 'run'), '0\n');
    const { inst, log } = instance(root, state);
    await inst.remember?.();
    assert.equal(
      log.records.some((r) => r.event === 'ksm_journal_failed'),
      state !== undefined,
      'a journal that cannot be kept is said',
    );
    await inst.controller.apply([{ entity: 'host', control: 'ksm_run', from: 0, to: 1, reasons: ['test'] }]);
    assert.equal(readFileSync(join(dir, 'run'), 'utf8').trim(), '1');
    assert.match((await inst.restore?.()) ?? '', /put back/);
    assert.equal(readFileSync(join(dir, 'run'), 'utf8').trim(), '0');
  }
});
