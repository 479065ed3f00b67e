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

test('qemuArgs: a virtio-mem device vmem0 above the base memory, its sizes checked', () => {
  const a = qemuArgs({ ...base, qgaSocket: null, virtioMem: { maxMiB: 256, requestedMiB: 64 } });
  const after = (flag: string, from = 0) => a[a.indexOf(flag, from) + 1];
  assert.equal(after('-m'), 'size=256M,maxmem=512M');
  assert.equal(after('-object'), 'memory-backend-ram,id=vmem0mem,size=256M');
  assert.ok(a.includes('virtio-mem-pci,id=vmem0,memdev=vmem0mem,requested-size=64M,block-size=2M'));
  assert.throws(() => qemuArgs({ ...base, qgaSocket: null, virtioMem: { maxMiB: 256, requestedMiB: 3 } }), /multiple of 2 MiB from 0 to 256/);
  assert.throws(() => qemuArgs({ ...base, qgaSocket: null, virtioMem: { maxMiB: 1024 } }), /from 2 to 512 MiB, got 1024/);
  assert.throws(() => qemuArgs({ ...base, qgaSocket: null, virtioMem: { maxMiB: 96, blockMiB: 3 } }), /power of two/);
  assert.ok(!qemuArgs({ ...base, qgaSocket: null }).some((x) => x.includes('virtio-mem')));
});
