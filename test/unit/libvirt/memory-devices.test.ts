// The libvirt driver's virtio-mem capability against the fake libvirtd: devices read from the
// live domain XML (as libvirt 9.0 writes it), resize by virDomainUpdateDeviceFlags with the
// device's own XML and a new <requested>, clear errors for bad requests and bad XML.
import { test, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FakeLibvirtd, guest } from './fake-libvirtd.js';
import { LibvirtHypervisor } from '../../../src/hypervisor/libvirt/index.js';
import { DomainNotFoundError } from '../../../src/hypervisor/libvirt/errors.js';
import { parseVirtioMem, withRequested } from '../../../src/hypervisor/libvirt/memory-devices.js';

// The memory device of a running domain, as `virsh dumpxml` showed it on libvirt 9.0.
const vmemXml = (alias: string, requested: number, current: number, slot = 2) => `    <memory model='virtio-mem'>
      <target>
        <size unit='KiB'>262144</size>
        <node>0</node>
        <block unit='KiB'>2048</block>
        <requested unit='KiB'>${requested}</requested>
        <current unit='KiB'>${current}</current>
      </target>
      <alias name='${alias}'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x0${slot}' function='0x0'/>
    </memory>`;

const domXml = (devices: string) => `<domain type='qemu' id='1'>
  <name>g1</name>
  <maxMemory slots='2' unit='KiB'>1048576</maxMemory>
  <memory unit='KiB'>524288</memory>
  <currentMemory unit='KiB'>524288</currentMemory>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
${devices}
    <memballoon model='virtio'><alias name='balloon0'/></memballoon>
  </devices>
</domain>
`;

let fake: FakeLibvirtd;
let hv: LibvirtHypervisor;
const G1 = guest(1).uuid;

beforeEach(async () => {
  fake = new FakeLibvirtd();
  fake.guests = [guest(1, { domainXml: domXml(vmemXml('virtiomem0', 131072, 131072)) }), guest(2, { domainXml: domXml('') })];
  await fake.start();
  hv = new LibvirtHypervisor({ socketPath: fake.path, uri: 'test:///default', reconnectInitialMs: 20 });
  await hv.connect();
});
afterEach(async () => {
  await hv.close();
  await fake.dispose();
});

test('list: the live XML device in KiB (size is <current>, max is <size>); a guest without virtio-mem has none', async () => {
  const cap = hv.capabilities.memoryDevices!;
  assert.deepEqual(await cap.list(G1), [{ id: 'virtiomem0', size: 131072, requested: 131072, block: 2048, max: 262144 }]);
  assert.deepEqual(await cap.list(guest(2).uuid), []);
  await assert.rejects(cap.list('00000000-0000-0000-0000-000000000099'), DomainNotFoundError);
});

test('resize: the device XML libvirt gave, with only <requested> changed, affecting the live domain', async () => {
  const cap = hv.capabilities.memoryDevices!;
  await cap.resize(G1, 'virtiomem0', 65536);
  assert.equal(fake.deviceUpdates.length, 1);
  const u = fake.deviceUpdates[0]!;
  assert.equal(u.flags, 1, 'VIR_DOMAIN_AFFECT_LIVE');
  assert.equal(u.xml, vmemXml('virtiomem0', 65536, 131072).trimStart());
  assert.deepEqual(await cap.list(G1), [{ id: 'virtiomem0', size: 131072, requested: 65536, block: 2048, max: 262144 }]);
});

test('resize refuses a bad size or unknown device before calling libvirt; libvirt errors come through', async () => {
  const cap = hv.capabilities.memoryDevices!;
  await assert.rejects(cap.resize(G1, 'virtiomem0', 3000), /3000 KiB is not a multiple of its 2048 KiB block/);
  await assert.rejects(cap.resize(G1, 'virtiomem0', 264192), /more than its 262144 KiB/);
  await assert.rejects(cap.resize(G1, 'virtiomem0', Number.NaN), /whole, non-negative KiB/);
  await assert.rejects(cap.resize(G1, 'virtiomem9', 2048), /has no virtio-mem device virtiomem9 \(its devices: virtiomem0\)/);
  assert.equal(fake.deviceUpdates.length, 0);
  // The device was re-addressed between our read and the update: libvirt's refusal comes through.
  fake.intercept = (_sock, f) => {
    if (f.header.proc === 174) fake.guests[0]!.domainXml = fake.guests[0]!.domainXml!.replace("slot='0x02'", "slot='0x03'");
    return false;
  };
  await assert.rejects(cap.resize(G1, 'virtiomem0', 2048), /memory 'virtiomem0' not found/);
  assert.equal(fake.deviceUpdates.length, 1);
});

test('garbage from libvirtd is a clear error, not a crash', async () => {
  const cap = hv.capabilities.memoryDevices!;
  fake.guests[0]!.domainXml = '<domain><devices><memory model="virtio-mem"><target>';
  await assert.rejects(cap.list(G1), /libvirt XML of g1 is not well-formed/);
  fake.guests[0]!.domainXml = domXml(vmemXml('virtiomem0', 131072, 131072).replace("<block unit='KiB'>2048</block>", "<block unit='KiB'>lots</block>"));
  await assert.rejects(cap.list(G1), /virtio-mem virtiomem0 of g1: <block> is not a size/);
  fake.guests[0]!.domainXml = domXml(vmemXml('virtiomem0', 131072, 131072).replace(/<current[^\n]*\n/, ''));
  await assert.rejects(cap.list(G1), /no <current> in the live XML/);
});

test('parseVirtioMem: units, several devices, other memory models and alias-less devices left out', () => {
  const two = domXml(
    [
      vmemXml('virtiomem0', 0, 0),
      vmemXml('virtiomem1', 0, 0, 3)
        .replace("<size unit='KiB'>262144</size>", "<size unit='GiB'>1</size>")
        .replace("<block unit='KiB'>2048</block>", "<block unit='MiB'>4</block>"),
      "    <memory model='dimm'><target><size unit='KiB'>131072</size><node>0</node></target><alias name='dimm0'/></memory>",
      "    <memory model='virtio-mem'><target><size unit='KiB'>131072</size><block unit='KiB'>2048</block><requested unit='KiB'>0</requested></target></memory>",
    ].join('\n'),
  );
  const devs = parseVirtioMem(two).map(({ xml: _x, ...d }) => d);
  assert.deepEqual(devs, [
    { id: 'virtiomem0', size: 0, requested: 0, block: 2048, max: 262144 },
    { id: 'virtiomem1', size: 0, requested: 0, block: 4096, max: 1048576 },
  ]);
  // The domain's own <memory unit='KiB'> outside <devices> is never taken for a device.
  assert.deepEqual(parseVirtioMem(domXml('')), []);
  assert.throws(() => parseVirtioMem(domXml(Array.from({ length: 300 }, () => vmemXml('a', 0, 0)).join('\n'))), /more than 256 memory devices/);
  assert.throws(() => withRequested('<memory model="virtio-mem"><target/></memory>', 2048), /no <requested>/);
  assert.equal(withRequested("<x><requested unit='MiB'>4</requested></x>", 2048), "<x><requested unit='KiB'>2048</requested></x>");
});

test('parseVirtioMem on damaged XML: devices with whole sizes, or an error that names the XML or the device, never a crash', () => {
  const good = domXml([vmemXml('virtiomem0', 131072, 65536), vmemXml('virtiomem1', 0, 0, 3)].join('\n'));
  const damaged = fc.oneof(
    fc.string(),
    fc.tuple(fc.nat(good.length), fc.nat(good.length)).map(([a, b]) => good.slice(0, Math.min(a, b)) + good.slice(Math.max(a, b))),
    fc.tuple(fc.nat(good.length - 1), fc.constantFrom('<', '>', "'", '/', 'x', '9', ' ', '&', '-')).map(([i, c]) => good.slice(0, i) + c + good.slice(i + 1)),
  );
  fc.assert(
    fc.property(damaged, (xml) => {
      let devs: ReturnType<typeof parseVirtioMem>;
      try {
        devs = parseVirtioMem(xml, 'g1');
      } catch (e) {
        assert.match((e as Error).message, /^(libvirt XML of g1|virtio-mem \S+ of g1)/, (e as Error).message);
        return;
      }
      for (const d of devs) for (const v of [d.size, d.requested, d.block, d.max]) assert.ok(Number.isSafeInteger(v) && v >= 0, `${d.id}: ${v}`);
    }),
    { numRuns: 400 },
  );
});

// A hang guard, not a speed measure: the first version scanned the rest of the XML for every
// `<memory/>` and did not finish this in minutes.
test('a domain XML flooded with empty <memory/> elements is read in one pass', { timeout: 60_000 }, () => {
  assert.deepEqual(parseVirtioMem(`<domain><devices>${'<memory/>'.repeat(400_000)}</devices></domain>`), []);
  assert.deepEqual(parseVirtioMem(`<domain><devices>${"<memory model='x'/>".repeat(200_000)}${vmemXml('virtiomem0', 0, 0)}</devices></domain>`).length, 1);
});

test('a device element nested beyond the XML parser limits is an error naming the domain', () => {
  const deep = `<domain><devices><memory model='virtio-mem'>${'<a>'.repeat(200_000)}${'</a>'.repeat(200_000)}<alias name='x'/></memory></devices></domain>`;
  assert.throws(() => parseVirtioMem(deep, 'g1'), /^Error: libvirt XML of g1: a <memory> element cannot be read \(/);
});
