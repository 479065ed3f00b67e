// Opening a libvirt client on a socket found by a pattern, where two things differ from a
// host's own libvirtd:
//  - the path may be longer than a unix socket address holds (107 bytes on Linux): a KubeVirt
//    pod's is /var/lib/kubelet/pods/<36-character UID>/volumes/kubernetes.io~empty-dir/
//    libvirt-runtime/virtqemud-sock, 121 bytes. Node then connects to a truncated path and
//    fails with a misleading ENOENT, so such a socket is reached through its directory opened
//    as a file descriptor: /proc/self/fd/<fd>/<name> is short and names the same inode.
//  - the daemon may serve qemu:///system (a root virt-launcher) or only qemu:///session (a
//    non-root one, KubeVirt's default): the URIs are tried in order until the daemon accepts
//    one, and the one it took is asked first next time.
import { open } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { LibvirtClient, type ClientOptions } from './client.js';
import { LibvirtConnectionError, LibvirtError } from './errors.js';

/** sun_path is 108 bytes with its terminating NUL. */
export const UNIX_PATH_MAX = 107;

export interface SocketClientState {
  /** The URI the daemon accepted last (asked first on a reconnect). */
  uri: string | null;
}

/**
 * A client factory for LibvirtHypervisor's `clientFactory`: connects to `socket` (however long
 * its path), opening the first of `uris` the daemon accepts. A daemon that refuses every URI
 * rejects with the last refusal; a socket that cannot be reached rejects at once (the driver's
 * backoff retries it).
 */
export function socketClientFactory(
  socket: string,
  uris: readonly string[],
  state: SocketClientState,
  connect: (o: ClientOptions) => Promise<LibvirtClient> = (o) => LibvirtClient.connect(o),
): (opts: ClientOptions) => Promise<LibvirtClient> {
  if (uris.length === 0) throw new Error('socketClientFactory: no URI to try');
  return async (opts) => {
    const order = state.uri ? [state.uri, ...uris.filter((u) => u !== state.uri)] : [...uris];
    let refused: Error | null = null;
    for (const uri of order) {
      try {
        const c = await connectPath(socket, (socketPath) => connect({ ...opts, socketPath, uri }));
        state.uri = uri;
        return c;
      } catch (err) {
        // Only the daemon saying no to this URI is worth another URI; anything else is the
        // socket's or the connection's problem, the same for every URI.
        if (!(err instanceof LibvirtError)) throw err;
        refused = err;
      }
    }
    throw refused!;
  };
}

async function connectPath<T>(socket: string, fn: (path: string) => Promise<T>): Promise<T> {
  if (Buffer.byteLength(socket) <= UNIX_PATH_MAX) return fn(socket);
  let dir;
  try {
    dir = await open(dirname(socket), 'r');
  } catch (err) {
    throw new LibvirtConnectionError(`cannot open the directory of libvirt socket ${socket}: ${(err as Error).message}`, (err as NodeJS.ErrnoException).code);
  }
  const via = `/proc/self/fd/${dir.fd}/${basename(socket)}`;
  try {
    return await fn(via);
  } catch (err) {
    if (err instanceof LibvirtConnectionError) throw new LibvirtConnectionError(err.message.split(via).join(socket), err.syscallCode);
    throw err;
  } finally {
    // The connected socket does not need the directory any more.
    await dir.close();
  }
}
