// hypervisor.socket_glob from the config to the driver: the many-daemons driver is built only
// with a pattern, a bad pattern or a pattern beside hypervisor.socket is an error naming the
// key, and the instance lock is taken on the pattern.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BackendError, buildLibvirtBackends } from '../../../src/daemon/backends.js';
import { hypervisorKey } from '../../../src/daemon/instance-lock.js';
import { parseConfigText } from '../../../src/config/load.js';
import { memoryLogger } from '../../../src/log/logger.js';
import { MultiLibvirtHypervisor } from '../../../src/hypervisor/libvirt/multi.js';
import { LibvirtHypervisor } from '../../../src/hypervisor/libvirt/index.js';

const GLOB = '/var/lib/kubelet/pods/*/volumes/kubernetes.io~empty-dir/libvirt-runtime/virtqemud-sock';
const cfg = (hv: string) => parseConfigText(`[hypervisor]\ndriver = "libvirt"\n${hv}\n`);

test('socket_glob builds the many-daemons driver; without it, one daemon', async () => {
  const multi = await buildLibvirtBackends(cfg(`socket_glob = "${GLOB}"\nuri = "qemu:///session"`), memoryLogger());
  assert.ok(multi.hypervisor instanceof MultiLibvirtHypervisor);
  assert.match(multi.describe, /on every socket matching \/var\/lib\/kubelet\/pods\/\*/);
  const one = await buildLibvirtBackends(cfg(''), memoryLogger());
  assert.ok(one.hypervisor instanceof LibvirtHypervisor);
});

test('a bad pattern, or a pattern beside socket, is an error naming the key', async () => {
  await assert.rejects(
    buildLibvirtBackends(cfg('socket_glob = "pods/*/sock"'), memoryLogger()),
    (e: Error) => e instanceof BackendError && /^hypervisor\.socket_glob: .*must be an absolute path/.test(e.message),
  );
  await assert.rejects(
    buildLibvirtBackends(cfg(`socket_glob = "${GLOB}"\nsocket = "/run/libvirt/libvirt-sock"`), memoryLogger()),
    /hypervisor\.socket and hypervisor\.socket_glob: set one of them/,
  );
});

test('the instance lock is taken on the pattern', () => {
  assert.equal(hypervisorKey(cfg(`socket_glob = "${GLOB}"`).hypervisor), `libvirt ${GLOB}`);
  assert.equal(hypervisorKey(cfg(`socket_glob = "${GLOB}"\nreadonly = true`).hypervisor), null);
});
