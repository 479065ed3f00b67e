// Another manager on the same guest (issue 28 part 2), on a real libvirtd and a real QEMU guest:
// ballast sets a balloon target, then something else (here `virsh setmem`, as an admin, vdsm or
// pvestatd would) moves the balloon away from it. ballast must say so once, show it in its
// view, and leave the guest alone for safeguards.external_hold instead of fighting.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { virsh } from '../../src/lab/guests.js';
import { LibvirtHypervisor } from '../../src/hypervisor/libvirt/index.js';
import { Engine } from '../../src/engine/engine.js';
import { compilePolicyText } from '../../src/engine/policy-adapter.js';
import { memoryLogger } from '../../src/log/logger.js';
import { acquireLab, until } from './fixture.js';

const MiB = 1024;

test('a balloon moved by someone else is reported once and left alone; ballast does not set it back', { timeout: 600_000 }, async (t) => {
  const session = await acquireLab(t, { guests: 1, memMiB: 384, workload: '', meminfoS: 1, statsPeriodS: 1, bootTimeoutMs: 240_000 });
  if (!session) return;
  t.after(() => session.release());
  const name = session.guests[0]!.name;
  const hv = new LibvirtHypervisor({ statsPeriodSec: 1 });
  t.after(() => hv.close());
  const sets: number[] = [];
  const setBalloon = hv.setBalloon.bind(hv);
  hv.setBalloon = async (id, kib) => {
    sets.push(kib);
    return setBalloon(id, kib);
  };
  await hv.connect();
  const logger = memoryLogger();
  const engine = new Engine({
    hypervisor: hv,
    hostSources: [],
    // Only this session's guest; it should have 320 MiB.
    policy: compilePolicyText(`(with Guests guest (if (== (guest.Prop "name") "${name}") (guest.Control "balloon_target" ${320 * MiB}) 0))`),
    logger,
    safeguards: { minGuestKiB: 128 * MiB, headroomKiB: 32 * MiB, maxStepFraction: 1, externalHoldS: 600, rollbackWindow: 0 },
  });
  t.after(() => engine.dispose());
  const mine = () => engine.snapshot().guests.find((g) => g.name === name);
  // ballast sets it and the balloon gets there.
  await until('ballast to set the balloon to 320 MiB and the guest to reach it', 120_000, async () => {
    await engine.collect();
    await engine.evaluateAndAct();
    const cur = mine()?.stats.balloon_cur;
    return typeof cur === 'number' && Math.abs(cur - 320 * MiB) < 2 * MiB;
  });
  assert.ok(sets.includes(320 * MiB), `ballast set 320 MiB (${sets})`);
  const setsBefore = sets.length;
  // An admin moves it to 360 MiB behind ballast's back.
  await virsh(['setmem', name, `${360 * MiB}`, '--live']);
  await until('ballast to notice the balloon moved', 60_000, async () => {
    await engine.collect();
    return logger.records.some((r) => r.event === 'balloon_moved_externally');
  });
  const seen = mine()!.movedByOther;
  assert.ok(seen, 'shown in the view');
  assert.equal(seen.ours, 320 * MiB);
  assert.ok(Math.abs(seen.to - 360 * MiB) < 8 * MiB, `moved to about 360 MiB (${seen.to / MiB} MiB)`);
  // For the rest of the hold, cycles veto and nothing is set; the balloon stays where the admin put it.
  for (let i = 0; i < 8; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    await engine.collect();
    const r = await engine.evaluateAndAct();
    assert.ok(
      r.notes.some((n) => n.entity === name && n.reasons[0]?.includes('another manager')),
      'vetoed with the reason',
    );
  }
  assert.equal(sets.length, setsBefore, `ballast did not set the balloon back (${sets.slice(setsBefore)})`);
  const cur = mine()!.stats.balloon_cur as number;
  assert.ok(Math.abs(cur - 360 * MiB) < 8 * MiB, `the balloon stays where the admin put it (${cur / MiB} MiB)`);
  assert.equal(logger.records.filter((r) => r.event === 'balloon_moved_externally').length, 1, 'said once');
});
