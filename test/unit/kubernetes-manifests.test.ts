// contrib/kubernetes: every file parses as YAML (python3's yaml module: ballast has no YAML
// parser among its dependencies; skipped with the reason where it is missing), and the pieces
// fit together: mounts name volumes, the host paths ballast needs are there, the config the
// DaemonSet runs is the ConfigMap's and loads with ballast's own schema, its socket pattern
// is the kubelet's pod layout, and the Service reaches the port /metrics listens on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, posix } from 'node:path';
import { parseConfigText } from '../../src/config/load.js';
import { compileSocketGlob } from '../../src/hypervisor/libvirt/socket-glob.js';
import { parseHostPort } from '../../src/api/http/listen.js';

const DIR = 'contrib/kubernetes';
const FILES = readdirSync(DIR)
  .filter((f) => f.endsWith('.yaml'))
  .sort();

// biome-ignore lint/suspicious/noExplicitAny: parsed YAML, read by the shape the manifests have (a wrong guess fails the test)
type Doc = Record<string, any>;

/** Every YAML document of every file, parsed by python3's yaml (safe_load_all); null: no parser. */
function parseAll(): { docs: Record<string, Doc[]>; why: string | null } {
  const script = 'import sys, json, yaml\nprint(json.dumps({f: list(yaml.safe_load_all(open(f))) for f in sys.argv[1:]}))';
  const r = spawnSync('python3', ['-c', script, ...FILES.map((f) => join(DIR, f))], { encoding: 'utf8' });
  if (r.error) return { docs: {}, why: `python3 not available (${r.error.message})` };
  if (r.status !== 0 && /No module named 'yaml'/.test(r.stderr)) return { docs: {}, why: "python3's yaml module is not installed" };
  assert.equal(r.status, 0, `a manifest does not parse:\n${r.stderr}`);
  const byPath = JSON.parse(r.stdout) as Record<string, Doc[]>;
  return { docs: Object.fromEntries(Object.entries(byPath).map(([p, d]) => [posix.basename(p), d.filter((x) => x !== null)])), why: null };
}

const parsed = parseAll();
const all = () => Object.values(parsed.docs).flat();
const one = (kind: string): Doc => {
  const found = all().filter((d) => d.kind === kind);
  assert.equal(found.length, 1, `one ${kind}`);
  return found[0]!;
};

test('every manifest parses, names its kind, and lives in the ballast namespace', (t) => {
  if (parsed.why) return t.skip(parsed.why);
  assert.deepEqual(Object.keys(parsed.docs).sort(), FILES);
  for (const [f, docs] of Object.entries(parsed.docs)) {
    assert.ok(docs.length > 0, `${f} has a document`);
    for (const d of docs) {
      assert.ok(d.apiVersion && d.kind, `${f}: apiVersion and kind`);
      if (d.kind === 'Kustomization') continue;
      assert.ok(d.metadata?.name, `${f}: metadata.name`);
      if (d.kind !== 'Namespace') assert.equal(d.metadata.namespace, 'ballast', `${f}: ${d.kind} in the ballast namespace`);
    }
  }
  assert.deepEqual(
    one('Kustomization').resources.slice().sort(),
    FILES.filter((f) => f !== 'kustomization.yaml'),
  );
});

test('the DaemonSet mounts what ballast reads and writes on a KubeVirt node', (t) => {
  if (parsed.why) return t.skip(parsed.why);
  const pod = one('DaemonSet').spec.template.spec;
  assert.equal(pod.hostPID, true);
  const c = pod.containers[0];
  assert.equal(c.securityContext.privileged, true, 'sysfs is read-only in an unprivileged container');
  const volumes = new Map<string, Doc>(pod.volumes.map((v: Doc) => [v.name, v]));
  for (const m of c.volumeMounts) assert.ok(volumes.has(m.name), `mount ${m.name} names a volume`);
  const hostMounts = new Map<string, Doc>(
    c.volumeMounts.filter((m: Doc) => volumes.get(m.name)!.hostPath).map((m: Doc) => [volumes.get(m.name)!.hostPath.path, m]),
  );
  for (const p of ['/var/lib/kubelet/pods', '/sys/kernel/mm/ksm', '/sys/fs/cgroup']) {
    assert.ok(hostMounts.has(p), `host path ${p}`);
    assert.equal(hostMounts.get(p)!.mountPath, p, `${p} at the same path inside, so paths in the config are the host's`);
  }
  assert.notEqual(hostMounts.get('/sys/kernel/mm/ksm')!.readOnly, true, 'KSM knobs are written');
  assert.equal(hostMounts.get('/var/lib/kubelet/pods')!.mountPropagation, 'HostToContainer');
  // The selector and the template agree, or the DaemonSet is refused.
  const ds = one('DaemonSet');
  for (const [k, v] of Object.entries(ds.spec.selector.matchLabels)) assert.equal(ds.spec.template.metadata.labels[k], v);
  assert.equal(volumes.get('tokens')!.secret.defaultMode, 0o400, 'token files only the owner reads');
});

test("the config the DaemonSet runs is the ConfigMap's, and ballast loads it", (t) => {
  if (parsed.why) return t.skip(parsed.why);
  const ds = one('DaemonSet');
  const pod = ds.spec.template.spec;
  const c = pod.containers[0];
  const configPath: string = c.args[c.args.indexOf('--config') + 1];
  const cfgMount = c.volumeMounts.find((m: Doc) => configPath.startsWith(m.mountPath + '/'));
  const cfgVolume = pod.volumes.find((v: Doc) => v.name === cfgMount.name);
  const cm = one('ConfigMap');
  assert.equal(cfgVolume.configMap.name, cm.metadata.name);
  const text: string = cm.data[posix.basename(configPath)];
  assert.ok(text, `the ConfigMap has ${posix.basename(configPath)}`);
  const cfg = parseConfigText(text, 'configmap.yaml');
  assert.equal(cfg.hypervisor.driver, 'libvirt');
  const glob = compileSocketGlob(cfg.hypervisor.socket_glob);
  assert.equal(glob.base, '/var/lib/kubelet/pods', 'the pattern starts at the mounted kubelet directory');
  assert.deepEqual(
    glob.rest.map((s) => (typeof s === 'string' ? s : 'WILD')),
    ['WILD', 'volumes', 'kubernetes.io~empty-dir', 'libvirt-runtime', 'virtqemud-sock'],
    "one wildcard for the pod UID, then KubeVirt's libvirt-runtime emptyDir",
  );
  // What KubeVirt and the kubelet own stays off.
  assert.equal(cfg.vmem.enabled, false);
  assert.equal(cfg.cgroup.enabled, false);
  assert.equal(cfg.cputune.enabled, false);
  // The read token comes from the mounted Secret; /metrics listens where the Service points.
  const tokenMount = c.volumeMounts.find((m: Doc) => cfg.api.read_token_file.startsWith(m.mountPath + '/'));
  assert.ok(tokenMount && pod.volumes.find((v: Doc) => v.name === tokenMount.name).secret, 'the read token file is in the Secret volume');
  const port = parseHostPort(cfg.metrics.listen, 'metrics.listen').port;
  const named = c.ports.find((p: Doc) => p.containerPort === port);
  assert.ok(named, `the container exposes ${port}`);
  const svc = one('Service');
  assert.equal(svc.spec.ports[0].targetPort, named.name);
  for (const [k, v] of Object.entries(svc.spec.selector)) assert.equal(ds.spec.template.metadata.labels[k], v, `Service selector ${k}`);
  assert.ok(c.livenessProbe.exec.command.includes(cfg.api.socket), 'the probe asks the API socket the config opens');
});
