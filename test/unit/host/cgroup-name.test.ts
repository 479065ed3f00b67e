import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeCgroup, processCgroupPath } from '../../../src/host/cgroup-name.js';
import { ksmCost, RMAP_BREAK_EVEN } from '../../../src/host/ksm-cost.js';

test('processCgroupPath: the v2 path; on a hybrid host with an empty v2 tree, the v1 memory path', () => {
  assert.equal(processCgroupPath('0::/system.slice/nginx.service\n'), '/system.slice/nginx.service');
  // This machine's own /proc/self/cgroup: v1 controllers, the unified tree unused.
  const hybrid = '9:name=systemd:/\n8:pids:/\n4:memory:/process_api/070086e6ba4c440bbcc9543c5cf7ec04\n3:cpuset:/\n1:cpu:/\n0::/\n';
  assert.equal(processCgroupPath(hybrid), '/process_api/070086e6ba4c440bbcc9543c5cf7ec04');
  assert.equal(processCgroupPath('1:name=systemd:/system.slice/cron.service\n0::/\n'), '/system.slice/cron.service');
  assert.equal(processCgroupPath('0::/\n'), '/');
  assert.throws(() => processCgroupPath('garbage\n'), /cannot read line "garbage"/);
});

test('describeCgroup: services, containers of each runtime, pods, libvirt VMs, sessions', () => {
  const id = '4f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff';
  const cases: Array<[string, string, string]> = [
    ['/', 'root', 'root cgroup'],
    ['/system.slice/nginx.service', 'service', 'nginx.service'],
    ['/system.slice/php-fpm.service/pool-a', 'service', 'php-fpm.service'],
    ['/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome.scope', 'cgroup', 'app-gnome.scope'],
    [`/system.slice/docker-${id}.scope`, 'container', 'docker 4f1e2d3c4b5a'],
    [`/docker/${id}`, 'container', 'docker 4f1e2d3c4b5a'],
    [`/machine.slice/libpod-${id}.scope/container`, 'container', 'libpod 4f1e2d3c4b5a'],
    [
      `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0a1b2c3d_4e5f_6071_8293_a4b5c6d7e8f9.slice/cri-containerd-${id}.scope`,
      'container',
      'cri-containerd 4f1e2d3c4b5a in pod 0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9',
    ],
    ['/kubepods/besteffort/pod0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9', 'pod', 'pod 0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9'],
    ['/lxc.payload.web/init.scope', 'container', 'lxc web'],
    ['/lxc/db', 'container', 'lxc db'],
    ['/machine.slice/machine-qemu\\x2d3\\x2dweb\\x2d1.scope/libvirt/vcpu0', 'vm', 'web-1'],
    ['/machine/qemu-3-web1.libvirt-qemu/emulator', 'vm', 'web1'],
    ['/user.slice/user-0.slice/session-3.scope', 'session', 'session-3.scope'],
    ['/system.slice', 'slice', 'system.slice'],
    ['/process_api/070086e6', 'cgroup', '070086e6'],
  ];
  for (const [path, kind, name] of cases) assert.deepEqual(describeCgroup(path), { path: path === '/' ? '/' : path, kind, name }, path);
});

test("the kernel's cost rule: KSM costs more than it saves above 64 rmap items per merged page", () => {
  assert.equal(RMAP_BREAK_EVEN, 64);
  assert.deepEqual(ksmCost(1, 64), { rmap_per_page: 64, profit_bytes: 0, costs_more: false });
  assert.deepEqual(ksmCost(1, 65), { rmap_per_page: 65, profit_bytes: -64, costs_more: true });
  assert.deepEqual(ksmCost(0, 10), { rmap_per_page: null, profit_bytes: -640, costs_more: true }, 'watched, nothing merged');
  assert.equal(ksmCost(1, 100, 1).costs_more, false, "zero pages KSM merged count as saved (the kernel's profit)");
  assert.deepEqual(ksmCost(0, 0), { rmap_per_page: null, profit_bytes: 0, costs_more: false });
});
