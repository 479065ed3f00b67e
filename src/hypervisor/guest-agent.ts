// Reading files inside a guest through the QEMU guest agent, whatever carries its commands:
// libvirt's qemu-agent-command passthrough or the agent's own socket (QMP driver). Only
// read-only agent commands are used.

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
