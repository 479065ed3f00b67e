// Parser: tokens -> expressions, every node with its file, line and column. Iterative (an
// explicit stack), so deeply nested text cannot overflow the JS stack; nesting beyond
// MAX_NESTING is refused (MOM's recursive evaluator could not run it either).
import { PolicyParseError } from './errors.js';
import { tokenize, type NumKind, type Token } from './lexer.js';

export const MAX_NESTING = 1000;

export interface AtomNode {
  kind: 'num' | 'str' | 'sym' | 'op';
  text: string;
  numKind?: NumKind;
  file: string;
  line: number;
  col: number;
}

export interface ListNode {
  kind: 'list';
  open: '(' | '[' | '{';
  items: Node[];
  file: string;
  line: number;
  col: number;
}

export type Node = AtomNode | ListNode;

export interface Program {
  exprs: Node[];
}

const CLOSER: Record<string, string> = { '(': ')', '[': ']', '{': '}' };

/** Builds expressions from tokens (comments must already be dropped). */
export function parseTokens(tokens: Token[]): Program {
  const top: Node[] = [];
  const stack: ListNode[] = [];
  for (const t of tokens) {
    const k = t.kind;
    if (k === '(' || k === '[' || k === '{') {
      if (stack.length >= MAX_NESTING) {
        throw new PolicyParseError(t.file, t.line, t.col, `brackets nested deeper than ${MAX_NESTING} levels`);
      }
      stack.push({ kind: 'list', open: k, items: [], file: t.file, line: t.line, col: t.col });
      continue;
    }
    if (k === ')' || k === ']' || k === '}') {
      const open = stack.pop();
      if (!open) throw new PolicyParseError(t.file, t.line, t.col, `unexpected '${k}' with no open bracket`);
      if (CLOSER[open.open] !== k) {
        throw new PolicyParseError(t.file, t.line, t.col, `'${k}' does not match '${open.open}' opened at ${open.file}:${open.line}:${open.col}`);
      }
      (stack.length ? stack[stack.length - 1]!.items : top).push(open);
      continue;
    }
    if (k === 'comment') continue;
    const atom: AtomNode = { kind: k, text: t.text, file: t.file, line: t.line, col: t.col };
    if (t.numKind) atom.numKind = t.numKind;
    (stack.length ? stack[stack.length - 1]!.items : top).push(atom);
  }
  if (stack.length) {
    const open = stack[stack.length - 1]!;
    throw new PolicyParseError(open.file, open.line, open.col, `unclosed '${open.open}' (missing '${CLOSER[open.open]}')`);
  }
  return { exprs: top };
}

/** Parses one policy text; throws PolicyParseError for the first problem found. */
export function parsePolicy(text: string, file = '<policy>'): Program {
  return parseTokens(tokenize(text, file));
}
