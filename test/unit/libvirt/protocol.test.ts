import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { XdrReader, XdrWriter } from '../../../src/hypervisor/libvirt/xdr.js';
import {
  TypedParamType,
  dec,
  enc,
  encRet,
  readRemoteError,
  readTypedParam,
  uuidFromString,
  uuidToString,
  writeTypedParam,
  type DomainRef,
  type TypedParam,
} from '../../../src/hypervisor/libvirt/protocol.js';

const dom: DomainRef = { name: 'lab-1', uuid: uuidFromString('6695eb01-f6a4-8304-79aa-97f2502e193f'), id: 3 };

test('uuid string <-> 16 bytes', () => {
  assert.equal(uuidToString(dom.uuid), '6695eb01-f6a4-8304-79aa-97f2502e193f');
  assert.throws(() => uuidFromString('nope'), /not a UUID/);
});

test('remote_nonnull_domain layout: string name, 16-byte uuid, int id', () => {
  const b = enc.domainOnly(dom);
  assert.equal(b.readUInt32BE(0), 5); // name length
  assert.equal(b.subarray(4, 9).toString(), 'lab-1');
  assert.equal(b.subarray(12, 28).toString('hex'), '6695eb01f6a4830479aa97f2502e193f');
  assert.equal(b.readInt32BE(28), 3);
  assert.equal(b.length, 32);
});

test('connect open args: optional name then flags', () => {
  assert.equal(enc.connectOpen('test:///default', 0).toString('hex'), '00000001' + '0000000f' + Buffer.from('test:///default\0').toString('hex') + '00000000');
  assert.equal(enc.connectOpen(null, 1).toString('hex'), '00000000' + '00000001');
});

test('set memory flags args: domain, unsigned hyper KiB, flags', () => {
  const b = enc.setMemoryFlags(dom, 262144, 1);
  const r = new XdrReader(b);
  assert.deepEqual(dec.domain(r), dom);
  assert.equal(r.uhyper(), 262144n);
  assert.equal(r.uint(), 1);
  r.done();
});

test('hand-built domain info reply decodes (unsigned char/short are full XDR words)', () => {
  const w = new XdrWriter().uint(1).uhyper(524288).uhyper(262144).uint(2).uhyper(123456789n);
  const info = dec.domainInfo(new XdrReader(w.toBuffer()));
  assert.deepEqual(info, { state: 1, maxMem: 524288, memory: 262144, nrVirtCpu: 2, cpuTime: 123456789n });
});

test('hand-built remote_error decodes with every optional field', () => {
  const w = new XdrWriter()
    .int(42) // VIR_ERR_NO_DOMAIN
    .int(10) // from
    .optional("Domain not found: no domain with matching name 'nope'", (x, v) => x.string(v))
    .int(2)
    .bool(false)
    .optional('nope', (x, v) => x.string(v))
    .bool(false)
    .bool(false)
    .int(0)
    .int(0)
    .bool(false);
  const e = readRemoteError(new XdrReader(w.toBuffer()));
  assert.equal(e.code, 42);
  assert.equal(e.message, "Domain not found: no domain with matching name 'nope'");
  assert.equal(e.str1, 'nope');
  assert.equal(e.dom, null);
});

const typedParam: fc.Arbitrary<TypedParam> = fc.oneof(
  fc.record({ field: fc.string({ maxLength: 20 }), type: fc.constant(TypedParamType.INT), value: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }) }),
  fc.record({ field: fc.string({ maxLength: 20 }), type: fc.constant(TypedParamType.UINT), value: fc.integer({ min: 0, max: 2 ** 32 - 1 }) }),
  fc.record({ field: fc.string({ maxLength: 20 }), type: fc.constant(TypedParamType.ULLONG), value: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }) }),
  fc.record({
    field: fc.string({ maxLength: 20 }),
    type: fc.constant(TypedParamType.LLONG),
    value: fc.integer({ min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER }),
  }),
  fc.record({ field: fc.string({ maxLength: 20 }), type: fc.constant(TypedParamType.DOUBLE), value: fc.double({ noNaN: true }) }),
  fc.record({ field: fc.string({ maxLength: 20 }), type: fc.constant(TypedParamType.BOOLEAN), value: fc.boolean() }),
  fc.record({ field: fc.string({ maxLength: 20 }), type: fc.constant(TypedParamType.STRING), value: fc.string({ maxLength: 20 }) }),
);

test('typed parameters round trip, every type (property)', () => {
  fc.assert(
    fc.property(fc.array(typedParam, { maxLength: 10 }), (params) => {
      const w = new XdrWriter();
      for (const p of params) writeTypedParam(w, p);
      const r = new XdrReader(w.toBuffer());
      for (const p of params) {
        const got = readTypedParam(r);
        assert.equal(got.field, p.field);
        assert.equal(got.type, p.type);
        assert.ok(Object.is(got.value, p.value) || got.value === p.value, `${String(got.value)} vs ${String(p.value)}`);
      }
      r.done();
    }),
  );
});

test('64-bit values beyond 2^53 stay exact as bigint', () => {
  const w = new XdrWriter();
  writeTypedParam(w, { field: 'x', type: TypedParamType.ULLONG, value: 2n ** 60n + 1n });
  assert.equal(readTypedParam(new XdrReader(w.toBuffer())).value, 2n ** 60n + 1n);
});

test('unknown typed parameter type is an error naming the field', () => {
  const b = new XdrWriter().string('balloon.weird').int(99).toBuffer();
  assert.throws(() => readTypedParam(new XdrReader(b)), /balloon.weird.*unknown type 99/);
});

test('all-domain-stats reply: records with typed params (round trip)', () => {
  const recs = [
    {
      dom,
      params: [
        { field: 'state.state', type: TypedParamType.INT, value: 1 },
        { field: 'balloon.current', type: TypedParamType.ULLONG, value: 262144 },
        { field: 'balloon.maximum', type: TypedParamType.ULLONG, value: 524288 },
      ],
    },
    { dom: { ...dom, name: 'lab-2', id: 4 }, params: [] },
  ];
  const got = dec.allDomainStats(new XdrReader(encRet.allDomainStats(recs)));
  assert.deepEqual(got, recs);
});

test('list all domains reply and lifecycle event message decode', () => {
  const l = dec.listAllDomains(new XdrReader(encRet.listAllDomains([dom, { ...dom, name: 'b' }])));
  assert.deepEqual(
    l.map((d) => d.name),
    ['lab-1', 'b'],
  );
  const m = dec.lifecycleMsg(new XdrReader(encRet.lifecycleMsg({ callbackId: 7, dom, event: 5, detail: 1 })));
  assert.deepEqual(m, { callbackId: 7, dom, event: 5, detail: 1 });
});
