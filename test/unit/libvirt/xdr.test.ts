import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { XdrReader, XdrWriter, XdrError } from '../../../src/hypervisor/libvirt/xdr.js';

test('int, uint, hyper are big-endian 4/8-byte words (RFC 4506 layout)', () => {
  const buf = new XdrWriter().int(-2).uint(0xdeadbeef).hyper(-1n).uhyper(0x0102030405060708n).toBuffer();
  assert.equal(buf.toString('hex'), 'fffffffe' + 'deadbeef' + 'ffffffffffffffff' + '0102030405060708');
});

test('strings carry a length word and are zero-padded to 4 bytes', () => {
  const buf = new XdrWriter().string('abcde').toBuffer();
  assert.equal(buf.toString('hex'), '00000005' + '6162636465' + '000000');
  assert.equal(new XdrReader(buf).string(), 'abcde');
});

test('optional data is a boolean followed by the value when present', () => {
  const w = new XdrWriter().optional('x', (x, v) => x.string(v)).optional(null, (x, v: string) => x.string(v));
  const buf = w.toBuffer();
  assert.equal(buf.toString('hex'), '00000001' + '00000001' + '78000000' + '00000000');
  const r = new XdrReader(buf);
  assert.equal(
    r.optional((x) => x.string()),
    'x',
  );
  assert.equal(
    r.optional((x) => x.string()),
    null,
  );
  r.done();
});

test('round trip of random mixed records (property)', () => {
  const item = fc.oneof(
    fc.record({ k: fc.constant('int' as const), v: fc.integer({ min: -0x80000000, max: 0x7fffffff }) }),
    fc.record({ k: fc.constant('uint' as const), v: fc.integer({ min: 0, max: 0xffffffff }) }),
    fc.record({ k: fc.constant('hyper' as const), v: fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }) }),
    fc.record({ k: fc.constant('uhyper' as const), v: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }) }),
    fc.record({ k: fc.constant('double' as const), v: fc.double({ noNaN: true }) }),
    fc.record({ k: fc.constant('string' as const), v: fc.string({ unit: 'grapheme', maxLength: 40 }) }),
    fc.record({ k: fc.constant('opaque' as const), v: fc.uint8Array({ maxLength: 33 }) }),
    fc.record({ k: fc.constant('opt' as const), v: fc.option(fc.string({ maxLength: 9 })) }),
    fc.record({ k: fc.constant('arr' as const), v: fc.array(fc.integer({ min: -5, max: 5 }), { maxLength: 7 }) }),
  );
  fc.assert(
    fc.property(fc.array(item, { maxLength: 25 }), (items) => {
      const w = new XdrWriter(4);
      for (const it of items) {
        switch (it.k) {
          case 'int':
            w.int(it.v);
            break;
          case 'uint':
            w.uint(it.v);
            break;
          case 'hyper':
            w.hyper(it.v);
            break;
          case 'uhyper':
            w.uhyper(it.v);
            break;
          case 'double':
            w.double(it.v);
            break;
          case 'string':
            w.string(it.v);
            break;
          case 'opaque':
            w.opaque(it.v);
            break;
          case 'opt':
            w.optional(it.v, (x, v) => x.string(v));
            break;
          case 'arr':
            w.array(it.v, (x, v) => x.int(v));
            break;
        }
      }
      const buf = w.toBuffer();
      assert.equal(buf.length % 4, 0, 'every record is a multiple of 4 bytes');
      const r = new XdrReader(buf);
      for (const it of items) {
        switch (it.k) {
          case 'int':
            assert.equal(r.int(), it.v);
            break;
          case 'uint':
            assert.equal(r.uint(), it.v);
            break;
          case 'hyper':
            assert.equal(r.hyper(), it.v);
            break;
          case 'uhyper':
            assert.equal(r.uhyper(), it.v);
            break;
          case 'double':
            assert.ok(Object.is(r.double(), it.v));
            break;
          case 'string':
            assert.equal(r.string(), it.v);
            break;
          case 'opaque':
            assert.deepEqual(new Uint8Array(r.opaque()), it.v);
            break;
          case 'opt':
            assert.equal(
              r.optional((x) => x.string()),
              it.v,
            );
            break;
          case 'arr':
            assert.deepEqual(
              r.array((x) => x.int()),
              it.v,
            );
            break;
        }
      }
      r.done();
    }),
    { numRuns: 300 },
  );
});

test('a truncated buffer is an error, at any cut point (property)', () => {
  fc.assert(
    fc.property(fc.string({ minLength: 1, maxLength: 30 }), fc.nat(), (s, cut) => {
      const buf = new XdrWriter().string(s).uhyper(7n).toBuffer();
      const at = cut % buf.length; // strictly shorter than the record
      const r = new XdrReader(buf.subarray(0, at));
      assert.throws(() => {
        r.string();
        r.uhyper();
      }, XdrError);
    }),
  );
});

test('hostile lengths are refused before allocating', () => {
  const huge = new XdrWriter().uint(0x7fffffff).toBuffer();
  assert.throws(() => new XdrReader(huge).array((x) => x.int()), /larger than the remaining/);
  assert.throws(() => new XdrReader(huge).string(), /truncated/);
  assert.throws(() => new XdrReader(new XdrWriter().uint(10).toBuffer()).string(5), /exceeds limit 5/);
  assert.throws(() => new XdrReader(new XdrWriter().int(2).toBuffer()).bool(), /invalid XDR boolean/);
});

test('out-of-range values are refused on encode', () => {
  assert.throws(() => new XdrWriter().int(2 ** 31), XdrError);
  assert.throws(() => new XdrWriter().uint(-1), XdrError);
  assert.throws(() => new XdrWriter().uhyper(-1n), XdrError);
  assert.throws(() => new XdrWriter().int(1.5), XdrError);
});

test('done() reports trailing bytes', () => {
  const r = new XdrReader(new XdrWriter().int(1).int(2).toBuffer());
  r.int();
  assert.throws(() => r.done('reply'), /4 unexpected trailing bytes after reply/);
});

test('hyperNarrow / uhyperNarrow: a number exactly when |v| < 2^53, else the bigint; same bytes consumed (property)', () => {
  const SAFE = BigInt(Number.MAX_SAFE_INTEGER);
  const edges = [0n, 1n, -1n, SAFE, SAFE + 1n, -SAFE, -SAFE - 1n, 2n ** 32n, -(2n ** 32n), 2n ** 63n - 1n, -(2n ** 63n)];
  const check = (v: bigint) => {
    const r = new XdrReader(new XdrWriter().hyper(v).int(7).toBuffer());
    const got = r.hyperNarrow();
    if (v >= -SAFE && v <= SAFE) assert.equal(got, Number(v));
    else assert.equal(got, v);
    assert.equal(r.int(), 7);
  };
  const checkU = (v: bigint) => {
    const r = new XdrReader(new XdrWriter().uhyper(v).int(7).toBuffer());
    const got = r.uhyperNarrow();
    if (v <= SAFE) assert.equal(got, Number(v));
    else assert.equal(got, v);
    assert.equal(r.int(), 7);
  };
  for (const v of edges) check(v);
  for (const v of edges.filter((x) => x >= 0n)) checkU(v);
  checkU(2n ** 64n - 1n);
  fc.assert(fc.property(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), check));
  fc.assert(fc.property(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), checkU));
  assert.throws(() => new XdrReader(Buffer.alloc(7)).uhyperNarrow(), /truncated/);
});

test('strings decode in place: multibyte UTF-8, padding skipped, the next field intact', () => {
  const buf = new XdrWriter().string('balloon.current').string('gäst-ü').string('').int(-3).toBuffer();
  const r = new XdrReader(buf);
  assert.equal(r.string(), 'balloon.current');
  assert.equal(r.string(), 'gäst-ü');
  assert.equal(r.string(), '');
  assert.equal(r.int(), -3);
  r.done();
});
