// The simulated virtio-mem device: plugged and unplugged in whole blocks at its rates, an unplug
// that stops short when the guest's used memory would not fit, the host memory behind unplugged
// blocks released, and the same capability (and checks) as the real drivers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { SimWorld, type GuestSpec } from '../../../src/sim/world.js';
import { SimMemoryDevices } from '../../../src/hypervisor/sim/memory-devices.js';
import { SimHypervisor } from '../../../src/hypervisor/sim/index.js';
import { parseScenario } from '../../../src/sim/scenarios.js';
import { MIB } from '../../../src/sim/params.js';
import type { SimGuest } from '../../../src/sim/guest.js';

function world(guests: GuestSpec[]) {
  return new SimWorld({ host: { memMiB: 8192, swapMiB: 2048, cpus: 4 }, guests });
}

/** Guest RAM is exactly its parts, and never more than base + plugged. */
function consistent(g: SimGuest): void {
  const parts = g.kern.size + g.hot.size + g.cold.size + g.cache.size + g.freeT.size + g.freeU;
  assert.ok(Math.abs(parts - g.balloonCur) < 4, `parts ${parts} != balloon_cur ${g.balloonCur}`);
  assert.ok(g.balloonCur <= g.maxKiB + 1, `balloon_cur ${g.balloonCur} above max ${g.maxKiB}`);
}

test('a guest with virtio-mem: plugged at boot, listed in KiB, balloon_max is base + plugged; one without has none', async () => {
  const w = world([
    { name: 'vm', memMiB: 1024, virtioMem: { maxMiB: 1024, requestedMiB: 512 }, workload: { kind: 'idle', anonMiB: 100 } },
    { name: 'plain', memMiB: 1024, workload: { kind: 'idle' } },
  ]);
  const cap = new SimHypervisor(w).capabilities.memoryDevices!;
  assert.deepEqual(await cap.list('vm'), [{ id: 'virtiomem0', size: 512 * MIB, requested: 512 * MIB, block: 2 * MIB, max: 1024 * MIB }]);
  assert.deepEqual(await cap.list('plain'), []);
  const g = w.guests.get('vm')!;
  assert.equal(g.maxKiB, 1536 * MIB);
  assert.equal(g.balloonCur, 1536 * MIB, 'the guest boots with base + plugged');
  await assert.rejects(cap.list('ghost'), /guest ghost is not running/);
});

test('unplug and plug move in whole blocks at the device rates; the host memory behind unplugged blocks goes', async () => {
  const w = world([
    {
      name: 'vm',
      memMiB: 1024,
      virtioMem: { maxMiB: 1024, blockMiB: 4, plugMiBps: 200, unplugMiBps: 100 },
      // Touches 1200 MiB (into the plugged memory), then drops to 100 MiB.
      workload: {
        kind: 'phases',
        phases: [
          { durationS: 30, workload: { kind: 'idle', anonMiB: 1200, wsMiB: 1200 } },
          { durationS: 100000, workload: { kind: 'idle', anonMiB: 100 } },
        ],
      },
    },
  ]);
  const cap = new SimMemoryDevices(w);
  const g = w.guests.get('vm')!;
  w.advance(40);
  const residentBefore = g.hostResidentKiB;
  assert.ok(residentBefore > 1100 * MIB, `the guest touched its memory: ${residentBefore} KiB resident`);
  await cap.resize('vm', 'virtiomem0', 0);
  const sizes: number[] = [];
  for (let s = 0; s < 12; s++) {
    w.advance(1);
    consistent(g);
    sizes.push((await cap.list('vm'))[0]!.size);
  }
  for (const sz of sizes) assert.equal(sz % (4 * MIB), 0, `size ${sz} KiB is whole 4 MiB blocks`);
  assert.ok(Math.abs(sizes[0]! - 924 * MIB) <= 8 * MIB, `about 100 MiB unplugged in the first second: ${sizes[0]! / MIB} MiB left`);
  assert.equal(sizes.at(-1), 0, 'all unplugged: 100 MiB in use fits in the base memory');
  assert.equal(g.maxKiB, 1024 * MIB);
  assert.ok(g.hostResidentKiB < residentBefore - 900 * MIB, `host memory released: ${residentBefore} -> ${g.hostResidentKiB} KiB`);

  await cap.resize('vm', 'virtiomem0', 400 * MIB);
  w.advance(1);
  assert.equal((await cap.list('vm'))[0]!.size, 200 * MIB, 'plugged at 200 MiB/s');
  w.advance(2);
  assert.equal((await cap.list('vm'))[0]!.size, 400 * MIB);
  assert.equal(g.balloonCur, 1424 * MIB);
  consistent(g);
});

test('an unplug stops short when the used memory would not fit: size stays above requested, nothing swapped or killed for it', async () => {
  const w = world([{ name: 'vm', memMiB: 1024, virtioMem: { maxMiB: 1024 }, workload: { kind: 'idle', anonMiB: 1500, wsMiB: 1500 } }]);
  const cap = new SimMemoryDevices(w);
  const g = w.guests.get('vm')!;
  w.advance(20);
  const swapOut = g.c.swapOutKiB;
  await cap.resize('vm', 'virtiomem0', 0);
  w.advance(60);
  const [d] = await cap.list('vm');
  assert.equal(d!.requested, 0);
  assert.ok(d!.size >= 1500 * MIB - 1024 * MIB, `stopped short at ${d!.size / MIB} MiB: 1500 MiB in use must fit`);
  assert.ok(d!.size < 1024 * MIB, 'what could go, went');
  assert.equal(d!.size % (2 * MIB), 0);
  assert.equal(g.c.swapOutKiB, swapOut, 'the unplug pushed nothing to the guest swap');
  assert.equal(g.c.oomKills, 0);
  consistent(g);
});

test('resize refuses what a real device would, with the same messages', async () => {
  const w = world([{ name: 'vm', memMiB: 512, virtioMem: { maxMiB: 256 }, workload: { kind: 'idle' } }]);
  const cap = new SimMemoryDevices(w);
  await assert.rejects(cap.resize('vm', 'virtiomem0', 3000), /3000 KiB is not a multiple of its 2048 KiB block/);
  await assert.rejects(cap.resize('vm', 'virtiomem0', 512 * MIB), /more than its 262144 KiB/);
  await assert.rejects(cap.resize('vm', 'virtiomem0', -2048), /whole, non-negative/);
  await assert.rejects(cap.resize('vm', 'vmem9', 2048), /has no virtio-mem device vmem9 \(its devices: virtiomem0\)/);
  assert.equal((await cap.list('vm'))[0]!.requested, 256 * MIB);
});

test('scenario files: virtioMem is optional, checked, and unknown keys in it are refused', () => {
  const base = { host: { memMiB: 4096, swapMiB: 0, cpus: 2 }, guests: [{ name: 'a', memMiB: 1024, workload: { kind: 'idle' } }] };
  const ok = parseScenario({ ...base, guests: [{ ...base.guests[0], virtioMem: { maxMiB: 512, requestedMiB: 256, blockMiB: 4, plugMiBps: 100 } }] });
  assert.deepEqual(ok.guests[0]!.virtioMem, { maxMiB: 512, requestedMiB: 256, blockMiB: 4, plugMiBps: 100 });
  assert.equal(parseScenario(base).guests[0]!.virtioMem, undefined);
  assert.throws(
    () => parseScenario({ ...base, guests: [{ ...base.guests[0], virtioMem: { maxMiB: 513 } }] }, 's.json'),
    /s.json: guest a: virtioMem maxMiB and requestedMiB must be multiples of blockMiB \(2\)/,
  );
  assert.throws(
    () => parseScenario({ ...base, guests: [{ ...base.guests[0], virtioMem: { maxMiB: 512, requestedMiB: 1024 } }] }),
    /requestedMiB at most maxMiB/,
  );
  assert.throws(() => parseScenario({ ...base, guests: [{ ...base.guests[0], virtioMem: { maxMiB: 512, sizeMiB: 3 } }] }), /guests\.0\.virtioMem/);
});

test('memory is conserved under random plugs, unplugs and balloon moves: whole blocks, within the device, parts = balloon_cur', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          memMiB: fc.integer({ min: 256, max: 2048 }),
          maxBlocks: fc.integer({ min: 1, max: 256 }),
          blockMiB: fc.constantFrom(2, 4, 8),
          reqFrac: fc.double({ min: 0, max: 1, noNaN: true }),
          anonMiB: fc.integer({ min: 0, max: 2500 }),
          unplugMiBps: fc.integer({ min: 1, max: 1000 }),
        }),
        { minLength: 1, maxLength: 3 },
      ),
      fc.array(fc.tuple(fc.nat(2), fc.double({ min: 0, max: 1, noNaN: true }), fc.boolean()), { maxLength: 10 }),
      (guests, moves) => {
        const w = world(
          guests.map((g, i) => ({
            name: `g${i}`,
            memMiB: g.memMiB,
            virtioMem: {
              maxMiB: g.maxBlocks * g.blockMiB,
              requestedMiB: Math.floor(g.maxBlocks * g.reqFrac) * g.blockMiB,
              blockMiB: g.blockMiB,
              unplugMiBps: g.unplugMiBps,
            },
            workload: { kind: 'idle', anonMiB: g.anonMiB, wsMiB: g.anonMiB },
          })),
        );
        for (let i = 0; i < 10; i++) {
          const [gi, frac, balloon] = moves[i] ?? [0, 1, false];
          const g = w.guests.get(`g${gi % guests.length}`);
          if (g) {
            const d = g.vmem!;
            if (balloon) g.balloonTarget = Math.max(1, g.maxKiB * frac);
            else d.requested = Math.floor((d.maxKiB / d.blockKiB) * frac) * d.blockKiB;
          }
          w.advance(5);
          let touched = 0;
          let held = 0;
          for (const x of w.guests.values()) {
            consistent(x);
            const d = x.vmem!;
            assert.ok(d.size >= 0 && d.size <= d.maxKiB && d.size % d.blockKiB === 0, `${x.name}: size ${d.size}`);
            assert.equal(x.maxKiB, x.baseKiB + d.size);
            touched += x.touchedKiB;
            held += x.hostResidentKiB + x.hostSwappedKiB;
          }
          assert.ok(Math.abs(touched - held) < 8, 'the host holds exactly what the guests touched');
        }
      },
    ),
    { numRuns: 40 },
  );
});
