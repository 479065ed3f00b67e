// XML-RPC as MOM's server speaks it (Python's xmlrpc.server with the i8 extension): requests
// parsed with fast-xml-parser, responses written here. Requests come from other programs
// (vdsm), so the decoder is strict: no DOCTYPE (no entity expansion), bounded nesting, only
// the five XML entities and character references, every value type checked.
import { XMLParser, XMLValidator } from 'fast-xml-parser';

export type RpcValue = string | number | boolean | null | RpcValue[] | { [k: string]: RpcValue } | Buffer;

export class RpcDecodeError extends Error {}

/** A fault to send back: Python's xmlrpc.client raises it as xmlrpc.client.Fault. */
export class RpcFault extends Error {
  constructor(
    readonly faultCode: number,
    readonly faultString: string,
  ) {
    super(faultString);
  }
}

const MAX_DEPTH = 64;

type Node = Record<string, Node[] | string>;

const parser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: true,
  parseTagValue: false,
  trimValues: false,
  processEntities: false,
  htmlEntities: false,
  ignoreDeclaration: true,
  ignorePiTags: true,
});

const ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

function decodeEntities(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);/g, (all, e: string) => {
    if (e[0] === '#') {
      const cp = e[1] === 'x' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      if (!(cp >= 0 && cp <= 0x10ffff)) throw new RpcDecodeError(`bad character reference ${all}`);
      return String.fromCodePoint(cp);
    }
    const v = ENTITIES[e];
    if (v === undefined) throw new RpcDecodeError(`unknown entity ${all}`);
    return v;
  });
}

/** Refuses what the parser should never see: DTDs, and nesting deeper than MAX_DEPTH. */
function precheck(xml: string): void {
  if (/<!DOCTYPE|<!ENTITY/i.test(xml)) throw new RpcDecodeError('DOCTYPE and entity declarations are not accepted');
  let depth = 0;
  for (const m of xml.matchAll(/<(\/?)[A-Za-z][^>]*?(\/?)>/g)) {
    if (m[1]) depth--;
    else if (!m[2]) depth++;
    if (depth > MAX_DEPTH) throw new RpcDecodeError(`XML nested deeper than ${MAX_DEPTH}`);
  }
  // The parser is lenient (an unclosed element parses); a request must be well-formed.
  const valid = XMLValidator.validate(xml);
  if (valid !== true) throw new RpcDecodeError(`not well-formed XML: ${valid.err.msg} (line ${valid.err.line})`);
}

function tagOf(n: Node): string | undefined {
  return Object.keys(n).find((k) => k !== ':@');
}

/** The element children of a node list (whitespace text dropped). */
function elements(list: Node[]): Node[] {
  return list.filter((n) => {
    const t = tagOf(n);
    if (t === '#text') {
      if (String(n['#text']).trim() !== '') throw new RpcDecodeError(`unexpected text ${JSON.stringify(String(n['#text']).slice(0, 40))}`);
      return false;
    }
    return t !== undefined;
  });
}

function text(list: Node[]): string {
  let out = '';
  for (const n of list) {
    const t = tagOf(n);
    if (t !== '#text') throw new RpcDecodeError(`unexpected element <${t}> in a scalar`);
    out += String(n['#text']);
  }
  return decodeEntities(out);
}

function child(n: Node, tag: string): Node[] {
  const v = n[tag];
  if (!Array.isArray(v)) throw new RpcDecodeError(`expected <${tag}>`);
  return v;
}

function decodeValue(valueChildren: Node[]): RpcValue {
  const els = elements(valueChildren);
  // <value>text</value> is a string.
  if (els.length === 0) return text(valueChildren);
  if (els.length !== 1) throw new RpcDecodeError('a <value> holds one type element');
  const el = els[0]!;
  const tag = tagOf(el)!;
  const body = child(el, tag);
  switch (tag) {
    case 'string':
      return text(body);
    case 'int':
    case 'i4':
    case 'i8': {
      const s = text(body).trim();
      if (!/^[+-]?\d{1,19}$/.test(s)) throw new RpcDecodeError(`bad <${tag}> ${JSON.stringify(s.slice(0, 40))}`);
      const v = Number(s);
      if (!Number.isSafeInteger(v)) throw new RpcDecodeError(`<${tag}> ${s} is beyond 2^53`);
      return v;
    }
    case 'boolean': {
      const s = text(body).trim();
      if (s !== '0' && s !== '1') throw new RpcDecodeError(`bad <boolean> ${JSON.stringify(s.slice(0, 40))}`);
      return s === '1';
    }
    case 'double': {
      const s = text(body).trim();
      const v = Number(s);
      if (s === '' || (!Number.isFinite(v) && !/^[+-]?(inf|nan)$/i.test(s))) throw new RpcDecodeError(`bad <double> ${JSON.stringify(s.slice(0, 40))}`);
      return v;
    }
    case 'nil':
      return null;
    case 'base64':
      return Buffer.from(text(body).replace(/\s+/g, ''), 'base64');
    case 'dateTime.iso8601':
      return text(body);
    case 'array': {
      const data = elements(body);
      if (data.length !== 1 || tagOf(data[0]!) !== 'data') throw new RpcDecodeError('<array> holds one <data>');
      return elements(child(data[0]!, 'data')).map((v) => {
        if (tagOf(v) !== 'value') throw new RpcDecodeError('<data> holds <value> elements');
        return decodeValue(child(v, 'value'));
      });
    }
    case 'struct': {
      const out: Record<string, RpcValue> = Object.create(null);
      for (const m of elements(body)) {
        if (tagOf(m) !== 'member') throw new RpcDecodeError('<struct> holds <member> elements');
        const parts = elements(child(m, 'member'));
        const name = parts.find((p) => tagOf(p) === 'name');
        const value = parts.find((p) => tagOf(p) === 'value');
        if (!name || !value || parts.length !== 2) throw new RpcDecodeError('a <member> holds one <name> and one <value>');
        out[text(child(name, 'name'))] = decodeValue(child(value, 'value'));
      }
      return out;
    }
    default:
      throw new RpcDecodeError(`unknown value type <${tag}>`);
  }
}

export interface MethodCall {
  method: string;
  params: RpcValue[];
}

export function decodeCall(xml: string): MethodCall {
  precheck(xml);
  let doc: Node[];
  try {
    doc = parser.parse(xml) as Node[];
  } catch (err) {
    throw new RpcDecodeError(`not XML: ${(err as Error).message}`);
  }
  const roots = elements(doc);
  if (roots.length !== 1 || tagOf(roots[0]!) !== 'methodCall') throw new RpcDecodeError('expected one <methodCall>');
  const parts = elements(child(roots[0]!, 'methodCall'));
  const nameNode = parts.find((p) => tagOf(p) === 'methodName');
  if (!nameNode) throw new RpcDecodeError('no <methodName>');
  const method = text(child(nameNode, 'methodName')).trim();
  if (!/^[A-Za-z_][\w.]{0,99}$/.test(method)) throw new RpcDecodeError('bad <methodName>');
  const paramsNode = parts.find((p) => tagOf(p) === 'params');
  const params = paramsNode
    ? elements(child(paramsNode, 'params')).map((p) => {
        if (tagOf(p) !== 'param') throw new RpcDecodeError('<params> holds <param> elements');
        const v = elements(child(p, 'param'));
        if (v.length !== 1 || tagOf(v[0]!) !== 'value') throw new RpcDecodeError('a <param> holds one <value>');
        return decodeValue(child(v[0]!, 'value'));
      })
    : [];
  return { method, params };
}

/** What XML 1.0 cannot carry at all, not even as a character reference: every character
 *  outside its Char production (C0 controls but tab, LF and CR; lone surrogates; U+FFFE, U+FFFF). */
// biome-ignore lint/suspicious/noControlCharactersInRegex: these are the characters meant
const NOT_XML_CHAR = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** The replacement for such a character: U+FFFD, as a decoder writes for bytes it cannot read. */
export const REPLACEMENT = '\ufffd';

// A raw CR would come back as LF (XML's line-end normalization): send it as a reference. A
// character XML cannot carry (a guest name or a policy comment with \x00, \x01, ...) would make
// the whole answer ill-formed, and Python's xmlrpc.client (vdsm) would read none of it: it
// becomes U+FFFD, the rest of the answer intact.
export function escapeXml(s: string): string {
  return s.replace(NOT_XML_CHAR, REPLACEMENT).replace(/[&<>\r]/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : '&#13;'));
}

/** One value; struct members whose value is null/undefined are left out (MOM's server has no nil). */
export function encodeValue(v: unknown): string {
  if (v === null || v === undefined) return '<value><nil/></value>';
  if (typeof v === 'boolean') return `<value><boolean>${v ? 1 : 0}</boolean></value>`;
  if (typeof v === 'number') {
    // An integer beyond 2^53 is not exact in a double, and beyond 2^63 not an i8 at all: a double it is.
    if (Number.isSafeInteger(v)) return Math.abs(v) < 2 ** 31 ? `<value><int>${v}</int></value>` : `<value><i8>${v}</i8></value>`;
    // Python writes repr(float); JS's shortest round-trip form parses back the same.
    return `<value><double>${Number.isFinite(v) ? String(v) : v > 0 ? 'inf' : v < 0 ? '-inf' : 'nan'}</double></value>`;
  }
  if (typeof v === 'bigint') return `<value><i8>${v}</i8></value>`;
  if (typeof v === 'string') return `<value><string>${escapeXml(v)}</string></value>`;
  if (Buffer.isBuffer(v)) return `<value><base64>${v.toString('base64')}</base64></value>`;
  if (Array.isArray(v)) return `<value><array><data>${v.map(encodeValue).join('')}</data></array></value>`;
  if (typeof v === 'object') {
    const members = Object.entries(v as Record<string, unknown>)
      .filter(([, x]) => x !== null && x !== undefined)
      .map(([k, x]) => `<member><name>${escapeXml(k)}</name>${encodeValue(x)}</member>`);
    return `<value><struct>${members.join('')}</struct></value>`;
  }
  return `<value><string>${escapeXml(String(v))}</string></value>`;
}

export function encodeResponse(v: unknown): string {
  return `<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n${encodeValue(v)}\n</param>\n</params>\n</methodResponse>\n`;
}

export function encodeFault(f: RpcFault): string {
  return `<?xml version='1.0'?>\n<methodResponse>\n<fault>\n${encodeValue({ faultCode: f.faultCode, faultString: f.faultString })}\n</fault>\n</methodResponse>\n`;
}
