// Tokenizer for MOM's policy language. The token rules and their order of preference are
// MOM's (its scanner tries them in this order and takes the first that matches), so text
// splits into the same tokens under both. Where MOM silently drops the rest of the input
// (a character no rule takes), we refuse the whole policy with FILE:LINE:COL.
import { PolicyParseError } from './errors.js';

export type NumKind = 'int' | 'float' | 'hex' | 'octal';
export type TokenKind = '(' | ')' | '[' | ']' | '{' | '}' | 'num' | 'str' | 'sym' | 'op' | 'comment';

export interface Token {
  kind: TokenKind;
  text: string;
  numKind?: NumKind;
  file: string;
  line: number;
  col: number;
  /** Line on which the token ends (strings may span lines). */
  endLine: number;
}

// Whitespace as Python's `\s` on str (str.isspace), which differs from JS's `\s`.
// biome-ignore lint/suspicious/noControlCharactersInRegex: Python's whitespace includes \x1c-\x1f
const WS = /[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/y;
const COMMENT = /#[^\n]*/y;
// Numbers, in MOM's order of preference: float, hex, integer, integer with exponent, octal.
// MOM writes the integer part as (0|[1-9][0-9]*)*, which accepts exactly the digit strings
// [0-9]* but backtracks exponentially on long digit runs; this form matches the same text.
const FLOAT = /-?[0-9]*\.[0-9]+(?:[Ee][+-]?[0-9]+)?/y;
const HEX = /0[Xx][0-9A-Fa-f]+/y;
const INT = /-?(?:0(?![0-9oXx])|[1-9][0-9]*)(?![0-9eE])/y;
const INT_EXP = /-?(?:0(?![0-9oXx])|[1-9][0-9]*)[Ee][+-]?[0-9]+/y;
const OCTAL = /0o[0-9]+/y;
const SQ_STRING = /'(?:[^'\\]|\\[^\n])*'/y;
const DQ_STRING = /"(?:[^"\\]|\\[^\n])*"/y;
const SYMBOL = /[A-Za-z_][A-Za-z0-9_\-.]*/y;
// The word operators (and, or, not, min, max, null, valid) always lex as symbols first.
const OPERATOR = /<<|>>|<=|>=|==|!=|\+|-|\*|\/|<|>/y;

const RULES: Array<[RegExp, TokenKind, NumKind?]> = [
  [FLOAT, 'num', 'float'],
  [HEX, 'num', 'hex'],
  [INT, 'num', 'int'],
  [INT_EXP, 'num', 'float'],
  [OCTAL, 'num', 'octal'],
  [COMMENT, 'comment'],
  [SQ_STRING, 'str'],
  [DQ_STRING, 'str'],
  [SYMBOL, 'sym'],
  [OPERATOR, 'op'],
];

function matchAt(re: RegExp, text: string, pos: number): string | null {
  re.lastIndex = pos;
  const m = re.exec(text);
  return m ? m[0] : null;
}

/** Splits `text` into tokens. Comments are returned only when `keepComments` is set. */
export function tokenize(text: string, file = '<policy>', keepComments = false): Token[] {
  const out: Token[] = [];
  let pos = 0;
  let line = 1;
  let lineStart = 0;
  const n = text.length;
  while (pos < n) {
    const ch = text[pos]!;
    if (ch === '(' || ch === ')' || ch === '[' || ch === ']' || ch === '{' || ch === '}') {
      out.push({ kind: ch, text: ch, file, line, col: pos - lineStart + 1, endLine: line });
      pos++;
      continue;
    }
    const ws = matchAt(WS, text, pos);
    if (ws !== null) {
      for (let i = 0; i < ws.length; i++) {
        if (ws.charCodeAt(i) === 10) {
          line++;
          lineStart = pos + i + 1;
        }
      }
      pos += ws.length;
      continue;
    }
    let matched = false;
    for (const [re, kind, numKind] of RULES) {
      const m = matchAt(re, text, pos);
      if (m === null) continue;
      const tok: Token = { kind, text: m, file, line, col: pos - lineStart + 1, endLine: line };
      if (numKind) tok.numKind = numKind;
      if (kind === 'str') {
        for (let i = 0; i < m.length; i++) {
          if (m.charCodeAt(i) === 10) {
            line++;
            lineStart = pos + i + 1;
          }
        }
        tok.endLine = line;
      }
      if (kind !== 'comment' || keepComments) out.push(tok);
      pos += m.length;
      matched = true;
      break;
    }
    if (matched) continue;
    const col = pos - lineStart + 1;
    if (ch === '"' || ch === "'") throw new PolicyParseError(file, line, col, `unterminated string (opened with ${ch})`);
    throw new PolicyParseError(file, line, col, `unexpected character ${describeChar(text, pos)}`);
  }
  return out;
}

function describeChar(text: string, pos: number): string {
  const cp = text.codePointAt(pos)!;
  const c = String.fromCodePoint(cp);
  if (cp < 0x20 || cp === 0x7f || (cp >= 0x80 && cp < 0xa0)) return `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;
  return `'${c}' (U+${cp.toString(16).toUpperCase().padStart(4, '0')})`;
}
