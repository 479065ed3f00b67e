// Page cache reclaimed inside a real guest and handed back to the host whole. The guest reads a
// disk into its page cache and reports its free pages (virtio-balloon free page reporting);
// ballast, with [reclaim] on and a policy that asks for no cache, has the guest's own kernel
// reclaim it through its agent (memory.reclaim) a step a cycle. What must hold: the guest's
// cache falls, its QEMU gives the memory back to the host (RSS falls by most of it, with no
// balloon moved), the workload keeps running, and a reclaim of more than the guest has comes
// back short rather than failing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Engine } from '../../src/engine/engine.js';
import { Loop } from '../../src/engine/loop.js';
import { QmpHypervisor } from '../../src/hypervisor/qmp/index.js';
import { compilePolicyText } from '../../src/engine/policy-adapter.js';
import { memoryLogger } from '../../src/log/logger.js';
import { guestCache } from '../../src/controls/reclaim/guard.js';
import { acquireLab, skipLoudly as skip, startCacheGuest } from './fixture.js';

const MiB = 1024;
const GUEST_MIB = 384;
const DISK_MIB = 160;
const POLICY = '(with Guests guest (guest.Control "cache_target" 0))';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** KiB a process holds (VmRSS) and of it in transparent huge pages (AnonHugePages). */
function rssOf(pid: number): { rss: number; huge: number } {
  const field = (text: string, key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? Number.NaN);
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  return { rss: field(rollup, 'Rss'), huge: field(rollup, 'AnonHugePages') };
}

test('lab: a reporting guest reclaims its own page cache through its agent, and its QEMU hands the memory back', { timeout: 600_000 }, async (t) => {
  const lab = await acquireLab(t, { libvirt: false, guests: 0 });
  if (!lab) return;
  t.after(() => lab.release());
  const g = await startCacheGuest(t, lab, { memMiB: GUEST_MIB, diskMiB: DISK_MIB, guestAgent: true, freePageReporting: true });
  if (!g.qgaSocket) return skip(t, 'the lab image has no guest agent (qemu-guest-agent is not in the apt lists)');

  const logger = memoryLogger();
  const hv = new QmpHypervisor({ sockets: [{ socket: g.qmpSocket, agentSocket: g.qgaSocket }], statsPeriodS: 1, retryMs: 200 });
  const engine = new Engine({ logger, hypervisor: hv, hostSources: [], policy: compilePolicyText(POLICY), sections: { reclaim: { enabled: true } } });
  await hv.connect();
  t.after(() => hv.close());
  const latest = async () => {
    await engine.collect();
    return engine.snapshot().guests[0]!;
  };
  const first = await latest();
  const id = first.id;
  assert.equal(first.props.free_page_reporting, 1, 'the driver sees free page reporting on');
  // The guest's agent starts with its init: wait until it answers a reclaim of one page.
  const reclaimer = hv.capabilities.guestReclaim!;
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      await reclaimer.reclaim(id, 4);
      break;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(1000);
    }
  }
  await sleep(2000);
  const s0 = await latest();
  const cache0 = guestCache(s0.stats)!;
  const before = rssOf(g.pid);
  const balloon0 = s0.stats.balloon_cur;
  assert.ok(cache0 >= (DISK_MIB - 16) * MiB, `the guest holds the disk in its cache: ${Math.round(cache0 / 1024)} MiB`);

  const loop = new Loop(engine, { statsIntervalS: 1, policyIntervalS: 2 });
  loop.start();
  let cache = cache0;
  try {
    const end = Date.now() + 120_000;
    while (Date.now() < end && cache > 48 * MiB) {
      await sleep(1000);
      cache = guestCache(engine.snapshot().guests[0]?.stats) ?? cache;
    }
  } finally {
    await loop.stop();
  }
  // Free page reporting hands freed pages back after a couple of seconds, in 4 MiB+ chunks.
  await sleep(6000);
  const after = rssOf(g.pid);
  const s1 = await latest();
  engine.dispose();
  const reclaims = logger.records.filter((r) => r.event === 'action' && r.control === 'cache_target');
  const taken = cache0 - guestCache(s1.stats)!;
  t.diagnostic(
    `reclaim lab: cache ${Math.round(cache0 / 1024)} -> ${Math.round(guestCache(s1.stats)! / 1024)} MiB in ${reclaims.length} actions; QEMU RSS ${Math.round(before.rss / 1024)} -> ${Math.round(after.rss / 1024)} MiB, AnonHugePages ${Math.round(before.huge / 1024)} -> ${Math.round(after.huge / 1024)} MiB`,
  );
  assert.ok(reclaims.length >= 2, `reclaimed a step at a time: ${reclaims.length} action(s)`);
  assert.ok(
    reclaims.every((r) => r.result === 'applied' || r.result === 'unchanged'),
    `every reclaim went through: ${reclaims.map((r) => `${r.result} ${r.error ?? ''}`).join('; ')}`,
  );
  assert.ok(taken >= 64 * MiB, `the guest's page cache fell by ${Math.round(taken / 1024)} MiB`);
  assert.ok(
    before.rss - after.rss >= taken / 2,
    `its QEMU gave back ${Math.round((before.rss - after.rss) / 1024)} MiB of the ${Math.round(taken / 1024)} MiB reclaimed`,
  );
  assert.equal(s1.stats.balloon_cur, balloon0, 'no balloon moved');
  // The guest kept working: its workload still reports, and never exited.
  const rates = lab.consoleOf(g.consoleLog).rates.length;
  const alive = await lab.waitConsole(g.consoleLog, (s) => (s.rates.length >= rates + 2 ? s : undefined), 30_000);
  assert.equal(alive.workloadExits, 0, 'the workload never exited');
  // More than the guest has: its kernel frees what it can and says so (EAGAIN), not an error.
  assert.equal(await reclaimer.reclaim(id, 4 * GUEST_MIB * MiB), 'short');
});
