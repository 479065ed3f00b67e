import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createLogger, formatText, memoryLogger, teeLogger } from '../../../src/log/logger.js';

function sink(isTTY: boolean) {
  const lines: string[] = [];
  const stream = Object.assign(
    new Writable({
      write(chunk, _enc, cb) {
        lines.push(...String(chunk).split('\n').filter(Boolean));
        cb();
      },
    }),
    { isTTY },
  );
  return { stream, lines };
}
const clock = () => new Date('2026-11-25T12:00:05.123Z');

test('JSON lines when not a terminal: every field, errors as their message', () => {
  const { stream, lines } = sink(false);
  const log = createLogger({ stream, clock });
  log.info('action', { entity: 'vm1', to: 1024, reason: ['policy asked to inflate'], error: new Error('boom') });
  log.debug('hidden');
  assert.equal(lines.length, 1);
  assert.deepEqual(JSON.parse(lines[0]!), {
    ts: '2026-11-25T12:00:05.123Z',
    level: 'info',
    event: 'action',
    entity: 'vm1',
    to: 1024,
    reason: ['policy asked to inflate'],
    error: 'boom',
  });
});

test('human text on a terminal, reason last', () => {
  const { stream, lines } = sink(true);
  const log = createLogger({ stream, clock, level: 'debug' }).child({ component: 'engine' });
  log.warn('rollback', { entity: 'vm 2', reason: ['rollback: swap_in 5000 KiB/s', 'no inflation for 300 s'] });
  assert.equal(lines[0], '12:00:05 WARN  rollback component=engine entity="vm 2" (rollback: swap_in 5000 KiB/s; no inflation for 300 s)');
  assert.equal(formatText({ ts: '2026-11-25T01:02:03Z', level: 'error', event: 'x', n: null }), '01:02:03 ERROR x n=null');
});

test('levels, memory and tee loggers', () => {
  const a = memoryLogger('warn');
  const b = memoryLogger();
  const t = teeLogger(a, b);
  t.info('i');
  t.error('e', { k: 1 });
  assert.deepEqual(
    a.records.map((r) => r.event),
    ['e'],
  );
  assert.deepEqual(
    b.records.map((r) => r.event),
    ['i', 'e'],
  );
  t.child({ c: 2 }).warn('w');
  assert.equal(b.records.at(-1)!.c, 2);
});
