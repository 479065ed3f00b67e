import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cgroupPathFrom } from '../../../src/lab/cgroup.js';

test('cgroupPathFrom: v1 memory controller line wins over the v2 line', () => {
  const text = '9:name=systemd:/\n4:memory:/machine/qemu-6-g.libvirt-qemu\n3:cpuset,cpu:/x\n0::/machine/qemu-6-g.libvirt-qemu/emulator\n';
  assert.deepEqual(cgroupPathFrom(text, 'memory'), { version: 1, path: '/machine/qemu-6-g.libvirt-qemu' });
  assert.deepEqual(cgroupPathFrom(text, 'cpu'), { version: 1, path: '/x' });
});

test('cgroupPathFrom: pure v2 host', () => {
  assert.deepEqual(cgroupPathFrom('0::/machine.slice/machine-qemu.scope/libvirt\n', 'memory'), {
    version: 2,
    path: '/machine.slice/machine-qemu.scope/libvirt',
  });
  assert.equal(cgroupPathFrom('garbage\n', 'memory'), null);
});
