// Files inside a guest through the QEMU guest agent, whatever carries its commands: libvirt's
// qemu-agent-command passthrough or the agent's own socket (QMP driver). Reads (meminfo, PSI)
// and one write, asked for by the opt-in reclaim control (src/hypervisor/guest-reclaim.ts).

/** Runs one guest agent command and resolves with its `return` value. */
export type AgentExec = (command: string, args?: Record<string, unknown>) => Promise<unknown>;

/** The agent answered, but not as the agent protocol says it should. */
export class GuestAgentError extends Error {
  override name = 'GuestAgentError';
}

/** Reads a (small) file inside the guest: guest-file-open / read until eof / close. */
export async function readGuestFile(exec: AgentExec, path: string, maxBytes = 1 << 20): Promise<string> {
  const handle = await exec('guest-file-open', { path, mode: 'r' });
  if (typeof handle !== 'number') throw new GuestAgentError(`guest-file-open returned ${JSON.stringify(handle)}, not a handle`);
  const parts: Buffer[] = [];
  let total = 0;
  try {
    for (;;) {
      const r = (await exec('guest-file-read', { handle, count: 65536 })) as { 'buf-b64'?: unknown; eof?: unknown } | null;
      if (typeof r !== 'object' || r === null) throw new GuestAgentError(`guest-file-read returned ${JSON.stringify(r)}`);
      const chunk = Buffer.from(typeof r['buf-b64'] === 'string' ? r['buf-b64'] : '', 'base64');
      parts.push(chunk);
      total += chunk.length;
      if (r.eof === true || chunk.length === 0) break;
      if (total > maxBytes) throw new GuestAgentError(`${path} in the guest is larger than ${maxBytes} bytes`);
    }
  } finally {
    await exec('guest-file-close', { handle }).catch(() => undefined);
  }
  return Buffer.concat(parts).toString('utf8');
}

/**
 * Writes `text` to a file inside the guest: guest-file-open (mode w) / write / close. qemu-ga
 * buffers the write (stdio) until the close, so a kernel file's answer to the write (an errno)
 * arrives as the close's error: the close is awaited and its error thrown.
 */
export async function writeGuestFile(exec: AgentExec, path: string, text: string): Promise<void> {
  const handle = await exec('guest-file-open', { path, mode: 'w' });
  if (typeof handle !== 'number') throw new GuestAgentError(`guest-file-open returned ${JSON.stringify(handle)}, not a handle`);
  try {
    await exec('guest-file-write', { handle, 'buf-b64': Buffer.from(text, 'utf8').toString('base64') });
  } catch (err) {
    await exec('guest-file-close', { handle }).catch(() => undefined);
    throw err;
  }
  await exec('guest-file-close', { handle });
}

/**
 * When to ask a guest's agent again after a failed read: a minute later for a guest whose
 * agent never answered (none installed, or no PSI in its kernel), 10 s later for one that
 * answered before and now does not (a guest busy reclaiming, which is when its stall matters).
 */
export class AgentRetry {
  static readonly NEVER_ANSWERED_MS = 60_000;
  static readonly LOST_MS = 10_000;
  private readonly until = new Map<string, number>();
  private readonly answered = new Set<string>();

  /** The guest may be asked now. */
  due(id: string, now = Date.now()): boolean {
    const u = this.until.get(id);
    return u === undefined || now >= u;
  }

  /** Whether the guest's last read failed (its pause has been set). */
  failing(id: string): boolean {
    return this.until.has(id);
  }

  ok(id: string): void {
    this.until.delete(id);
    this.answered.add(id);
  }

  /** Records a failed read; returns how long the guest is left alone, ms. */
  failed(id: string, now = Date.now()): number {
    const wait = this.answered.has(id) ? AgentRetry.LOST_MS : AgentRetry.NEVER_ANSWERED_MS;
    this.until.set(id, now + wait);
    return wait;
  }

  /** The guest is gone: forget it. */
  forget(id: string): void {
    this.until.delete(id);
    this.answered.delete(id);
  }
}
