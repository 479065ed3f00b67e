// QMP's wire format: one JSON object per line ("\r\n"-terminated by QEMU). Chunks from the
// socket may hold part of a line or several lines; a line that is not a JSON object is
// reported, not fatal, since the next line is still a clean message.
import { StringDecoder } from 'node:string_decoder';

export type QmpMessage = Record<string, unknown>;

export type FrameResult = { ok: true; message: QmpMessage } | { ok: false; error: string };

export class LineTooLongError extends Error {}

export class QmpLineReader {
  private buf = '';
  private readonly decoder = new StringDecoder('utf8');

  /** maxLine: a peer that sends this much without a newline is not speaking QMP (QEMU's
   *  largest replies to what ballast asks are a few KiB). */
  constructor(private readonly maxLine = MAX_LINE) {}

  push(chunk: Buffer | string): FrameResult[] {
    this.buf += typeof chunk === 'string' ? chunk : this.decoder.write(chunk);
    // Checked before splitting too, so an endless line is refused as soon as it is too long.
    if (this.buf.length > this.maxLine && this.buf.indexOf('\n') < 0) {
      this.buf = '';
      throw new LineTooLongError(`more than ${this.maxLine} bytes without a line end`);
    }
    const out: FrameResult[] = [];
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).replace(/\r$/, '');
      this.buf = this.buf.slice(nl + 1);
      if (line.trim() === '') continue;
      out.push(parseLine(line));
    }
    if (this.buf.length > this.maxLine) {
      this.buf = '';
      throw new LineTooLongError(`more than ${this.maxLine} bytes without a line end`);
    }
    return out;
  }
}

export const MAX_LINE = 1024 * 1024;
/** QMP messages nest a few levels; a deeper one is not QEMU's (and would break JSON.stringify). */
export const MAX_DEPTH = 32;

/** Nesting depth of a JSON text, outside strings; stops counting past `limit`. */
export function jsonDepth(text: string, limit = MAX_DEPTH): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92)
        i++; // backslash: skip the escaped character
      else if (c === 34) inString = false;
    } else if (c === 34) inString = true;
    else if (c === 123 || c === 91) {
      if (++depth > max) max = depth;
      if (max > limit) return max;
    } else if (c === 125 || c === 93) depth--;
  }
  return max;
}

export function parseLine(line: string): FrameResult {
  if (jsonDepth(line) > MAX_DEPTH) return { ok: false, error: `JSON nested deeper than ${MAX_DEPTH}: ${excerpt(line)}` };
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return { ok: false, error: `not JSON: ${excerpt(line)}` };
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return { ok: false, error: `not a JSON object: ${excerpt(line)}` };
  return { ok: true, message: v as QmpMessage };
}

function excerpt(s: string): string {
  const printable = s.replace(/[^\x20-\x7e]/g, '?');
  return JSON.stringify(printable.length > 80 ? printable.slice(0, 80) + '...' : printable);
}

/** A short, printable description of a message for a log line; never throws. */
export function describeMessage(m: unknown): string {
  try {
    const text = (JSON.stringify(m) ?? String(m)).replace(/[^\x20-\x7e]/g, '?');
    return text.length > 100 ? `${text.slice(0, 100)}...` : text;
  } catch {
    return '(unprintable message)';
  }
}
