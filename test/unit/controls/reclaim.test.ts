// The reclaim module: its guard on hand-made samples, the agent write behind it on a scripted
// agent, the plan and the controller's outcomes. The real guest's answer is in
// test/lab/guest-reclaim.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { History } from '../../../src/engine/history.js';
import { defaultSafeguards, type SafeguardConfig } from '../../../src/controls/floor.js';
import { guardReclaim, guestCache, KEEP_CACHE_KIB, type ReclaimState } from '../../../src/controls/reclaim/guard.js';
import { planReclaim, reclaim } from '../../../src/controls/reclaim/index.js';
import { GuestReclaimUnsupported, MEMORY_RECLAIM_PATH, reclaimInGuest } from '../../../src/hypervisor/guest-reclaim.js';
import { writeGuestFile } from '../../../src/hypervisor/guest-agent.js';
import { failureKind } from '../../../src/errors.js';
import type { Action, ControlEnv } from '../../../src/controls/control.js';
import type { Hypervisor } from '../../../src/types.js';
import { memoryLogger, nullLogger } from '../../../src/log/logger.js';
import { Engine } from '../../../src/engine/engine.js';
import { compilePolicyText } from '../../../src/engine/policy-adapter.js';
import { SimHypervisor, simHostSource } from '../../../src/hypervisor/sim/index.js';
import { parseScenario } from '../../../src/sim/scenarios.js';
import { SimWorld } from '../../../src/sim/world.js';

const MiB = 1024;
// cache step 5% of 1 GiB: 51.2 MiB a cycle.
const cfg: SafeguardConfig = { ...defaultSafeguards, rollbackWindow: 3, rollbackBackoffS: 300 };
const guest = (o: Record<string, number | null> = {}) => ({
  balloon_cur: 1024 * MiB,
  balloon_max: 1024 * MiB,
  mem_unused: 100 * MiB,
  mem_free: 400 * MiB, // 300 MiB of page cache
  swap_in: 0,
  major_fault: 0,
  ...o,
});
function hist(...samples: Record<string, number | null>[]): History {
  const h = new History(10);
  for (const [i, s] of samples.entries()) h.push(s, i * 5);
  return h;
}
const guard = (h: History, requested: unknown, o: { state?: ReclaimState; cycle?: number; now?: number; stale?: string; fpr?: boolean } = {}) =>
  guardReclaim({ history: h, requested, state: o.state ?? {}, cycle: o.cycle ?? 10, now: o.now ?? 50, stale: o.stale, reportsFreePages: o.fpr ?? true }, cfg);

test('reclaim guard: a step of page cache a cycle, never below what a guest keeps', () => {
  assert.equal(guestCache(guest()), 300 * MiB);
  assert.equal(guestCache({ mem_free: 5, mem_unused: null }), null);
  const d = guard(hist(guest()), 0);
  assert.equal(d.verdict, 'apply');
  assert.equal(d.from, 300 * MiB);
  assert.equal(d.to, 300 * MiB - Math.round(0.05 * 1024 * MiB), 'the balloon cache step: 5% of the guest');
  assert.ok(d.reasons.some((r) => r.includes('a cycle')));
  assert.deepEqual(d.next, { last: { cycle: 10, at: 50, kib: Math.round(0.05 * 1024 * MiB) } }, 'watched for refaults');
  // Close to the target: only the difference.
  assert.equal(guard(hist(guest()), 280 * MiB).to, 280 * MiB);
  // Below the guest's own minimum: it keeps KEEP_CACHE_KIB.
  const low = guard(hist(guest({ mem_free: 100 * MiB + 40 * MiB })), 0);
  assert.equal(low.to, KEEP_CACHE_KIB);
  assert.ok(low.reasons.some((r) => r.includes('keeps')));
  assert.equal(guard(hist(guest({ mem_free: 100 * MiB + KEEP_CACHE_KIB + 100 })), 0).verdict, 'skip', 'nothing worth asking for');
  assert.equal(guard(hist(guest()), 400 * MiB).verdict, 'skip', 'a target above the cache asks nothing');
});

test('reclaim guard: only reporting guests, fresh samples and sane requests; nothing asked, nothing said', () => {
  const h = hist(guest());
  assert.match(guard(h, 0, { fpr: false }).reasons[0]!, /does not report free pages/);
  assert.equal(guard(h, 0, { fpr: false }).verdict, 'veto');
  assert.match(guard(h, 0, { stale: 'driver error' }).reasons[0]!, /stale/);
  assert.match(guard(h, -1).reasons[0]!, /KiB count/);
  assert.match(guard(h, 'lots').reasons[0]!, /KiB count/);
  assert.match(guard(hist(guest({ mem_unused: null })), 0).reasons[0]!, /no page cache figure/);
  assert.deepEqual(guard(h, undefined), { verdict: 'skip', from: null, to: null, reasons: [], next: {} });
});

test('reclaim guard: refaults after a reclaim hold the guest off; a short reclaim is not chased', () => {
  const last = { cycle: 9, at: 0, kib: 50 * MiB };
  // Major faults at 2,000/s after the reclaim (threshold 1,000/s): held for rollbackBackoffS.
  const faulting = hist(guest(), guest({ major_fault: 10_000 }));
  const d = guard(faulting, 0, { state: { last }, cycle: 10, now: 50 });
  assert.equal(d.verdict, 'veto');
  assert.match(d.reasons[0]!, /major_fault 2000\/s > 1000\/s after reclaiming 50 MiB/);
  assert.deepEqual(d.next, { holdUntil: 350 });
  // ... asked or not: the hold starts either way.
  assert.deepEqual(guard(faulting, undefined, { state: { last }, cycle: 10, now: 50 }).next, { holdUntil: 350 });
  assert.match(guard(hist(guest()), 0, { state: { holdUntil: 350 }, now: 100 }).reasons[0]!, /held until 250 s from now/);
  assert.equal(guard(hist(guest()), 0, { state: { holdUntil: 350 }, now: 351 }).verdict, 'apply');
  // No refaults within the window: the watch ends.
  assert.deepEqual(guard(hist(guest(), guest()), undefined, { state: { last }, cycle: 13 }).next, {});
  // A reclaim that came up short at 300 MiB of cache: not asked again until the cache grows a step.
  const applied = guard(hist(guest()), 0);
  assert.deepEqual(applied.otherwise, { short: { cache: 300 * MiB, until: 350 } });
  const short = { short: { cache: 300 * MiB, until: 350 } };
  assert.match(guard(hist(guest()), 0, { state: short }).reasons[0]!, /found less to reclaim/);
  assert.equal(guard(hist(guest({ mem_free: 460 * MiB })), 0, { state: short }).verdict, 'apply', 'grown by a step');
  assert.equal(guard(hist(guest()), 0, { state: short, now: 351 }).verdict, 'apply', 'and asked again after a while');
});

/** A scripted agent: what each command answers, and what it was sent. */
function scripted(answer: (cmd: string, args?: Record<string, unknown>) => unknown) {
  const sent: { cmd: string; args?: Record<string, unknown> }[] = [];
  const exec = async (cmd: string, args?: Record<string, unknown>) => {
    sent.push({ cmd, args });
    const r = answer(cmd, args);
    if (r instanceof Error) throw r;
    return r;
  };
  return { exec, sent };
}

test('reclaimInGuest: "<KiB>K" written to memory.reclaim, the close awaited; EAGAIN is short, a missing file or a blocked agent unsupported', async () => {
  const ok = scripted((cmd) => (cmd === 'guest-file-open' ? 7 : {}));
  assert.equal(await reclaimInGuest(ok.exec, 32768), 'done');
  assert.deepEqual(
    ok.sent.map((s) => s.cmd),
    ['guest-file-open', 'guest-file-write', 'guest-file-close'],
  );
  assert.deepEqual(ok.sent[0]!.args, { path: MEMORY_RECLAIM_PATH, mode: 'w' });
  assert.equal(Buffer.from(ok.sent[1]!.args!['buf-b64'] as string, 'base64').toString(), '32768K');
  // qemu-ga buffers the write: the kernel's EAGAIN arrives at the close.
  const short = scripted((cmd) =>
    cmd === 'guest-file-open'
      ? 7
      : cmd === 'guest-file-close'
        ? new Error('guest agent guest-file-close: GenericError: failed to close handle: Resource temporarily unavailable')
        : {},
  );
  assert.equal(await reclaimInGuest(short.exec, 1024), 'short');
  const missing = scripted(() => new Error("failed to open file '/sys/fs/cgroup/memory.reclaim' (mode: 'w'): No such file or directory"));
  const err = await reclaimInGuest(missing.exec, 1024).catch((e: unknown) => e);
  assert.ok(err instanceof GuestReclaimUnsupported);
  assert.equal(failureKind(err), 'unsupported', 'the loop stops asking');
  assert.match((err as Error).message, /Linux 5\.19\+ with cgroup v2/);
  const blocked = scripted(
    () => new Error('internal error: unable to execute QEMU agent command: The command guest-file-open has been disabled for this instance'),
  );
  assert.match(String(await reclaimInGuest(blocked.exec, 1024).catch((e: unknown) => e)), /refuses file writes/);
  const other = scripted(() => new Error('Guest agent is not responding'));
  await assert.rejects(reclaimInGuest(other.exec, 1024), /not responding/);
  await assert.rejects(reclaimInGuest(ok.exec, 0), RangeError);
  await assert.rejects(reclaimInGuest(ok.exec, 1.5), RangeError);
});

test('writeGuestFile: a failed write still closes the handle; a bad handle is an error', async () => {
  const failing = scripted((cmd) => (cmd === 'guest-file-open' ? 3 : cmd === 'guest-file-write' ? new Error('failed to write') : {}));
  await assert.rejects(writeGuestFile(failing.exec, '/x', 'y'), /failed to write/);
  assert.deepEqual(
    failing.sent.map((s) => s.cmd),
    ['guest-file-open', 'guest-file-write', 'guest-file-close'],
  );
  await assert.rejects(writeGuestFile(scripted(() => 'h').exec, '/x', 'y'), /not a handle/);
});

const planInput = (o: { requested?: unknown; off?: string; guardPass?: boolean; fpr?: boolean } = {}) => ({
  id: 'g1',
  name: 'web',
  props: { name: 'web', free_page_reporting: o.fpr === false ? 0 : 1 },
  history: hist(guest()),
  requested: o.requested === undefined ? {} : { cache_target: o.requested },
  state: undefined,
  cycle: 10,
  now: 50,
  safeguards: cfg,
  ...(o.off ? { off: o.off } : {}),
  ...(o.guardPass ? { guardPass: true } : {}),
});

test('reclaim plan: one action with its commit; off or a guard pass asks nothing; a veto is said', () => {
  const p = planReclaim(planInput({ requested: 0 }));
  assert.equal(p.actions.length, 1);
  assert.deepEqual(
    { ...p.actions[0]!, reasons: [] },
    { entity: 'web', guestId: 'g1', control: 'cache_target', from: 300 * MiB, to: p.actions[0]!.to, reasons: [] },
  );
  assert.ok(p.commit?.applied.last && p.commit.otherwise.short);
  const off = planReclaim(planInput({ requested: 0, off: 'paused' }));
  assert.equal(off.actions.length, 0);
  assert.match(off.notes[0]!.reasons.at(-1)!, /not applied: paused/);
  assert.deepEqual(planReclaim(planInput({ requested: 0, guardPass: true })), { actions: [], notes: [] });
  const noFpr = planReclaim(planInput({ requested: 0, fpr: false }));
  assert.equal(noFpr.notes[0]!.verdict, 'veto');
  assert.deepEqual(planReclaim(planInput()), { actions: [], notes: [] }, 'not asked: nothing to say');
});

test('reclaim controller: done is applied, short unchanged, a guest that cannot be asked fails as unsupported, a gone one is dropped', async () => {
  const asked: [string, number][] = [];
  const answers: Record<string, () => Promise<'done' | 'short'>> = {
    a: async () => 'done',
    b: async () => 'short',
    c: async () => {
      throw new GuestReclaimUnsupported('no memory.reclaim');
    },
  };
  const hv = {
    name: 'fake',
    capabilities: {
      guestReclaim: {
        reclaim: (id: string, kib: number) => {
          asked.push([id, kib]);
          return answers[id]!();
        },
      },
    },
  } as unknown as Hypervisor;
  const env: ControlEnv = { hypervisor: hv, lookup: () => undefined, log: nullLogger };
  const inst = reclaim.setup(env);
  assert.notEqual(typeof inst, 'string');
  const act = (guestId: string): Action => ({ entity: guestId, guestId, control: 'cache_target', from: 300 * MiB, to: 250 * MiB, reasons: [] });
  const out = await (inst as Exclude<typeof inst, string>).controller.apply([act('a'), act('b'), act('c'), act('d')], { isGone: (id) => id === 'd' });
  assert.deepEqual(
    out.map((o) => [o.result, o.kind ?? null]),
    [
      ['applied', null],
      ['unchanged', null],
      ['failed', 'unsupported'],
      ['dropped', null],
    ],
  );
  assert.deepEqual(asked, [
    ['a', 50 * MiB],
    ['b', 50 * MiB],
    ['c', 50 * MiB],
  ]);
  assert.match(reclaim.setup({ ...env, hypervisor: { name: 'sim', capabilities: {} } as unknown as Hypervisor }) as string, /cannot reach guest agents/);
});

test('reclaim module on the simulated host: a reporting guest gives its page cache back a step a cycle and the host gets it; a guest that does not report is left its cache', async () => {
  const world = new SimWorld(
    parseScenario({
      host: { memMiB: 8192, swapMiB: 1024, cpus: 4 },
      guests: [
        { name: 'fpr', memMiB: 1024, cacheMiB: 400, freePageReporting: true, workload: { kind: 'idle', anonMiB: 200 } },
        { name: 'plain', memMiB: 1024, cacheMiB: 400, freePageReporting: false, workload: { kind: 'idle', anonMiB: 200 } },
      ],
    }),
    1,
  );
  const logger = memoryLogger();
  const engine = new Engine({
    hypervisor: new SimHypervisor(world),
    hostSources: [simHostSource(world)],
    policy: compilePolicyText('(with Guests guest (guest.Control "cache_target" 0))'),
    now: () => world.now,
    logger,
    sections: { reclaim: { enabled: true } },
  });
  const fpr = world.guests.get('fpr')!;
  const plain = world.guests.get('plain')!;
  world.advance(5);
  const before = { fpr: fpr.touchedKiB, plain: plain.touchedKiB, cache: fpr.cache.size };
  for (let i = 0; i < 60; i++) {
    world.advance(5);
    await engine.collect();
    if (i % 2 === 1) await engine.evaluateAndAct();
  }
  const steps = logger.records.filter((r) => r.event === 'action' && r.control === 'cache_target');
  assert.ok(steps.length >= 5 && steps.every((r) => r.entity === 'fpr'), `a step at a time, the reporting guest only: ${steps.length}`);
  assert.ok(fpr.cache.size <= KEEP_CACHE_KIB + 16 * MiB, `the reporting guest's cache went down to what it keeps: ${Math.round(fpr.cache.size / MiB)} MiB`);
  assert.ok(before.fpr - fpr.touchedKiB >= 0.8 * (before.cache - fpr.cache.size), 'and the host got it back (free page reporting)');
  assert.ok(plain.cache.size >= 390 * MiB, `the other guest kept its cache: ${Math.round(plain.cache.size / MiB)} MiB`);
  assert.ok(
    logger.records.some((r) => r.control === 'cache_target' && r.entity === 'plain' && String(r.reason ?? r.reasons).includes('does not report free pages')),
    'and was told why',
  );
});

test('reclaim off (the default): the default policy asks, nothing is done and nothing is counted as a veto', async () => {
  const world = new SimWorld(
    parseScenario({
      host: { memMiB: 2048, swapMiB: 1024, cpus: 4 },
      guests: [{ name: 'fpr', memMiB: 1024, cacheMiB: 400, freePageReporting: true, workload: { kind: 'idle', anonMiB: 200 } }],
    }),
    1,
  );
  const engine = new Engine({
    hypervisor: new SimHypervisor(world),
    hostSources: [simHostSource(world)],
    policy: compilePolicyText('(with Guests guest (guest.Control "cache_target" 0))'),
    now: () => world.now,
    logger: memoryLogger(),
  });
  const cache = world.guests.get('fpr')!.cache.size;
  for (let i = 0; i < 6; i++) {
    world.advance(5);
    await engine.collect();
    await engine.evaluateAndAct();
  }
  assert.equal(world.guests.get('fpr')!.cache.size, cache, 'no reclaim');
  assert.equal(engine.snapshot().counters.vetoes, 0, 'an off control is not a veto each cycle');
});
