// The QMP driver's virtio-mem capability against an in-test QMP server shaped like QEMU 7.2
// (replies copied from a real `-device virtio-mem-pci`): listing, anonymous devices found by
// their backend, resize checks before anything is sent, garbage replies refused clearly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { QmpHypervisor } from '../../../src/hypervisor/qmp/hypervisor.js';
import { parseMemoryDevices } from '../../../src/hypervisor/qmp/memory-devices.js';
import { cleanup, fakeQmp, type FakeQmp } from './fake-server.js';

const MiB = 1048576;

function vmem(id: string | undefined, memdev: string, size: number, requested: number, max = 256 * MiB) {
  return {
    type: 'virtio-mem',
    data: { memdev, memaddr: 4294967296, 'block-size': 2 * MiB, size, node: 0, 'max-size': max, 'requested-size': requested, ...(id ? { id } : {}) },
  };
}

async function guest(t: { after: (fn: () => unknown) => void }, devices: () => unknown): Promise<{ f: FakeQmp; h: QmpHypervisor }> {
  const f = await fakeQmp();
  t.after(() => cleanup(f));
  f.handle = (cmd) => {
    const r = (v: unknown) => ({ return: v, id: cmd.id });
    const a = cmd.arguments ?? {};
    switch (cmd.execute) {
      case 'query-name':
        return r({ name: 'vm1' });
      case 'query-memory-size-summary':
        return r({ 'base-memory': 256 * MiB, 'plugged-memory': 0 });
      case 'query-cpus-fast':
        return r([]);
      case 'query-memory-devices':
        return r(devices());
      case 'qom-list':
        return r(
          a.path === '/machine/peripheral-anon'
            ? [
                { name: 'type', type: 'string' },
                { name: 'device[0]', type: 'child<virtio-mem-pci>' },
              ]
            : [],
        );
      case 'qom-get':
        if (a.path === '/machine/peripheral-anon/device[0]' && a.property === 'memdev') return r('/objects/m0');
        return { error: { class: 'GenericError', desc: `no ${String(a.path)}` }, id: cmd.id };
      case 'qom-set':
        if (a.value === 1024 * MiB)
          return { error: { class: 'GenericError', desc: "'requested-size' cannot exceed the memory backend size(0x10000000)" }, id: cmd.id };
        return r({});
      default:
        return r({});
    }
  };
  const h = new QmpHypervisor({ sockets: [{ socket: f.path, name: 'vm1' }] });
  t.after(() => h.close());
  await h.connect();
  return { f, h };
}

test('lists virtio-mem devices in KiB and resizes one by qom-set of requested-size in bytes', async (t) => {
  const { f, h } = await guest(t, () => [{ type: 'dimm', data: { id: 'd0', size: 128 * MiB } }, vmem('vmem0', '/objects/vmem0mem', 128 * MiB, 64 * MiB)]);
  const cap = h.capabilities.memoryDevices!;
  assert.deepEqual(await cap.list('vm1'), [{ id: 'vmem0', size: 128 * 1024, requested: 64 * 1024, block: 2048, max: 256 * 1024 }]);
  await cap.resize('vm1', 'vmem0', 32 * 1024);
  const set = f.received.at(-1)!;
  assert.equal(set.execute, 'qom-set');
  assert.deepEqual(set.arguments, { path: '/machine/peripheral/vmem0', property: 'requested-size', value: 32 * MiB });
});

test('a device without an id is named by its QOM path, found through its memory backend', async (t) => {
  const { f, h } = await guest(t, () => [vmem(undefined, '/objects/m0', 0, 0), vmem('vm1', '/objects/m1', 0, 0, 128 * MiB)]);
  const cap = h.capabilities.memoryDevices!;
  const devs = await cap.list('vm1');
  assert.deepEqual(
    devs.map((d) => d.id),
    ['/machine/peripheral-anon/device[0]', 'vm1'],
  );
  await cap.resize('vm1', '/machine/peripheral-anon/device[0]', 4096);
  assert.deepEqual(f.received.at(-1)!.arguments, { path: '/machine/peripheral-anon/device[0]', property: 'requested-size', value: 4 * MiB });
});

test('resize refuses what QEMU would refuse, before sending anything, and passes on what QEMU says', async (t) => {
  let max = 256 * MiB;
  const { f, h } = await guest(t, () => [vmem('vmem0', '/objects/vmem0mem', 0, 0, max)]);
  const cap = h.capabilities.memoryDevices!;
  const sent = () => f.received.filter((c) => c.execute === 'qom-set').length;
  await assert.rejects(cap.resize('vm1', 'vmem0', 3 * 1024), /3072 KiB is not a multiple of its 2048 KiB block/);
  await assert.rejects(cap.resize('vm1', 'vmem0', 512 * 1024), /more than its 262144 KiB/);
  await assert.rejects(cap.resize('vm1', 'vmem0', -2048), /whole, non-negative KiB/);
  await assert.rejects(cap.resize('vm1', 'vmem0', 1.5), /whole, non-negative KiB/);
  await assert.rejects(cap.resize('vm1', 'nope', 2048), /guest vm1 has no virtio-mem device nope \(its devices: vmem0\)/);
  await assert.rejects(cap.resize('ghost', 'vmem0', 2048), /no guest ghost/);
  assert.equal(sent(), 0);
  assert.deepEqual(await cap.list('vm1'), [{ id: 'vmem0', size: 0, requested: 0, block: 2048, max: 262144 }]);
  // A device that grew between list and qom-set: QEMU's own refusal comes through.
  max = 2048 * MiB;
  await assert.rejects(cap.resize('vm1', 'vmem0', 1024 * 1024), /GenericError: 'requested-size' cannot exceed/);
});

test('a guest without virtio-mem lists none; garbage from QEMU is a clear error', async (t) => {
  let reply: unknown = [];
  const { h } = await guest(t, () => reply);
  const cap = h.capabilities.memoryDevices!;
  assert.deepEqual(await cap.list('vm1'), []);
  reply = { not: 'a list' };
  await assert.rejects(cap.list('vm1'), /query-memory-devices: expected a list, got object/);
  reply = [{ type: 'virtio-mem', data: { id: 'x', memdev: '/objects/m', 'block-size': 2 * MiB, size: '12', 'requested-size': 0, 'max-size': 0 } }];
  await assert.rejects(cap.list('vm1'), /virtio-mem entry 0 has no valid "size" \(got "12"\)/);
});

test('parseMemoryDevices: wrong shapes are refused with what was wrong', () => {
  assert.throws(() => parseMemoryDevices([null]), /entry 0 is not an object/);
  assert.throws(() => parseMemoryDevices([{ type: 'virtio-mem' }]), /virtio-mem entry 0 has no data/);
  assert.throws(() => parseMemoryDevices([vmem('a', '', 0, 0)]), /has no "memdev"/);
  assert.throws(() => parseMemoryDevices([{ type: 'virtio-mem', data: { ...vmem('a', '/m', 0, 0).data, 'block-size': 0 } }]), /block size of 0/);
  assert.throws(() => parseMemoryDevices([{ type: 'virtio-mem', data: { ...vmem('a', '/m', 0, 0).data, 'max-size': -1 } }]), /no valid "max-size"/);
  assert.throws(() => parseMemoryDevices([{ type: 'virtio-mem', data: { ...vmem('a', '/m', 0, 0).data, id: 7 } }]), /invalid "id"/);
  assert.throws(() => parseMemoryDevices(new Array(300).fill(vmem('a', '/m', 0, 0))), /300 devices/);
  assert.deepEqual(parseMemoryDevices([{ type: 'nvdimm', data: {} }, { type: 'virtio-pmem' }]), []);
});

test('parseMemoryDevices on any JSON: devices with whole KiB sizes, or an error naming query-memory-devices, never a crash', () => {
  const entry = fc.record(
    {
      type: fc.oneof(fc.constant('virtio-mem'), fc.constant('dimm'), fc.anything()),
      data: fc.oneof(
        fc.record(
          {
            id: fc.oneof(fc.string(), fc.anything()),
            memdev: fc.oneof(fc.constant('/objects/m'), fc.anything()),
            size: fc.oneof(fc.nat(), fc.double(), fc.anything()),
            'requested-size': fc.oneof(fc.nat(), fc.anything()),
            'block-size': fc.oneof(fc.constant(2 * MiB), fc.nat(), fc.anything()),
            'max-size': fc.oneof(fc.nat(), fc.anything()),
          },
          { requiredKeys: [] },
        ),
        fc.anything(),
      ),
    },
    { requiredKeys: [] },
  );
  fc.assert(
    fc.property(fc.oneof(fc.anything(), fc.array(entry, { maxLength: 4 })), (reply) => {
      let devs: ReturnType<typeof parseMemoryDevices>;
      try {
        devs = parseMemoryDevices(reply);
      } catch (e) {
        assert.match((e as Error).message, /^QMP query-memory-devices: /, (e as Error).message);
        return;
      }
      for (const d of devs) for (const v of [d.size, d.requested, d.block, d.max]) assert.ok(Number.isSafeInteger(v) && v >= 0);
    }),
    { numRuns: 500 },
  );
});
