import { test } from 'node:test';
import assert from 'node:assert/strict';
import { qemuArgs } from '../../../src/lab/qemu.js';

const base = {
  name: 'ballast-lab-q1',
  memMiB: 256,
  kernel: '/k',
  initrd: '/i',
  cmdline: 'console=ttyS0',
  qmpSocket: '/run/q.qmp',
  consoleLog: '/run/q.console',
};

test('qemuArgs: TCG, balloon with a stable id, QMP server socket, serial console file', () => {
  const a = qemuArgs({ ...base, qgaSocket: null });
  const after = (flag: string) => a[a.indexOf(flag) + 1];
  assert.equal(after('-accel'), 'tcg');
  assert.equal(after('-m'), '256');
  assert.equal(after('-qmp'), 'unix:/run/q.qmp,server=on,wait=off');
  assert.equal(after('-serial'), 'file:/run/q.console');
  assert.ok(a.includes('virtio-balloon-pci,id=balloon0'));
  assert.ok(!a.some((x) => x.includes('guest_agent')));
});

test('qemuArgs: guest agent channel only when asked; memory bounds enforced', () => {
  const a = qemuArgs({ ...base, qgaSocket: '/run/q.qga' });
  assert.ok(a.includes('socket,id=qga0,path=/run/q.qga,server=on,wait=off'));
  assert.ok(a.includes('virtserialport,chardev=qga0,name=org.qemu.guest_agent.0'));
  assert.throws(() => qemuArgs({ ...base, memMiB: 1024, qgaSocket: null }), /128 to 512/);
});
