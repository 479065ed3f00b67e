// Follows a guest's console file while it grows, stamping each complete ballast line with the
// host time it was read: every guest's lines then sit on one clock, the window's.
import { closeSync, openSync, readSync } from 'node:fs';
import { parseConsoleLine } from '../../lab/console.js';
import type { TimedLine } from './metrics.js';

export class ConsoleTail {
  private offset = 0;
  private partial = '';
  readonly lines: TimedLine[] = [];

  constructor(readonly path: string) {}

  /** Reads what was appended since the last call; returns the new ballast lines. */
  poll(now = Date.now() / 1000): TimedLine[] {
    let fd: number;
    try {
      fd = openSync(this.path, 'r');
    } catch {
      return [];
    }
    const fresh: TimedLine[] = [];
    try {
      const buf = Buffer.alloc(64 * 1024);
      for (;;) {
        const n = readSync(fd, buf, 0, buf.length, this.offset);
        if (n <= 0) break;
        this.offset += n;
        this.partial += buf.toString('latin1', 0, n);
      }
    } finally {
      closeSync(fd);
    }
    const parts = this.partial.split('\n');
    // The last piece has no newline yet: keep it for the next poll.
    this.partial = parts.pop() ?? '';
    for (const text of parts) {
      const line = parseConsoleLine(text);
      if (line) fresh.push({ at: now, line });
    }
    this.lines.push(...fresh);
    return fresh;
  }
}
