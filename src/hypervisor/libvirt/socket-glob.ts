// Finding libvirt daemons' sockets by a path pattern, e.g. the kubelet's pod directories on a
// KubeVirt node: /var/lib/kubelet/pods/*/volumes/kubernetes.io~empty-dir/libvirt-runtime/virtqemud-sock.
// Node 20 has no fs.glob, and a pattern of whole path segments is all this needs: `*` (any run
// of characters) and `?` (one character) inside a segment, nothing that crosses a `/`. Literal
// segments are joined without reading their directories, so a scan reads only the directories
// a wildcard stands in and stats only the candidates: one readdir of the pods directory and
// one stat per pod on a KubeVirt node.
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

export interface SocketGlob {
  readonly pattern: string;
  /** The directory before the first wildcard: it must exist, or the pattern is wrong. */
  readonly base: string;
  /** The segments after `base`: a literal name, or a matcher of names. */
  readonly rest: readonly (string | RegExp)[];
}

export interface SocketMatch {
  path: string;
  /** What each wildcard segment matched, in order (the pod UID on a KubeVirt node): the
   *  socket's stable key, the same at every scan while the socket is there. */
  parts: string[];
}

export class SocketGlobError extends Error {
  override name = 'SocketGlobError';
}

const WILD = /[*?]/;

/** Checks and compiles a pattern; throws SocketGlobError naming what is wrong. */
export function compileSocketGlob(pattern: string): SocketGlob {
  const say = (why: string) => new SocketGlobError(`socket pattern ${JSON.stringify(pattern)}: ${why}`);
  if (!pattern.startsWith('/')) throw say('must be an absolute path');
  if (/[[\]{}\\]/.test(pattern)) throw say('only * and ? are wildcards here ([...], {...} and \\ are not supported)');
  const segs = pattern.split('/').slice(1);
  if (segs.some((s) => s === '')) throw say('has an empty path segment (a doubled or trailing /)');
  if (segs.some((s) => s === '.' || s === '..')) throw say('may not contain . or .. segments');
  if (segs.some((s) => s.includes('**'))) throw say('** (any depth) is not supported: one * stands for one path segment');
  if (segs[segs.length - 1] === '*') {
    // A bare * as the socket name would take every socket in the directory for libvirt's.
    throw say('the last segment must name the socket (e.g. virtqemud-sock), not be a bare *');
  }
  const first = segs.findIndex((s) => WILD.test(s));
  const cut = first === -1 ? segs.length : first;
  const base = '/' + segs.slice(0, cut).join('/');
  const rest = segs.slice(cut).map((s) => (WILD.test(s) ? segmentMatcher(s) : s));
  return { pattern, base, rest };
}

function segmentMatcher(seg: string): RegExp {
  const body = seg
    .replace(/[.+^$()|]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${body}$`, 's');
}

/**
 * Every unix socket the pattern names now, sorted by path. Throws SocketGlobError when the
 * pattern's fixed base directory cannot be read (a wrong pattern, or the host path not mounted
 * into the container): saying "no sockets" then would look like an idle host. Directories
 * below it that are missing or unreadable are simply not matched (a pod without the volume, a
 * pod being torn down).
 */
export async function matchSockets(glob: SocketGlob): Promise<SocketMatch[]> {
  if (glob.rest.length === 0) return (await isSocket(glob.base)) ? [{ path: glob.base, parts: [] }] : [];
  let names: string[];
  try {
    names = await readdir(glob.base);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    const why =
      code === 'ENOENT' ? 'does not exist' : code === 'ENOTDIR' ? 'is not a directory' : code === 'EACCES' ? 'is not readable' : (err as Error).message;
    throw new SocketGlobError(`${glob.base} (the fixed part of socket pattern ${glob.pattern}) ${why}: no libvirt socket can be found until it does`);
  }
  const out: SocketMatch[] = [];
  await walk(glob.base, glob.rest, [], out, names);
  out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return out;
}

async function walk(dir: string, rest: readonly (string | RegExp)[], parts: string[], out: SocketMatch[], listed?: string[]): Promise<void> {
  const at = rest.findIndex((s) => typeof s !== 'string');
  if (at === -1) {
    const path = join(dir, ...(rest as string[]));
    if (await isSocket(path)) out.push({ path, parts });
    return;
  }
  const parent = join(dir, ...(rest.slice(0, at) as string[]));
  const re = rest[at] as RegExp;
  let names = at === 0 ? listed : undefined;
  if (!names) {
    try {
      names = await readdir(parent);
    } catch {
      return;
    }
  }
  const after = rest.slice(at + 1);
  await Promise.all(names.filter((n) => re.test(n)).map((n) => walk(join(parent, n), after, [...parts, n], out)));
}

async function isSocket(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isSocket();
  } catch {
    return false;
  }
}
