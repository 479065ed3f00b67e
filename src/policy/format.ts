// `ballast policy fmt`: one canonical layout, comments kept. The output has exactly the
// same tokens in the same order as the input (only whitespace changes), so it means the
// same program; blank lines between items are kept (at most one).
import { tokenize, type Token } from './lexer.js';
import { parseTokens } from './parser.js';

const WIDTH = 80;
const INDENT = 2;

interface FAtom {
  kind: 'atom';
  text: string;
  blankBefore: boolean;
}
interface FComment {
  kind: 'comment';
  text: string;
  trailing: boolean;
  blankBefore: boolean;
}
interface FList {
  kind: 'list';
  open: string;
  close: string;
  items: FItem[];
  blankBefore: boolean;
}
type FItem = FAtom | FComment | FList;

const CLOSE: Record<string, string> = { '(': ')', '[': ']', '{': '}' };

// How many arguments stay on the first line with the head when a form is broken up.
const HEAD_ARGS: Record<string, number> = { def: 2, defun: 2, with: 2, let: 1, if: 1, defvar: 1, set: 1, setq: 1 };

function buildTree(tokens: Token[]): FItem[] {
  const top: FItem[] = [];
  const stack: FList[] = [];
  let prevEnd = 0; // line where the previous token ended (0: none yet)
  for (const t of tokens) {
    const blankBefore = prevEnd > 0 && t.line - prevEnd > 1;
    const container = stack.length ? stack[stack.length - 1]!.items : top;
    if (t.kind === '(' || t.kind === '[' || t.kind === '{') {
      const l: FList = { kind: 'list', open: t.kind, close: CLOSE[t.kind]!, items: [], blankBefore };
      container.push(l);
      stack.push(l);
    } else if (t.kind === ')' || t.kind === ']' || t.kind === '}') {
      stack.pop();
    } else if (t.kind === 'comment') {
      container.push({ kind: 'comment', text: t.text.trimEnd(), trailing: prevEnd === t.line, blankBefore });
    } else {
      container.push({ kind: 'atom', text: t.text, blankBefore });
    }
    prevEnd = t.endLine;
  }
  return top;
}

/** Length on one line, or Infinity when the item cannot be written on one line. */
function flatLen(item: FItem): number {
  if (item.kind === 'comment') return Infinity;
  if (item.kind === 'atom') return item.text.includes('\n') ? Infinity : item.text.length;
  const n = item.items.length;
  if (item.open === '{' && n > 1) return Infinity;
  let len = 2 + Math.max(0, n - 1);
  for (const x of item.items) {
    len += flatLen(x);
    if (len === Infinity) return Infinity;
  }
  return len;
}

function flat(item: FItem): string {
  if (item.kind === 'atom') return item.text;
  if (item.kind === 'comment') return item.text;
  const inner = item.items.map(flat).join(' ');
  return item.open === '{' && inner ? `{ ${inner} }` : `${item.open}${inner}${item.close}`;
}

/** Column at which the next character after `text` lands, when `text` started at `start`. */
function endCol(text: string, start: number): number {
  const nl = text.lastIndexOf('\n');
  return nl < 0 ? start + text.length : text.length - nl - 1;
}

/** `tail`: characters that will follow the item on its last line (closing brackets). */
function fmt(item: FItem, col: number, tail = 0): string {
  if (item.kind !== 'list') return item.text;
  const fl = flatLen(item);
  const flatWidth = item.open === '{' && item.items.length ? fl + 2 : fl;
  if (col + flatWidth + tail <= WIDTH) return flat(item);
  return item.open === '{' ? fmtBlock(item, col) : fmtForm(item, col, tail);
}

/** Writes `items` one per line at `ind`, trailing comments staying on their line. */
function lines(items: FItem[], ind: number, out: string): string {
  let first = true;
  for (const it of items) {
    if (it.kind === 'comment' && it.trailing && !first) {
      out += ' ' + it.text;
    } else if (it.kind === 'comment' && it.trailing && first) {
      out += ' ' + it.text;
    } else {
      if (it.blankBefore && !first) out += '\n';
      out += '\n' + ' '.repeat(ind) + fmt(it, ind);
    }
    first = false;
  }
  return out;
}

function fmtBlock(item: FList, col: number): string {
  return lines(item.items, col + INDENT, '{') + '\n' + ' '.repeat(col) + '}';
}

function fmtForm(item: FList, col: number, tail: number): string {
  const items = item.items;
  let out = item.open;
  let cur = col + 1;
  let onHeadLine = true; // still writing the first line
  let index = 0; // position among non-comment items
  const head = items.find((x) => x.kind !== 'comment');
  const keep = head && head.kind === 'atom' ? (HEAD_ARGS[head.text] ?? 1) : 1;
  const lastReal = items.reduce((acc, x, i) => (x.kind === 'comment' ? acc : i), -1);
  let lastWasComment = false;
  for (let i = 0; i < items.length; i++) {
    const it = items[i]!;
    if (it.kind === 'comment') {
      if (it.trailing && i > 0) out += ' ' + it.text;
      else if (it.trailing && i === 0) out += ' ' + it.text;
      else {
        if (it.blankBefore && i > 0) out += '\n';
        out += '\n' + ' '.repeat(col + INDENT) + it.text;
      }
      onHeadLine = false;
      lastWasComment = true;
      continue;
    }
    lastWasComment = false;
    const sep = index === 0 ? '' : ' ';
    const itemTail = i === items.length - 1 ? tail + 1 : 0;
    const lastBlock = i === lastReal && it.kind === 'list' && it.open === '{' && index > 0;
    if (onHeadLine && (index <= keep || lastBlock)) {
      const text = lastBlock ? fmtInlineBlock(it, col, cur + sep.length) : fmt(it, cur + sep.length, itemTail);
      out += sep + text;
      cur = endCol(sep + text, cur);
      if (text.includes('\n') && !lastBlock) onHeadLine = false;
    } else {
      if (it.blankBefore) out += '\n';
      out += '\n' + ' '.repeat(col + INDENT) + fmt(it, col + INDENT, itemTail);
      cur = endCol(out, 0);
      onHeadLine = false;
    }
    index++;
  }
  if (lastWasComment) out += '\n' + ' '.repeat(col);
  return out + item.close;
}

/** A block that ends a form, opened on the form's first line: `(def f (x) {` ... `})`. */
function fmtInlineBlock(block: FList, formCol: number, col: number): string {
  if (col + flatLen(block) + 2 <= WIDTH) return flat(block);
  return lines(block.items, formCol + INDENT, '{') + '\n' + ' '.repeat(formCol) + '}';
}

/** Formats a policy; throws PolicyParseError if it does not parse. */
export function formatPolicy(text: string, file = '<policy>'): string {
  const tokens = tokenize(text, file, true);
  parseTokens(tokens); // refuse what does not parse, with the usual errors
  const items = buildTree(tokens);
  // No tokens: keep "" apart from whitespace-only text (MOM reads "" as the program `0`).
  if (items.length === 0) return text === '' ? '' : '\n';
  return lines(items, 0, '').replace(/^\n/, '') + '\n';
}
