import { test } from 'node:test';
import assert from 'node:assert/strict';
import { domainXml, guestCmdline, checkMemMiB } from '../../../src/lab/guests.js';

const base = {
  name: 'ballast-lab-1',
  memMiB: 256,
  kernel: '/lab/build/vmlinuz',
  initrd: '/lab/build/initramfs.cpio.gz',
  consolePath: '/run/ballast-lab/guests/ballast-lab-1.console',
  statsPeriodS: 2,
  emulator: '/usr/bin/qemu-system-x86_64',
};

test('domainXml: TCG domain, memory in KiB, balloon with stats period, serial console file', () => {
  const xml = domainXml({ ...base, workload: 'alloc:32,touch:4,loop', guestAgent: true });
  assert.match(xml, /<domain type='qemu'>/);
  assert.match(xml, /<memory unit='KiB'>262144<\/memory>/);
  assert.match(xml, /<currentMemory unit='KiB'>262144<\/currentMemory>/);
  assert.match(xml, /<memballoon model='virtio'>\s*<stats period='2'\/>/);
  assert.match(xml, /<serial type='file'>\s*<source path='\/run\/ballast-lab\/guests\/ballast-lab-1.console'\/>/);
  assert.match(xml, /<cmdline>[^<]*ballast.workload=alloc:32,touch:4,loop[^<]*<\/cmdline>/);
  // The agent's socket beside the console: libvirt's default path is too long for a socket
  // under the experiment's per-run libvirtds.
  assert.match(
    xml,
    /<channel type='unix'>\s*<source mode='bind' path='\/run\/ballast-lab\/guests\/ballast-lab-1.qga'\/>\s*<target type='virtio' name='org.qemu.guest_agent.0'\/>/,
  );
  assert.doesNotMatch(domainXml({ ...base, guestAgent: false }), /guest_agent/);
  assert.match(domainXml({ ...base, freePageReporting: true }), /<memballoon model='virtio' freePageReporting='on'>/);
  assert.doesNotMatch(xml, /freePageReporting/);
  assert.match(domainXml({ ...base, balloon: false }), /<memballoon model='none'\/>/);
});

test('domainXml escapes paths', () => {
  const xml = domainXml({ ...base, kernel: "/a&b/<k>'" });
  assert.match(xml, /<kernel>\/a&amp;b\/&lt;k&gt;&apos;<\/kernel>/);
});

test('guest memory outside 128..512 MiB is refused', () => {
  assert.equal(checkMemMiB(128), 128);
  assert.throws(() => domainXml({ ...base, memMiB: 64 }), /128 to 512/);
  assert.throws(() => checkMemMiB(513), /got 513/);
  assert.throws(() => checkMemMiB(200.5), /whole number/);
});

test('guestCmdline: ballast parameters, bad names and workloads refused', () => {
  const c = guestCmdline({ name: 'g1', workload: 'idle:5', delayS: 10, guestAgent: false });
  assert.match(c, /console=ttyS0/);
  assert.match(c, /ballast.name=g1 ballast.workload=idle:5 ballast.delay=10 ballast.qga=0/);
  assert.doesNotMatch(guestCmdline({ name: 'g1' }), /ballast.workload/);
  assert.throws(() => guestCmdline({ name: 'a b' }), /bad guest name/);
  assert.throws(() => guestCmdline({ name: 'g', workload: 'touch' }), /bad workload step/);
});

test('domainXml with virtio-mem: a memory slot and room under maxMemory, a NUMA cell, the device in KiB; movable onlining on the command line', () => {
  const xml = domainXml({ ...base, virtioMem: { maxMiB: 256, requestedMiB: 128 } });
  assert.match(xml, /<maxMemory slots='1' unit='KiB'>524288<\/maxMemory>/);
  assert.match(xml, /<cell id='0' cpus='0' memory='262144' unit='KiB'\/>/);
  assert.match(
    xml,
    /<memory model='virtio-mem'>\s*<target>\s*<size unit='KiB'>262144<\/size>\s*<node>0<\/node>\s*<block unit='KiB'>2048<\/block>\s*<requested unit='KiB'>131072<\/requested>/,
  );
  assert.match(xml, /<cmdline>[^<]*memhp_default_state=online_movable/);
  const plain = domainXml(base);
  assert.doesNotMatch(plain, /maxMemory|numa|virtio-mem|memhp_default_state/);
  assert.throws(() => domainXml({ ...base, virtioMem: { maxMiB: 256, requestedMiB: 300 } }), /from 0 to 256, got 300/);
});
