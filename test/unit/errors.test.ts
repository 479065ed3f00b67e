// The driver error contract: every driver's errors, and system errors, map to one of five
// kinds, and the loop acts on the kind (dropped, backed off, asked again only hourly).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { failureKind } from '../../src/errors.js';
import { DomainNotFoundError, LibvirtConnectionError, LibvirtError, LibvirtTimeoutError } from '../../src/hypervisor/libvirt/errors.js';
import { QmpCommandError, QmpConnectionError } from '../../src/hypervisor/qmp/client.js';
import { Engine } from '../../src/engine/engine.js';
import { memoryLogger } from '../../src/log/logger.js';
import { evaluateFn, FakeHypervisor, guest, MiB, targetPolicy } from './engine/fakes.js';

const remote = (code: number) => ({
  code,
  domain: 10,
  message: `libvirt error ${code}`,
  level: 2,
  dom: null,
  str1: null,
  str2: null,
  str3: null,
  int1: 0,
  int2: 0,
  net: null,
});

test('every driver error and errno has its kind', () => {
  assert.equal(failureKind(new DomainNotFoundError(remote(42), 'DOMAIN_LOOKUP_BY_UUID')), 'gone');
  assert.equal(failureKind(new LibvirtError(remote(55), 'DOMAIN_SET_MEMORY_FLAGS')), 'gone', 'domain is not running');
  assert.equal(failureKind(new LibvirtError(remote(84), 'DOMAIN_SET_SCHEDULER_PARAMETERS_FLAGS')), 'unsupported');
  assert.equal(failureKind(new LibvirtError(remote(3), 'X')), 'unsupported');
  assert.equal(failureKind(new LibvirtError(remote(88), 'X')), 'denied');
  assert.equal(failureKind(new LibvirtError(remote(1), 'X')), 'failed');
  assert.equal(failureKind(new LibvirtConnectionError('gone away')), 'unavailable');
  assert.equal(failureKind(new LibvirtTimeoutError('no reply')), 'unavailable');
  assert.equal(failureKind(new QmpCommandError('qom-get', 'CommandNotFound', 'x')), 'unsupported');
  assert.equal(failureKind(new QmpCommandError('balloon', 'DeviceNotActive', 'x')), 'unavailable');
  assert.equal(failureKind(new QmpCommandError('balloon', 'GenericError', 'x')), 'failed');
  assert.equal(failureKind(new QmpConnectionError('refused', 'ECONNREFUSED')), 'unavailable');
  assert.equal(failureKind(Object.assign(new Error('EPERM: operation not permitted'), { code: 'EPERM' })), 'denied');
  assert.equal(failureKind(Object.assign(new Error('read-only'), { code: 'EROFS' })), 'denied');
  assert.equal(failureKind(Object.assign(new Error('nope'), { code: 'EOPNOTSUPP' })), 'unsupported');
  assert.equal(failureKind(new Error('plain')), 'failed');
  assert.equal(failureKind('a string'), 'failed');
});

class KindError extends Error {
  constructor(
    message: string,
    readonly kind: string,
  ) {
    super(message);
  }
}

test('the loop acts on the kind: gone is dropped (no retry), unsupported is asked again after an hour', async () => {
  const hv = new FakeHypervisor([guest('a', { balloon_cur: 1536 * MiB }), guest('b', { balloon_cur: 1536 * MiB })]);
  let t = 0;
  const engine = new Engine({
    hypervisor: hv,
    hostSources: [],
    policy: targetPolicy((s) => (s.balloon_cur as number) - 10 * MiB),
    evaluate: evaluateFn,
    logger: memoryLogger(),
    now: () => t,
    safeguards: { minGuestKiB: 256 * MiB, headroomKiB: 64 * MiB, rollbackWindow: 0 },
  });
  const setBalloon = hv.setBalloon.bind(hv);
  hv.setBalloon = async (id, target) => {
    if (id === 'id-a') throw new KindError('domain not found', 'gone');
    if (id === 'id-b') throw new KindError('balloon not supported', 'unsupported');
    return setBalloon(id, target);
  };
  await engine.collect();
  const first = await engine.evaluateAndAct();
  const by = (r: typeof first, e: string) => r.outcomes.find((o) => o.action.entity === e)!;
  assert.equal(by(first, 'a').result, 'dropped');
  assert.equal(by(first, 'a').kind, 'gone');
  assert.equal(by(first, 'b').result, 'failed');
  assert.equal(by(first, 'b').kind, 'unsupported');
  t += 600;
  await engine.collect();
  const later = await engine.evaluateAndAct();
  assert.equal(by(later, 'a').result, 'dropped', 'gone is not backed off: tried (and dropped) again');
  assert.equal(by(later, 'b').result, 'deferred', 'unsupported: not asked again within the hour');
  t += 3000;
  await engine.collect();
  assert.equal(by(await engine.evaluateAndAct(), 'b').result, 'failed', 'asked again after an hour');
});
