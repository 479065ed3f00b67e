// Property tests over every decoder of outside input: random, truncated and oversized input
// never crashes (only the decoder's own clear error), never allocates what a length field
// claims, and whatever decodes encodes back to the same thing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FrameDecoder, FramingError, MESSAGE_MAX, encodeFrame } from '../../../src/hypervisor/libvirt/framing.js';
import { XdrError, XdrReader } from '../../../src/hypervisor/libvirt/xdr.js';
import { dec, readRemoteError } from '../../../src/hypervisor/libvirt/protocol.js';
import { LineTooLongError, QmpLineReader, jsonDepth } from '../../../src/hypervisor/qmp/framing.js';
import { RpcDecodeError, RpcFault, decodeCall, encodeResponse, encodeValue, REPLACEMENT } from '../../../src/api/mom/xmlrpc.js';
import { XMLValidator } from 'fast-xml-parser';
import { ConfigError, parseConfigText } from '../../../src/config/load.js';
import { parseIni } from '../../../src/config/mom-conf.js';
import { SnapshotError, parseSnapshots } from '../../../src/policy/snapshot.js';

export const RUNS = Number(process.env.BALLAST_FUZZ_RUNS ?? 1000);

/** Only the decoder's own error classes may escape; anything else (TypeError, RangeError) is a bug. */
function onlyOwnErrors(f: () => unknown, ...own: (new (...a: never[]) => Error)[]): void {
  try {
    f();
  } catch (e) {
    if (!own.some((c) => e instanceof c)) throw new Error(`escaped ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
    assert.ok((e as Error).message.length > 0, 'a clear message');
  }
}

const bytes = fc.uint8Array({ maxLength: 512 }).map((u) => Buffer.from(u));

test('libvirt XDR: every reply decoder on random bytes gives a value or an XdrError', () => {
  const decoders = [
    dec.authList,
    dec.domain,
    dec.listAllDomains,
    dec.domainInfo,
    dec.memoryStats,
    dec.getState,
    dec.allDomainStats,
    dec.lifecycleMsg,
    dec.balloonChangeMsg,
    readRemoteError,
  ];
  fc.assert(
    fc.property(bytes, fc.nat(decoders.length - 1), (b, i) => {
      onlyOwnErrors(() => decoders[i]!(new XdrReader(b)), XdrError);
    }),
    { numRuns: RUNS * 4 },
  );
});

test('libvirt XDR: a huge length or count word is refused before anything is allocated', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0x00100000, max: 0xffffffff }), fc.uint8Array({ maxLength: 64 }), (n, tail) => {
      const b = Buffer.concat([Buffer.from([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]), Buffer.from(tail)]);
      const before = process.memoryUsage().arrayBuffers;
      for (const d of [dec.string, dec.listAllDomains, dec.memoryStats, dec.allDomainStats]) assert.throws(() => d(new XdrReader(b)), XdrError);
      assert.ok(process.memoryUsage().arrayBuffers - before < 16 * 1024 * 1024, 'no allocation of the claimed size');
    }),
    { numRuns: RUNS },
  );
});

test('libvirt framing: random chunks give frames or a FramingError; valid frames cut anywhere come out whole', () => {
  fc.assert(
    fc.property(fc.array(bytes, { maxLength: 8 }), (chunks) => {
      const d = new FrameDecoder();
      onlyOwnErrors(() => {
        for (const c of chunks) d.push(c);
      }, FramingError);
      assert.ok(d.pending <= MESSAGE_MAX + 4, 'never buffers more than one record');
    }),
    { numRuns: RUNS },
  );
  const header = { prog: 0x20008086, vers: 1, proc: 159, type: 1, serial: 7, status: 0 };
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { minLength: 1, maxLength: 5 }), fc.array(fc.nat(2000), { maxLength: 10 }), (payloads, cuts) => {
      const stream = Buffer.concat(payloads.map((p, i) => encodeFrame({ ...header, serial: i }, Buffer.from(p))));
      const at = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
      const d = new FrameDecoder();
      const out = [];
      let prev = 0;
      for (const c of [...at, stream.length]) {
        out.push(...d.push(stream.subarray(prev, c)));
        prev = c;
      }
      assert.deepEqual(
        out.map((f) => [f.header.serial, Buffer.from(f.payload).toString('hex')]),
        payloads.map((p, i) => [i, Buffer.from(p).toString('hex')]),
      );
      assert.equal(d.pending, 0);
    }),
    { numRuns: RUNS },
  );
});

test('QMP lines: random text, random JSON and deep nesting give messages or errors, never a throw other than LineTooLong; memory bounded', () => {
  const text = fc.string({ unit: fc.constantFrom(...'{}[]":,\\ \n\r\tabc01-.eE'.split('')), maxLength: 400 });
  fc.assert(
    fc.property(fc.array(text, { maxLength: 6 }), (chunks) => {
      const r = new QmpLineReader(4096);
      onlyOwnErrors(() => {
        for (const c of chunks) for (const m of r.push(c)) assert.ok(m.ok ? typeof m.message === 'object' : m.error.length > 0);
      }, LineTooLongError);
    }),
    { numRuns: RUNS },
  );
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 6 }), (v) => {
      const [m] = new QmpLineReader().push(`${JSON.stringify(v)}\n`);
      if (m?.ok) assert.equal(JSON.stringify(m.message), JSON.stringify(v));
    }),
    { numRuns: RUNS },
  );
  fc.assert(
    fc.property(fc.integer({ min: 33, max: 20_000 }), (depth) => {
      const [m] = new QmpLineReader().push(`${'['.repeat(depth)}${']'.repeat(depth)}\n`);
      assert.equal(m?.ok, false, 'nested deeper than the limit is refused');
      assert.ok(jsonDepth('['.repeat(depth)) > 32);
    }),
    { numRuns: RUNS / 10 },
  );
  assert.throws(() => new QmpLineReader(1024).push('x'.repeat(2048)), LineTooLongError);
});

test('MOM XML-RPC answers: any string (control characters, lone surrogates, U+FFFE) encodes to well-formed XML; what XML 1.0 cannot carry becomes U+FFFD', () => {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: these are the characters meant
  const notXml = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
  const piece = fc.oneof(
    fc.string({ unit: 'binary' }),
    fc.string({ unit: fc.integer({ min: 0, max: 0x1f }).map((c) => String.fromCharCode(c)) }),
    fc.constantFrom('\ud800', '\udfff', '\ud83d\ude00', '\ufffe', '\uffff', '\r\n', ']]>', '&amp;', '<x>'),
  );
  const text = fc.array(piece, { maxLength: 6 }).map((ps) => ps.join(''));
  fc.assert(
    fc.property(text, text, (s, key) => {
      const xml = encodeResponse({ [key || 'k']: s, list: [s] });
      assert.equal(XMLValidator.validate(xml), true, JSON.stringify(s));
      // (The validator does not check XML's Char production; this does.)
      assert.doesNotMatch(xml, new RegExp(notXml.source), JSON.stringify(s));
      const back = decodeCall(xml.replace('<methodResponse>', '<methodCall><methodName>x</methodName>').replace('</methodResponse>', '</methodCall>'))
        .params[0] as Record<string, unknown>;
      const want = s.replace(notXml, REPLACEMENT);
      assert.deepEqual(back[(key || 'k').replace(notXml, REPLACEMENT)], want);
      assert.deepEqual(back.list, [want]);
    }),
    { numRuns: RUNS },
  );
});

test('MOM XML-RPC: random XML, wrong types and hostile documents give a call or a clear RpcDecodeError/RpcFault', () => {
  const value = fc.letrec((tie) => ({
    v: fc.oneof(
      { depthSize: 'small' },
      fc.string(),
      fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
      fc.boolean(),
      fc.double({ noNaN: true, noDefaultInfinity: true }),
      fc.array(tie('v'), { maxLength: 4 }),
      fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }), tie('v'), { maxKeys: 4 }),
    ),
  })).v;
  fc.assert(
    fc.property(
      fc.string({ minLength: 1, maxLength: 20 }).filter((s) => /^[A-Za-z_][A-Za-z_.]*$/.test(s)),
      fc.array(value, { maxLength: 4 }),
      (method, params) => {
        const xml = `<?xml version="1.0"?><methodCall><methodName>${method}</methodName><params>${params.map((p) => `<param>${encodeValue(p)}</param>`).join('')}</params></methodCall>`;
        const call = decodeCall(xml);
        assert.equal(call.method, method);
        assert.equal(call.params.length, params.length, 'what we encode decodes');
      },
    ),
    { numRuns: RUNS },
  );
  const soup = fc
    .array(
      fc.constantFrom(
        '<',
        '>',
        '/',
        'methodCall',
        'methodName',
        'params',
        'param',
        'value',
        'int',
        'string',
        'struct',
        'member',
        'name',
        'array',
        'data',
        '&',
        '&amp;',
        '<!DOCTYPE x [<!ENTITY e "e">]>',
        '&e;',
        'ping',
        ' ',
        '"',
        '?xml',
        '<![CDATA[',
        ']]>',
        'i8',
        'double',
        'boolean',
        '1',
        'x',
      ),
      { maxLength: 60 },
    )
    .map((a) => a.join(''));
  fc.assert(
    fc.property(fc.oneof(soup, fc.string({ maxLength: 300 })), (xml) => {
      onlyOwnErrors(() => decodeCall(xml), RpcDecodeError, RpcFault);
    }),
    { numRuns: RUNS * 2 },
  );
});

test('config: random TOML and wrong types give a config or a ConfigError naming the key', () => {
  const keys = ['hypervisor', 'engine', 'safeguards', 'ksm', 'cputune', 'api', 'metrics', 'log', 'alerts', 'host', 'nope'];
  const leaf = fc.oneof(
    fc.integer(),
    fc.double(),
    fc.string({ maxLength: 10 }).map((s) => JSON.stringify(s)),
    fc.boolean().map(String),
    fc.constant('[1, "a"]'),
    fc.constant('inf'),
    fc.constant('nan'),
  );
  const toml = fc
    .array(
      fc.tuple(
        fc.constantFrom(...keys),
        fc.array(fc.tuple(fc.constantFrom('driver', 'stats_interval', 'policy_interval', 'min_guest_mib', 'enabled', 'level', 'socket', 'listen', 'x'), leaf), {
          maxLength: 4,
        }),
      ),
      { maxLength: 4 },
    )
    .map((secs) => secs.map(([s, kv]) => `[${s}]\n${kv.map(([k, v]) => `${k} = ${v}`).join('\n')}\n`).join(''));
  fc.assert(
    fc.property(toml, (text) => {
      try {
        const c = parseConfigText(text, 'fuzz.toml');
        assert.ok(c.engine.stats_interval >= 0.5 && c.engine.stats_interval <= 3600, 'only accepted values get through');
      } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        assert.match(e.message, /fuzz\.toml/);
      }
    }),
    { numRuns: RUNS * 2 },
  );
  fc.assert(
    fc.property(fc.string({ maxLength: 300 }), (text) => onlyOwnErrors(() => parseConfigText(text, 'fuzz.toml'), ConfigError)),
    { numRuns: RUNS },
  );
});

test("mom.conf (INI) and policy-eval snapshots: random text gives a result or the reader's own error", () => {
  fc.assert(
    fc.property(fc.string({ unit: fc.constantFrom(...'[]=:# \n\tabcmain-_0123'.split('')), maxLength: 300 }), (text) => {
      onlyOwnErrors(() => parseIni(text, 'fuzz.conf'), Error);
    }),
    { numRuns: RUNS },
  );
  fc.assert(
    fc.property(
      fc.oneof(
        fc.string({ maxLength: 200 }),
        fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
      ),
      (text) => {
        onlyOwnErrors(() => parseSnapshots(text, 'fuzz.json'), SnapshotError);
      },
    ),
    { numRuns: RUNS * 2 },
  );
});
