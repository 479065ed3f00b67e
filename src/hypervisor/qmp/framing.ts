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

  /** maxLine: a peer that sends this much without a newline is not speaking QMP. */
  constructor(private readonly maxLine = 16 * 1024 * 1024) {}

  push(chunk: Buffer | string): FrameResult[] {
    this.buf += typeof chunk === 'string' ? chunk : this.decoder.write(chunk);
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

export function parseLine(line: string): FrameResult {
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
