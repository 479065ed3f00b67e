// Which cgroup a process belongs to, as an operator names it: a systemd service, a container
// (Docker, containerd, CRI-O, Podman, LXC, a Kubernetes pod), a libvirt VM, a login session.
// Used to group per-process counters (ksm status) by what runs the processes.
import { parseProcCgroup } from './cgroup.js';

export type CgroupKind = 'service' | 'container' | 'pod' | 'vm' | 'session' | 'slice' | 'root' | 'cgroup';

export interface CgroupName {
  /** The cgroup's path in its hierarchy ('/system.slice/nginx.service'). */
  path: string;
  kind: CgroupKind;
  /** Short name: the unit, the container's runtime and id, the VM's name. */
  name: string;
}

/**
 * The path that says what runs a process, from a /proc/PID/cgroup text: the v2 path; on a
 * hybrid host whose v2 tree is empty ('/'), the v1 memory, then name=systemd, then pids
 * hierarchy's path (container runtimes place processes in every v1 hierarchy they use).
 */
export function processCgroupPath(text: string): string {
  const lines = parseProcCgroup(text);
  const v2 = lines.find((l) => l.id === 0 && l.controllers.length === 0)?.path;
  if (v2 !== undefined && (v2 !== '/' || lines.length === 1)) return v2;
  for (const c of ['memory', 'name=systemd', 'pids']) {
    const l = lines.find((x) => x.controllers.includes(c));
    if (l) return l.path;
  }
  return v2 ?? lines[0]?.path ?? '/';
}

/** systemd's unit-name escapes (\x2d for '-' in a machine name). */
const unescapeUnit = (s: string): string => s.replace(/\\x([0-9a-fA-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));

const RUNTIME_SCOPE = /^(docker|cri-containerd|crio|libpod|podman)-([0-9a-f]{12,64})\.scope$/;

export function describeCgroup(path: string): CgroupName {
  const parts = path.split('/').filter((p) => p !== '');
  const last = parts[parts.length - 1];
  if (last === undefined) return { path: '/', kind: 'root', name: 'root cgroup' };
  // Runtimes may nest the payload one level down (podman's /container).
  const runtime = [...parts]
    .reverse()
    .map((p) => RUNTIME_SCOPE.exec(p))
    .find((m) => m !== null);
  const kube = parts.find((p) => /^kubepods/.test(p));
  if (kube) {
    const pod = parts.map((p) => /pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})/.exec(p)?.[1]).find(Boolean);
    if (runtime) return { path, kind: 'container', name: `${runtime[1]} ${runtime[2]!.slice(0, 12)}${pod ? ` in pod ${pod.replace(/_/g, '-')}` : ''}` };
    if (pod) return { path, kind: 'pod', name: `pod ${pod.replace(/_/g, '-')}` };
  }
  if (runtime) return { path, kind: 'container', name: `${runtime[1]} ${runtime[2]!.slice(0, 12)}` };
  // cgroupfs drivers: /docker/<id>, /lxc/<name>, /lxc.payload.<name>
  const parent = parts[parts.length - 2];
  if ((parent === 'docker' || parent === 'libpod_parent') && /^[0-9a-f]{12,64}$/.test(last))
    return { path, kind: 'container', name: `docker ${last.slice(0, 12)}` };
  const lxc = /^lxc\.payload\.(.+)$/.exec(parts.find((p) => p.startsWith('lxc.payload.')) ?? '');
  if (lxc) return { path, kind: 'container', name: `lxc ${lxc[1]}` };
  if (parts[0] === 'lxc' && parts[1]) return { path, kind: 'container', name: `lxc ${parts[1]}` };
  // libvirt: machine-qemu\x2d3\x2dweb1.scope (systemd), or /machine/qemu-3-web1.libvirt-qemu
  const machine = parts.map((p) => /^machine-qemu\\x2d\d+\\x2d(.+)\.scope$/.exec(p)?.[1] ?? /^qemu-\d+-(.+)\.libvirt-qemu$/.exec(p)?.[1]).find(Boolean);
  if (machine) return { path, kind: 'vm', name: unescapeUnit(machine) };
  const unit = [...parts].reverse().find((p) => /\.(service|scope)$/.test(p) && !/^(init|payload)\.scope$/.test(p));
  if (unit?.endsWith('.service')) return { path, kind: 'service', name: unescapeUnit(unit) };
  if (unit && /^session-.+\.scope$/.test(unit)) return { path, kind: 'session', name: unescapeUnit(unit) };
  if (unit) return { path, kind: 'cgroup', name: unescapeUnit(unit) };
  if (last.endsWith('.slice')) return { path, kind: 'slice', name: unescapeUnit(last) };
  return { path, kind: 'cgroup', name: last };
}
