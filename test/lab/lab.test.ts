// Real-VM lab: libvirtd started/stopped by PID, the build cache, a guest that boots.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ensureLibvirtd, stopLibvirtd, libvirtdAnswers, labLibvirtdPid } from '../../src/lab/libvirtd.js';
import { pidAlive } from '../../src/lab/proc.js';

function skipLoudly(t: { skip(msg: string): void }, reason: string) {
  console.error(`LAB SKIPPED: ${reason}`);
  t.skip(`LAB SKIPPED: ${reason}`);
}

test('libvirtd: started by the lab, answers, stopped by its PID', async (t) => {
  if (process.getuid?.() !== 0) return skipLoudly(t, 'not root');
  const first = await ensureLibvirtd();
  assert.ok(await libvirtdAnswers());
  if (!first.startedByUs) return skipLoudly(t, `libvirtd PID ${first.pid} was not started by the lab; not stopping it`);
  assert.equal(first.pid, labLibvirtdPid());
  const again = await ensureLibvirtd();
  assert.equal(again.pid, first.pid, 'a running libvirtd is reused');
  assert.equal(again.startedNow, false);
  assert.equal(await stopLibvirtd(), true);
  assert.equal(pidAlive(first.pid!), false, 'stopped by PID');
  assert.equal(await libvirtdAnswers(), false);
  assert.equal(await stopLibvirtd(), false, 'nothing of ours left to stop');
  const back = await ensureLibvirtd();
  assert.equal(back.startedNow, true);
  assert.notEqual(back.pid, first.pid);
  assert.ok(await libvirtdAnswers());
});
