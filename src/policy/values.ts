// Values of the policy language with Python 3's semantics, which MOM's evaluator inherits.
//
// Representation (chosen so the hot path stays plain JS numbers):
// - Python int: a JS number with an integral value (exact within 2^53).
// - Python float: a JS number with a non-integral value (also NaN and +-Infinity), or a
//   PyFloat box when the value is integral (2.0, -0.0, 1e300), so 2.0 stays distinct from 2.
// - bool: JS boolean; None (nil): null; str: JS string; list: JS array;
//   entities and callables: the classes below.
import { alloc, touch } from './meter.js';
import { PolicyRuntimeError, type Pos } from './errors.js';

/** A Python float whose value happens to be integral. */
export class PyFloat {
  constructor(readonly v: number) {}
}

/** Something callable from a policy: MOM's extern functions and bound entity methods. */
export class PyFunc {
  constructor(
    readonly name: string,
    readonly fn: (args: Value[], pos: Pos) => Value,
  ) {}
}

/** Base of Host and guest entities (defined in entity.ts). */
export abstract class PyEntity {
  abstract describe(): string;
}

/**
 * MOM binds `Guests` to a dict's values view, not a list: `with` iterates it and `null`
 * sees its length, but it equals only itself and takes part in no arithmetic or ordering.
 */
export class DictValues {
  constructor(readonly items: readonly Value[]) {}
}

export type Value = null | boolean | number | string | PyFloat | PyFunc | PyEntity | DictValues | Value[];

/** A float result: boxed when integral so it keeps its float-ness. */
export function mkFloat(r: number): number | PyFloat {
  return Number.isInteger(r) ? new PyFloat(r) : r;
}

export function isNumeric(v: Value): v is number | PyFloat | boolean {
  return typeof v === 'number' || typeof v === 'boolean' || v instanceof PyFloat;
}

/** True for Python floats (not ints, not bools). */
export function isFloat(v: Value): boolean {
  return v instanceof PyFloat || (typeof v === 'number' && !Number.isInteger(v));
}

/** True for Python ints and bools. */
export function isIntLike(v: Value): v is number | boolean {
  return typeof v === 'boolean' || (typeof v === 'number' && Number.isInteger(v));
}

export function num(v: number | PyFloat | boolean): number {
  return typeof v === 'number' ? v : typeof v === 'boolean' ? (v ? 1 : 0) : v.v;
}

export function typeName(v: Value): string {
  if (v === null) return 'NoneType';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
  if (typeof v === 'string') return 'str';
  if (v instanceof PyFloat) return 'float';
  if (Array.isArray(v)) return 'list';
  if (v instanceof PyFunc) return 'function';
  if (v instanceof DictValues) return 'dict_values';
  if (v instanceof PyEntity) return 'Entity';
  return 'dict'; // a JSON object from a snapshot's props or vars
}

export function truthy(v: Value): boolean {
  if (v === null) return false;
  switch (typeof v) {
    case 'boolean':
      return v;
    case 'number':
      return v !== 0;
    case 'string':
      return v.length > 0;
  }
  if (v instanceof PyFloat) return v.v !== 0;
  if (Array.isArray(v)) return v.length > 0;
  if (v instanceof DictValues) return v.items.length > 0;
  if (v instanceof PyEntity || v instanceof PyFunc) return true;
  return Object.keys(v).length > 0; // a JSON object (Python dict)
}

function typeErr(op: string, a: Value, b: Value, pos: Pos): PolicyRuntimeError {
  return new PolicyRuntimeError(`unsupported operand type(s) for ${op}: '${typeName(a)}' and '${typeName(b)}'`, pos);
}

/** Largest string or list a policy may build by repetition or concatenation (a MOM policy
 *  needs a few hundred; this leaves room and keeps one value under a few MB). */
export const MAX_SEQ = 1 << 20;

function checkLen(n: number, pos: Pos): void {
  if (n > MAX_SEQ) throw new PolicyRuntimeError(`result too long (${n} elements; limit ${MAX_SEQ})`, pos);
}

function numericResult(a: number | PyFloat | boolean, b: number | PyFloat | boolean, r: number): number | PyFloat {
  if (isFloat(a) || isFloat(b)) return mkFloat(r);
  return r === 0 ? 0 : r; // ints have no -0
}

export function add(a: Value, b: Value, pos: Pos): Value {
  if (typeof a === 'number' && typeof b === 'number') {
    const r = a + b;
    if (Number.isInteger(a) && Number.isInteger(b)) return r;
    return Number.isInteger(r) ? new PyFloat(r) : r;
  }
  if (isNumeric(a) && isNumeric(b)) return numericResult(a, b, num(a) + num(b));
  if (typeof a === 'string' && typeof b === 'string') {
    checkLen(a.length + b.length, pos);
    alloc(a.length + b.length, pos);
    return a + b;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    checkLen(a.length + b.length, pos);
    alloc(a.length + b.length, pos);
    return a.concat(b);
  }
  if (typeof a === 'string' || typeof b === 'string') {
    throw new PolicyRuntimeError(
      typeof a === 'string' ? `can only concatenate str (not "${typeName(b)}") to str` : `unsupported operand type(s) for +: '${typeName(a)}' and 'str'`,
      pos,
    );
  }
  throw typeErr('+', a, b, pos);
}

export function sub(a: Value, b: Value, pos: Pos): Value {
  if (typeof a === 'number' && typeof b === 'number') {
    const r = a - b;
    if (Number.isInteger(a) && Number.isInteger(b)) return r;
    return Number.isInteger(r) ? new PyFloat(r) : r;
  }
  if (isNumeric(a) && isNumeric(b)) return numericResult(a, b, num(a) - num(b));
  throw typeErr('-', a, b, pos);
}

function repeat(seq: string | Value[], count: number | boolean, pos: Pos): Value {
  const n = Math.max(0, num(count));
  if (seq.length === 0) return typeof seq === 'string' ? '' : [];
  checkLen(seq.length * n, pos);
  alloc(seq.length * n, pos);
  if (typeof seq === 'string') return seq.repeat(n);
  const out: Value[] = [];
  for (let i = 0; i < n; i++) for (const x of seq) out.push(x);
  return out;
}

export function mul(a: Value, b: Value, pos: Pos): Value {
  if (typeof a === 'number' && typeof b === 'number') {
    const r = a * b;
    if (Number.isInteger(a) && Number.isInteger(b)) return r === 0 ? 0 : r;
    return Number.isInteger(r) ? new PyFloat(r) : r;
  }
  if (isNumeric(a) && isNumeric(b)) return numericResult(a, b, num(a) * num(b));
  if ((typeof a === 'string' || Array.isArray(a)) && isIntLike(b)) return repeat(a, b, pos);
  if ((typeof b === 'string' || Array.isArray(b)) && isIntLike(a)) return repeat(b, a, pos);
  if (typeof a === 'string' || typeof b === 'string' || Array.isArray(a) || Array.isArray(b)) {
    const seq = typeof a === 'string' || Array.isArray(a) ? a : b;
    const other = seq === a ? b : a;
    throw new PolicyRuntimeError(`can't multiply sequence by non-int of type '${typeName(other)}'`, pos);
  }
  throw typeErr('*', a, b, pos);
}

export function div(a: Value, b: Value, pos: Pos): Value {
  if (isNumeric(a) && isNumeric(b)) {
    const d = num(b);
    if (d === 0) throw new PolicyRuntimeError(isFloat(a) || isFloat(b) ? 'float division by zero' : 'division by zero', pos);
    return mkFloat(num(a) / d);
  }
  throw typeErr('/', a, b, pos);
}

function shiftOperands(op: string, a: Value, b: Value, pos: Pos): [number, number] {
  if (!isIntLike(a) || !isIntLike(b)) throw typeErr(op, a, b, pos);
  const x = num(a);
  const n = num(b);
  if (n < 0) throw new PolicyRuntimeError('negative shift count', pos);
  return [x, n];
}

export function shl(a: Value, b: Value, pos: Pos): Value {
  const [x, n] = shiftOperands('<<', a, b, pos);
  if (x === 0) return 0;
  const r = x * 2 ** n;
  if (!Number.isFinite(r)) throw new PolicyRuntimeError('integer result of << too large', pos);
  return r;
}

export function shr(a: Value, b: Value, pos: Pos): Value {
  const [x, n] = shiftOperands('>>', a, b, pos);
  if (n >= 1024) return x < 0 ? -1 : 0; // 2 ** n is Infinity in doubles
  const r = Math.floor(x / 2 ** n);
  return r === 0 ? 0 : r;
}

/** Python's `==`. */
export function eq(a: Value, b: Value, pos?: Pos): boolean {
  // Two distinct long strings are compared character by character.
  if (pos && typeof a === 'string' && typeof b === 'string' && a.length === b.length) touch(a.length, pos);
  if (a === b) return true;
  if (isNumeric(a) && isNumeric(b)) return num(a) === num(b);
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) return false;
    if (pos) touch(a.length, pos);
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !eq(a[i]!, b[i]!, pos)) return false;
    return true;
  }
  return false;
}

function cmpStr(a: string, b: string): number {
  // Python compares code points; JS's < compares UTF-16 units (differs above U+FFFF).
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; ) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(i)!;
    if (x !== y) return x < y ? -1 : 1;
    i += x > 0xffff ? 2 : 1;
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

type CmpOp = '<' | '>' | '<=' | '>=';

/** Python's ordering comparisons. */
export function compare(op: CmpOp, a: Value, b: Value, pos: Pos): boolean {
  if (typeof a === 'number' && typeof b === 'number') {
    switch (op) {
      case '<':
        return a < b;
      case '>':
        return a > b;
      case '<=':
        return a <= b;
      case '>=':
        return a >= b;
    }
  }
  if (isNumeric(a) && isNumeric(b)) return compare(op, num(a), num(b), pos);
  if (typeof a === 'string' && typeof b === 'string') {
    touch(Math.min(a.length, b.length), pos);
    const c = cmpStr(a, b);
    return op === '<' ? c < 0 : op === '>' ? c > 0 : op === '<=' ? c <= 0 : c >= 0;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    // Lexicographic: the first unequal pair decides, else the lengths.
    const n = Math.min(a.length, b.length);
    touch(n, pos);
    for (let i = 0; i < n; i++) {
      if (!eq(a[i]!, b[i]!, pos)) return compare(op, a[i]!, b[i]!, pos);
    }
    return compare(op, a.length, b.length, pos);
  }
  throw new PolicyRuntimeError(`'${op}' not supported between instances of '${typeName(a)}' and '${typeName(b)}'`, pos);
}

export function abs(v: Value, pos: Pos): Value {
  if (typeof v === 'number') return Math.abs(v);
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (v instanceof PyFloat) return new PyFloat(Math.abs(v.v));
  throw new PolicyRuntimeError(`bad operand type for abs(): '${typeName(v)}'`, pos);
}

/** Python's min()/max() over the arguments: the first extreme value wins ties. */
export function minMax(which: 'min' | 'max', args: Value[], pos: Pos): Value {
  let best = args[0]!;
  const op = which === 'min' ? '<' : '>';
  for (let i = 1; i < args.length; i++) if (compare(op, args[i]!, best, pos)) best = args[i]!;
  return best;
}

/** MOM's `null`: every value is nil or an empty string/list. */
export function isNull(args: Value[]): boolean {
  for (const v of args) {
    if (v === null) continue;
    if ((typeof v === 'string' || Array.isArray(v)) && v.length === 0) continue;
    if (v instanceof DictValues && v.items.length === 0) continue;
    return false;
  }
  return true;
}

// ---- display --------------------------------------------------------------------------

/** Python's repr() of a float: shortest round-trip digits, exponent outside 1e-4..1e16. */
export function floatRepr(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (x === Infinity) return 'inf';
  if (x === -Infinity) return '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const e = x.toExponential(); // shortest digits, e.g. "-1.2345e+2"
  const m = /^(-?)(\d)(?:\.(\d+))?e([+-]\d+)$/.exec(e)!;
  const sign = m[1]!;
  const digits = m[2]! + (m[3] ?? '');
  const exp = Number(m[4]);
  if (exp >= -4 && exp < 16) {
    if (exp < 0) return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
    if (digits.length <= exp + 1) return `${sign}${digits}${'0'.repeat(exp + 1 - digits.length)}.0`;
    return `${sign}${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`;
  }
  const mant = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
  return `${sign}${mant}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
}

export function intRepr(x: number): string {
  return Number.isSafeInteger(x) ? String(x) : BigInt(x).toString();
}

function strRepr(s: string): string {
  const q = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = q;
  for (const ch of s) {
    if (ch === q || ch === '\\') out += '\\' + ch;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (ch < ' ' || ch === '\x7f') out += '\\x' + ch.charCodeAt(0).toString(16).padStart(2, '0');
    else out += ch;
  }
  return out + q;
}

/** Python's repr() of a value (used by `debug`). */
export function repr(v: Value): string {
  if (v === null) return 'None';
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  if (typeof v === 'number') return Number.isInteger(v) ? intRepr(v) : floatRepr(v);
  if (typeof v === 'string') return strRepr(v);
  if (v instanceof PyFloat) return floatRepr(v.v);
  if (Array.isArray(v)) return '[' + v.map(repr).join(', ') + ']';
  if (v instanceof PyFunc) return `<function ${v.name}>`;
  if (v instanceof DictValues) return `dict_values([${v.items.map(repr).join(', ')}])`;
  if (v instanceof PyEntity) return v.describe();
  const obj = v as Record<string, Value>;
  return (
    '{' +
    Object.keys(obj)
      .map((k) => `${strRepr(k)}: ${repr(obj[k]!)}`)
      .join(', ') +
    '}'
  );
}
