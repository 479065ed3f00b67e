// The guest agent through libvirt's qemu-agent-command passthrough, for guests whose balloon
// gives no statistics and for guest PSI.
import type { LibvirtClient } from './client.js';
import type { DomainRef } from './protocol.js';
import { LibvirtProtocolError } from './errors.js';
import { type AgentExec, readGuestFile } from '../guest-agent.js';

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

/** One agent command through libvirt, each with its own timeout. */
export function libvirtAgent(client: LibvirtClient, dom: DomainRef, timeoutSec = 2): AgentExec {
  return async (execute, args) =>
    parseReturn(execute, await client.agentCommand(dom, args === undefined ? { execute } : { execute, arguments: args }, timeoutSec));
}

/** guest-ping: resolves when the agent answers. */
export async function agentPing(client: LibvirtClient, dom: DomainRef, timeoutSec = 2): Promise<void> {
  await libvirtAgent(client, dom, timeoutSec)('guest-ping');
}

/** Reads a (small) file inside the guest. */
export function agentReadFile(client: LibvirtClient, dom: DomainRef, path: string, timeoutSec = 2, maxBytes = 1 << 20): Promise<string> {
  return readGuestFile(libvirtAgent(client, dom, timeoutSec), path, maxBytes);
}
