// Daemon.applyConfig (SIGHUP): safeguards change in the running engine; keys that need a
// restart are listed and keep their running values.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startSimDaemon } from '../api/fixture.js';

test('a reloaded config: new safeguards are in force at once; the rest waits for a restart', async () => {
  const d = await startSimDaemon({ policies: { '10_b': '(with Guests guest (guest.Control "balloon_target" 1))\n' } });
  try {
    const next = structuredClone(d.daemon.config);
    next.safeguards.min_guest_mib = 700;
    next.engine.stats_interval = 9;
    const r = d.daemon.applyConfig(next);
    assert.deepEqual(r, { applied: ['safeguards.min_guest_mib'], restartNeeded: ['engine.stats_interval'] });
    assert.equal(d.daemon.engine.safeguards.minGuestKiB, 700 * 1024);
    assert.equal(d.daemon.config.engine.stats_interval, 5, 'not changed under the running scheduler');
    const since = d.port.health().cycle;
    await d.cycles(3);
    const moves = d.port.actions().filter((a) => a.cycle > since && a.control === 'balloon_target' && a.result === 'applied');
    assert.ok(moves.length > 0, 'the policy asks 1 KiB: guests are squeezed');
    for (const a of moves) assert.ok((a.to as number) >= 700 * 1024, `${a.entity}: ${a.to} KiB is not below the new floor`);
  } finally {
    await d.stop();
  }
});
