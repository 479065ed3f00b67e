// Putting an http server on a unix socket (mode 0600 from the start, a stale socket file
// replaced, a live one never stolen) or on HOST:PORT.
import { connect } from 'node:net';
import { chownSync, lstatSync, mkdirSync, readFileSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Server } from 'node:http';

/** HOST:PORT or [V6]:PORT; throws with the reason. */
export function parseHostPort(s: string, what: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(s.trim());
  if (!m) throw new Error(`${what}: expected HOST:PORT (e.g. 127.0.0.1:9489), got "${s}"`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`${what}: port ${port} is above 65535`);
  return { host: (m[1] ?? m[2])!, port };
}

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    const done = (v: boolean) => {
      s.destroy();
      resolve(v);
    };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
    s.setTimeout(1000, () => done(false));
  });
}

function listening(server: Server, arg: string | { host: string; port: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error) => reject(e);
    server.once('error', onError);
    const ok = () => {
      server.off('error', onError);
      resolve();
    };
    if (typeof arg === 'string') server.listen(arg, ok);
    else server.listen(arg.port, arg.host, ok);
  });
}

export async function listenUnix(server: Server, path: string): Promise<void> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  let st: ReturnType<typeof lstatSync> | undefined;
  try {
    st = lstatSync(path);
  } catch {
    st = undefined;
  }
  if (st) {
    if (!st.isSocket()) throw new Error(`${path} exists and is not a socket; not touching it`);
    if (await answers(path)) throw new Error(`another process already serves ${path}`);
    unlinkSync(path);
  }
  // The umask makes the socket 0600 from its creation: no window in which others may connect.
  const old = process.umask(0o177);
  try {
    await listening(server, path);
  } finally {
    process.umask(old);
  }
}

export async function listenTcp(server: Server, hostPort: string, what: string): Promise<string> {
  const hp = parseHostPort(hostPort, what);
  await listening(server, hp);
  const a = server.address();
  const port = typeof a === 'object' && a ? a.port : hp.port;
  return hp.host.includes(':') ? `[${hp.host}]:${port}` : `${hp.host}:${port}`;
}

export function closeServer(server: Server, path?: string): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    // Keep-alive and SSE connections would hold close() open.
    server.closeAllConnections();
    if (path) {
      try {
        unlinkSync(path);
      } catch {
        // Already gone.
      }
    }
  });
}

/** A user or group name (or number) to its id, from /etc/passwd or /etc/group. */
function idOf(name: string, file: '/etc/passwd' | '/etc/group'): number {
  if (/^\d+$/.test(name)) return Number(name);
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const f = line.split(':');
    if (f[0] === name && f[2] !== undefined) return Number(f[2]);
  }
  throw new Error(`no ${file === '/etc/passwd' ? 'user' : 'group'} "${name}" in ${file}`);
}

/** Hands a socket to "USER" or "USER:GROUP" (its mode stays 0600: only that user connects). */
export function chownSocket(path: string, owner: string): void {
  const [user, group] = owner.split(':');
  const uid = idOf(user!, '/etc/passwd');
  const gid = group ? idOf(group, '/etc/group') : -1;
  chownSync(path, uid, gid);
}
