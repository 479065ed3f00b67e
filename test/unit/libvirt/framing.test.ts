import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FrameDecoder, FramingError, MessageStatus, MessageType, decodeHeader, encodeFrame, type Header } from '../../../src/hypervisor/libvirt/framing.js';

const hdr = (serial: number, proc = 1): Header => ({
  prog: 0x20008086,
  vers: 1,
  proc,
  type: MessageType.REPLY,
  serial,
  status: MessageStatus.OK,
});

test('a frame is length word (counting itself) + 24-byte header + payload', () => {
  const f = encodeFrame(hdr(7, 66), Buffer.from([1, 2, 3, 4]));
  assert.equal(f.length, 4 + 24 + 4);
  assert.equal(f.readUInt32BE(0), f.length);
  assert.equal(f.readUInt32BE(4), 0x20008086, 'prog');
  assert.equal(f.readInt32BE(12), 66, 'proc');
  assert.equal(f.readInt32BE(16), MessageType.REPLY, 'type');
  assert.equal(f.readUInt32BE(20), 7, 'serial');
  assert.deepEqual(decodeHeader(f, 4), hdr(7, 66));
});

test('several records in one chunk come out one by one', () => {
  const d = new FrameDecoder();
  const chunk = Buffer.concat([encodeFrame(hdr(1), Buffer.from('aaaa')), encodeFrame(hdr(2)), encodeFrame(hdr(3), Buffer.from('bbbbbbbb'))]);
  const frames = d.push(chunk);
  assert.deepEqual(
    frames.map((f) => f.header.serial),
    [1, 2, 3],
  );
  assert.equal(frames[0]!.payload.toString(), 'aaaa');
  assert.equal(frames[1]!.payload.length, 0);
  assert.equal(frames[2]!.payload.toString(), 'bbbbbbbb');
  assert.equal(d.pending, 0);
});

test('a record split byte by byte comes out once, whole', () => {
  const d = new FrameDecoder();
  const rec = encodeFrame(hdr(9), Buffer.from('payload!'));
  const got = [];
  for (let i = 0; i < rec.length; i++) {
    const out = d.push(rec.subarray(i, i + 1));
    if (i < rec.length - 1) assert.equal(out.length, 0, `nothing before the last byte (at ${i})`);
    got.push(...out);
  }
  assert.equal(got.length, 1);
  assert.equal(got[0]!.payload.toString(), 'payload!');
});

test('any split of a stream of records yields the same records (property)', () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ maxLength: 60 }), { minLength: 1, maxLength: 12 }),
      fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 40 }),
      (payloads, cuts) => {
        const stream = Buffer.concat(payloads.map((p, i) => encodeFrame(hdr(i + 1), p)));
        const d = new FrameDecoder();
        const out = [];
        let pos = 0;
        let c = 0;
        while (pos < stream.length) {
          const n = cuts[c++ % cuts.length]!;
          out.push(...d.push(stream.subarray(pos, pos + n)));
          pos += n;
        }
        assert.equal(out.length, payloads.length);
        out.forEach((f, i) => {
          assert.equal(f.header.serial, i + 1);
          assert.deepEqual(new Uint8Array(f.payload), payloads[i]);
        });
        assert.equal(d.pending, 0);
      },
    ),
    { numRuns: 200 },
  );
});

test('a length word that cannot be a record is garbage', () => {
  assert.throws(() => new FrameDecoder().push(Buffer.from('HTTP/1.1 200 OK\r\n')), FramingError);
  const small = Buffer.alloc(8);
  small.writeUInt32BE(12, 0); // shorter than length + header
  assert.throws(() => new FrameDecoder().push(small), /invalid record length 12/);
  const big = Buffer.alloc(4);
  big.writeUInt32BE(0xffffffff, 0);
  assert.throws(() => new FrameDecoder().push(big), /invalid record length/);
});

test('a partial length word waits for more', () => {
  const d = new FrameDecoder();
  const rec = encodeFrame(hdr(5));
  assert.deepEqual(d.push(rec.subarray(0, 2)), []);
  assert.deepEqual(d.push(rec.subarray(2, 3)), []);
  const out = d.push(rec.subarray(3));
  assert.equal(out.length, 1);
  assert.equal(out[0]!.header.serial, 5);
});
