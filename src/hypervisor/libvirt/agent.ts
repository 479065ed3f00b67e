// Reading guest facts through the qemu guest agent (libvirt's qemu-agent-command passthrough),
// for guests whose balloon gives no statistics. Only read-only agent commands are used.
import type { LibvirtClient } from './client.js';
import type { DomainRef } from './protocol.js';
import { LibvirtProtocolError } from './errors.js';

function parseReturn(what: string, reply: string | null): unknown {
  if (reply === null) throw new LibvirtProtocolError(`guest agent gave no reply to ${what}`);
  let obj: unknown;
  try {
    obj = JSON.parse(reply);
  } catch {
    throw new LibvirtProtocolError(`guest agent reply to ${what} is not JSON: ${reply.slice(0, 80)}`);
  }
  if (typeof obj !== 'object' || obj === null || !('return' in obj)) {
    throw new LibvirtProtocolError(`guest agent reply to ${what} has no "return": ${reply.slice(0, 80)}`);
  }
  return (obj as { return: unknown }).return;
}

/** guest-ping: resolves when the agent answers. */
export async function agentPing(client: LibvirtClient, dom: DomainRef, timeoutSec = 2): Promise<void> {
  parseReturn('guest-ping', await client.agentCommand(dom, { execute: 'guest-ping' }, timeoutSec));
}

/** Reads a (small) file inside the guest: guest-file-open / read until eof / close. */
export async function agentReadFile(client: LibvirtClient, dom: DomainRef, path: string, timeoutSec = 2, maxBytes = 1 << 20): Promise<string> {
  const handle = parseReturn('guest-file-open', await client.agentCommand(dom, { execute: 'guest-file-open', arguments: { path, mode: 'r' } }, timeoutSec));
  if (typeof handle !== 'number') throw new LibvirtProtocolError(`guest-file-open returned ${JSON.stringify(handle)}, not a handle`);
  const parts: Buffer[] = [];
  let total = 0;
  try {
    for (;;) {
      const r = parseReturn(
        'guest-file-read',
        await client.agentCommand(dom, { execute: 'guest-file-read', arguments: { handle, count: 65536 } }, timeoutSec),
      ) as { count?: number; 'buf-b64'?: string; eof?: boolean };
      const chunk = Buffer.from(r['buf-b64'] ?? '', 'base64');
      parts.push(chunk);
      total += chunk.length;
      if (r.eof || chunk.length === 0) break;
      if (total > maxBytes) throw new LibvirtProtocolError(`${path} in the guest is larger than ${maxBytes} bytes`);
    }
  } finally {
    await client.agentCommand(dom, { execute: 'guest-file-close', arguments: { handle } }, timeoutSec).catch(() => undefined);
  }
  return Buffer.concat(parts).toString('utf8');
}
