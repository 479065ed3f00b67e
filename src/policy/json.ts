// JSON as Python's json module reads and writes it, for `ballast policy eval`: a float stays
// a float (input `2.0` is a float, output of the float 2.0 is `2.0`, as MOM's Python would
// print it), so results compare exactly with MOM's.
import { DictValues, PyEntity, PyFloat, PyFunc, floatRepr, intRepr } from './values.js';

/**
 * Parses JSON text that JSON.parse has already accepted, keeping float-ness: a number
 * written with a fraction or exponent becomes a float (boxed when integral).
 */
export function parsePyJson(text: string): unknown {
  let i = 0;
  const ws = () => {
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c === 32 || c === 9 || c === 10 || c === 13) i++;
      else break;
    }
  };
  const value = (): unknown => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const obj: Record<string, unknown> = {};
      ws();
      if (text[i] === '}') {
        i++;
        return obj;
      }
      for (;;) {
        ws();
        const k = value() as string;
        ws();
        i++; // ':'
        const v = value();
        Object.defineProperty(obj, k, { value: v, enumerable: true, writable: true, configurable: true });
        ws();
        if (text[i++] === '}') return obj;
      }
    }
    if (c === '[') {
      i++;
      const arr: unknown[] = [];
      ws();
      if (text[i] === ']') {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(value());
        ws();
        if (text[i++] === ']') return arr;
      }
    }
    if (c === '"') {
      const start = i++;
      while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
      i++;
      return JSON.parse(text.slice(start, i));
    }
    if (c === 't') {
      i += 4;
      return true;
    }
    if (c === 'f') {
      i += 5;
      return false;
    }
    if (c === 'n') {
      i += 4;
      return null;
    }
    const m = /-?\d+(\.\d+)?([eE][+-]?\d+)?/y;
    m.lastIndex = i;
    const r = m.exec(text)!;
    i += r[0].length;
    const n = Number(r[0]);
    if (r[1] !== undefined || r[2] !== undefined) return Number.isInteger(n) ? new PyFloat(n) : n;
    return n === 0 ? 0 : n;
  };
  return value();
}

function numberText(n: number, isFloat: boolean): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return 'Infinity';
  if (n === -Infinity) return '-Infinity';
  if (isFloat || !Number.isInteger(n)) return floatRepr(n);
  return intRepr(n);
}

/**
 * Writes a value as Python's json.dumps would (floats as `2.0`, non-finite floats as
 * NaN/Infinity like Python), indented by `indent` spaces (0: one line).
 */
export function stringifyPyJson(v: unknown, indent = 2): string {
  const nl = indent > 0 ? '\n' : '';
  const sepKV = indent > 0 ? ': ' : ':';
  const out = (x: unknown, depth: number): string => {
    if (x === null || x === undefined) return 'null';
    if (typeof x === 'boolean') return x ? 'true' : 'false';
    if (typeof x === 'number') return numberText(x, false);
    if (typeof x === 'string') return JSON.stringify(x);
    if (x instanceof PyFloat) return numberText(x.v, true);
    if (x instanceof PyEntity) return JSON.stringify(x.describe());
    if (x instanceof PyFunc) return JSON.stringify(`<function ${x.name}>`);
    if (x instanceof DictValues) return out([...x.items], depth);
    const pad = ' '.repeat(indent * (depth + 1));
    const end = ' '.repeat(indent * depth);
    if (Array.isArray(x)) {
      if (x.length === 0) return '[]';
      return '[' + nl + x.map((e) => pad + out(e, depth + 1)).join(',' + nl) + nl + end + ']';
    }
    const keys = Object.keys(x as object);
    if (keys.length === 0) return '{}';
    const rec = x as Record<string, unknown>;
    return '{' + nl + keys.map((k) => pad + JSON.stringify(k) + sepKV + out(rec[k], depth + 1)).join(',' + nl) + nl + end + '}';
  };
  return out(v, 0);
}
