// Builds the lab's guest image from Debian packages: Debian's cloud kernel (downloaded and
// unpacked, never installed on the host), an initramfs with static busybox, the virtio balloon
// modules, the init script, the static workload and, when practical, the QEMU guest agent.
// Everything lands in lab/build/ and is rebuilt only when a hash of the inputs changes.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync, copyFileSync, realpathSync } from 'node:fs';
import { basename, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { BUILD_DIR, LAB_DIR, REPO_ROOT } from './paths.js';
import { run, runOk, withLockFile } from './proc.js';
import { newcArchive, type CpioEntry } from './cpio.js';

/** Modules for the balloon, in the order they must be inserted. */
export const BALLOON_MODULES = ['virtio_ring', 'virtio', 'virtio_pci_legacy_dev', 'virtio_pci_modern_dev', 'virtio_pci', 'virtio_balloon'];
/** Extra module for the guest agent's virtio-serial port (inserted after the balloon chain). */
const AGENT_MODULES = ['virtio_console'];
/** The block driver for a guest's page-cache disk (a file the guest reads to fill its cache). */
const DISK_MODULES = ['virtio_blk'];
/** virtio-mem: memory plugged and unplugged in blocks (the guest onlines it movable: memhp_default_state). */
export const VMEM_MODULES = ['virtio_mem'];

const KERNEL_META_PKG = 'linux-image-cloud-amd64';
const AGENT_PKG = 'qemu-guest-agent';
const BUSYBOX = '/bin/busybox';

export interface LabInputs {
  kernelPackage: string;
  kernelVersion: string;
  busyboxVersion: string;
  gccVersion: string;
  libcDevVersion: string;
  /** null when the guest agent is left out (reason in guestAgentSkipped). */
  guestAgentVersion: string | null;
  guestAgentLibs: Record<string, string>;
  files: Record<string, string>;
}

export interface LabManifest {
  hash: string;
  inputs: LabInputs;
  /** apt/dpkg fingerprint under which inputs were resolved (see aptStamp). */
  aptStamp: string;
  kernelRelease: string;
  kernel: string;
  initrd: string;
  workload: string;
  modules: { name: string; kind: 'file' | 'builtin' }[];
  guestAgent: boolean;
  guestAgentSkipped?: string;
  initrdBytes: number;
  buildMs: number;
  builtAt: string;
}

export interface LabBuild {
  dir: string;
  kernel: string;
  initrd: string;
  manifest: LabManifest;
  /** False when the cached build matched the inputs and nothing was rebuilt. */
  rebuilt: boolean;
  ms: number;
}

const progress = (msg: string) => process.stderr.write(`lab build: ${msg}\n`);

const sha256 = (data: string | Uint8Array) => createHash('sha256').update(data).digest('hex');

/** Files whose contents define the image (besides package versions). */
function inputFiles(): string[] {
  return [join(LAB_DIR, 'workload.c'), join(LAB_DIR, 'init.sh'), join(REPO_ROOT, 'src/lab/build.ts'), join(REPO_ROOT, 'src/lab/cpio.ts')];
}

/** Candidate records of several packages in one apt-cache call (each call costs ~0.5 s):
 *  package -> field -> value. Packages apt does not know are absent. */
async function aptShow(pkgs: string[]): Promise<Map<string, Record<string, string>>> {
  const out = new Map<string, Record<string, string>>();
  // apt-cache fails as a whole when one package is unknown: ask one by one only then.
  const r = await run('apt-cache', ['show', '--no-all-versions', ...pkgs]);
  if (r.code !== 0 && pkgs.length > 1) {
    for (const p of pkgs) for (const [k, v] of await aptShow([p])) out.set(k, v);
    return out;
  }
  if (r.code !== 0) return out;
  for (const para of r.stdout.split(/\n\n+/)) {
    const fields: Record<string, string> = {};
    for (const m of para.matchAll(/^([A-Za-z-]+): (.*)$/gm)) fields[m[1]] = m[2].trim();
    if (fields.Package && !out.has(fields.Package)) out.set(fields.Package, fields);
  }
  return out;
}

async function installedVersion(pkg: string): Promise<string | null> {
  // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format fields
  const r = await run('dpkg-query', ['-W', '-f=${Status} ${Version}', pkg]);
  const m = r.stdout.match(/install ok installed (\S+)/);
  return r.code === 0 && m ? m[1] : null;
}

/** Package names from a Debian Depends field ("a (>= 1), b | c" -> [a, b]). */
export function dependsNames(field: string): string[] {
  return field
    .split(',')
    .map((alt) => alt.split('|')[0].trim().split(/\s|\(/)[0].replace(/:any$/, ''))
    .filter(Boolean);
}

/**
 * A fingerprint of apt's package lists and dpkg's database: while it stays the same, package
 * versions resolved earlier still hold (apt-cache takes about half a second per call here).
 */
export function aptStamp(): string {
  const h = createHash('sha256');
  for (const dir of ['/var/lib/apt/lists']) {
    let names: string[] = [];
    try {
      names = readdirSync(dir).sort();
    } catch {
      /* no lists at all: the stamp still differs from one taken with lists */
    }
    for (const n of names) {
      try {
        const st = statSync(join(dir, n));
        h.update(`${n} ${st.size} ${st.mtimeMs}\n`);
      } catch {
        /* vanished meanwhile */
      }
    }
  }
  try {
    const st = statSync('/var/lib/dpkg/status');
    h.update(`status ${st.size} ${st.mtimeMs}\n`);
  } catch {
    h.update('no dpkg status');
  }
  return h.digest('hex');
}

function fileHashes(): Record<string, string> {
  const files: Record<string, string> = {};
  for (const f of inputFiles()) files[f.slice(REPO_ROOT.length + 1)] = sha256(readFileSync(f));
  return files;
}

/**
 * Reads the versions and file hashes the image depends on. Package versions come from apt and
 * dpkg, unless `previous` was resolved under the same apt stamp (then they are reused).
 */
export async function resolveInputs(previous?: { inputs: LabInputs; aptStamp?: string }, stamp = aptStamp()): Promise<LabInputs> {
  if (previous && previous.aptStamp === stamp) {
    return { ...previous.inputs, files: fileHashes() };
  }
  const first = await aptShow([KERNEL_META_PKG, AGENT_PKG]);
  const depends = first.get(KERNEL_META_PKG)?.Depends;
  if (!depends) throw new Error(`apt knows no ${KERNEL_META_PKG}: run lab/install-deps.sh (it runs apt-get update)`);
  const kernelPackage = dependsNames(depends).find((p) => p.startsWith('linux-image-'));
  if (!kernelPackage) throw new Error(`${KERNEL_META_PKG} depends on no linux-image-* package: ${depends}`);
  const kernelVersion = (await aptShow([kernelPackage])).get(kernelPackage)?.Version;
  if (!kernelVersion) throw new Error(`apt has no version of ${kernelPackage}`);
  const busyboxVersion = await installedVersion('busybox-static');
  if (!busyboxVersion || !existsSync(BUSYBOX)) throw new Error('busybox-static is not installed: run lab/install-deps.sh');
  const gcc = await run('gcc', ['-dumpfullversion']).catch(() => null);
  if (gcc?.code !== 0) throw new Error('gcc is not installed: run lab/install-deps.sh');
  const libcDevVersion = await installedVersion('libc6-dev');
  if (!libcDevVersion) throw new Error('libc6-dev is not installed (needed for gcc -static): run lab/install-deps.sh');
  const guestAgentVersion = first.get(AGENT_PKG)?.Version ?? null;
  const guestAgentLibs: Record<string, string> = {};
  if (guestAgentVersion) {
    // The agent is dynamically linked; its libraries come from the host's installed packages.
    for (const dep of dependsNames(first.get(AGENT_PKG)?.Depends ?? '')) {
      guestAgentLibs[dep] = (await installedVersion(dep)) ?? 'missing';
    }
  }
  const files = fileHashes();
  return { kernelPackage, kernelVersion, busyboxVersion, gccVersion: gcc.stdout.trim(), libcDevVersion, guestAgentVersion, guestAgentLibs, files };
}

export function inputsHash(inputs: LabInputs): string {
  return sha256(JSON.stringify(inputs));
}

function readManifest(dir: string): LabManifest | null {
  try {
    const m = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as LabManifest;
    return existsSync(m.kernel) && existsSync(m.initrd) ? m : null;
  } catch {
    return null;
  }
}

/** The manifest of the current build, if there is one (no checks of freshness). */
export function currentBuild(dir = BUILD_DIR): LabManifest | null {
  return readManifest(dir);
}

async function download(pkg: string, version: string, debDir: string): Promise<string> {
  mkdirSync(debDir, { recursive: true });
  const prefix = `${pkg}_${version.replace(':', '%3a')}_`; // apt-get download escapes the epoch colon
  const have = readdirSync(debDir).find((f) => f.startsWith(prefix) && f.endsWith('.deb'));
  if (have) return join(debDir, have);
  progress(`downloading ${pkg} ${version}`);
  await runOk('apt-get', ['download', '-o', 'APT::Sandbox::User=root', `${pkg}=${version}`], { cwd: debDir, timeoutMs: 600_000 });
  const got = readdirSync(debDir).find((f) => f.startsWith(prefix) && f.endsWith('.deb'));
  if (!got) throw new Error(`apt-get download ${pkg}=${version} left no ${prefix}*.deb in ${debDir}`);
  // Older versions of the same package are of no further use.
  for (const f of readdirSync(debDir)) if (f.startsWith(`${pkg}_`) && f !== got) rmSync(join(debDir, f), { force: true });
  return join(debDir, got);
}

function findFiles(dir: string, pred: (name: string) => boolean, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) findFiles(p, pred, out);
    else if (pred(name)) out.push(p);
  }
  return out;
}

/** Module bytes, decompressing .ko.xz / .ko.zst with the xz / zstd tools. */
async function moduleBytes(path: string): Promise<Buffer> {
  if (path.endsWith('.ko')) return readFileSync(path);
  const tool = path.endsWith('.xz') ? 'xz' : path.endsWith('.zst') ? 'zstd' : path.endsWith('.gz') ? 'gzip' : null;
  if (!tool) throw new Error(`unknown module compression: ${path}`);
  return new Promise<Buffer>((resolve, reject) => {
    execFile(tool, ['-dc', path], { encoding: 'buffer', maxBuffer: 64 << 20 }, (err, stdout) =>
      err ? reject(new Error(`${tool} -dc ${path}: ${err.message}`)) : resolve(stdout),
    );
  });
}

interface KernelParts {
  release: string;
  vmlinuz: string;
  modules: { name: string; kind: 'file' | 'builtin'; bytes?: Buffer }[];
}

async function unpackKernel(deb: string, work: string, wanted: string[]): Promise<KernelParts> {
  const dir = join(work, 'kernel');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  progress(`unpacking ${basename(deb)}`);
  await runOk('dpkg-deb', ['-x', deb, dir]);
  const releases = readdirSync(join(dir, 'lib/modules'));
  if (releases.length !== 1) throw new Error(`expected one kernel release in ${deb}, found ${releases.join(', ')}`);
  const release = releases[0];
  const modDir = join(dir, 'lib/modules', release);
  const vmlinuz = join(dir, 'boot', `vmlinuz-${release}`);
  if (!existsSync(vmlinuz)) throw new Error(`${deb} has no boot/vmlinuz-${release}`);
  const builtinList = existsSync(join(modDir, 'modules.builtin')) ? readFileSync(join(modDir, 'modules.builtin'), 'utf8').split('\n') : [];
  const builtin = new Set(builtinList.map((l) => basename(l).replace(/\.ko$/, '')).filter(Boolean));
  const files = findFiles(join(modDir, 'kernel'), (n) => /\.ko(\.(xz|zst|gz))?$/.test(n));
  const byName = new Map(
    files.map((f) => [
      basename(f)
        .replace(/\.ko(\.(xz|zst|gz))?$/, '')
        .replace(/-/g, '_'),
      f,
    ]),
  );
  const modules: KernelParts['modules'] = [];
  for (const name of wanted) {
    if (builtin.has(name) || builtin.has(name.replace(/_/g, '-'))) modules.push({ name, kind: 'builtin' });
    else {
      const f = byName.get(name);
      if (!f) throw new Error(`kernel ${release} has module ${name} neither built in nor as a file`);
      modules.push({ name, kind: 'file', bytes: await moduleBytes(f) });
    }
  }
  return { release, vmlinuz, modules };
}

async function compileWorkload(work: string): Promise<string> {
  const out = join(work, 'workload');
  progress('compiling lab/workload.c (gcc -static -O2 -Werror)');
  await runOk('gcc', ['-static', '-O2', '-Wall', '-Wextra', '-Werror', '-o', out, join(LAB_DIR, 'workload.c')]);
  return out;
}

/** Unpacks the guest agent and collects the shared libraries it needs (from the host, as ldd
 *  resolves them). Returns null with a reason when that is not possible. */
async function guestAgentFiles(
  version: string,
  debDir: string,
  work: string,
): Promise<{ files: { path: string; data: Buffer; mode: number }[] } | { skipped: string }> {
  const deb = await download(AGENT_PKG, version, debDir);
  const dir = join(work, 'qga');
  rmSync(dir, { recursive: true, force: true });
  await runOk('dpkg-deb', ['-x', deb, dir]);
  const bin = join(dir, 'usr/sbin/qemu-ga');
  if (!existsSync(bin)) return { skipped: `${basename(deb)} has no usr/sbin/qemu-ga` };
  const ldd = await run('ldd', [bin]);
  if (ldd.code !== 0) return { skipped: `ldd qemu-ga failed: ${ldd.stderr.trim()}` };
  const files = [{ path: 'usr/sbin/qemu-ga', data: readFileSync(bin), mode: 0o755 }];
  for (const line of ldd.stdout.split('\n')) {
    if (/not found/.test(line)) return { skipped: `qemu-ga needs a library the host lacks: ${line.trim()}` };
    const m = line.match(/=>\s+(\/\S+)/) ?? line.match(/^\s*(\/\S+)\s+\(/);
    if (!m) continue;
    files.push({ path: m[1].replace(/^\//, ''), data: readFileSync(realpathSync(m[1])), mode: 0o755 });
  }
  return { files };
}

/** Every directory that must exist before `paths` in the archive, parents first. */
function parentDirs(paths: string[]): string[] {
  const dirs = new Set<string>();
  for (const p of paths) {
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  return [...dirs].sort((a, b) => a.split('/').length - b.split('/').length || a.localeCompare(b));
}

async function buildInto(dir: string, inputs: LabInputs, hash: string, stamp: string): Promise<LabManifest> {
  const t0 = Date.now();
  const work = join(dir, 'work');
  const debDir = join(dir, 'debs');
  mkdirSync(work, { recursive: true });
  const kernelDeb = await download(inputs.kernelPackage, inputs.kernelVersion, debDir);
  let agent: Awaited<ReturnType<typeof guestAgentFiles>> = { skipped: 'qemu-guest-agent is not in the apt lists' };
  if (inputs.guestAgentVersion) agent = await guestAgentFiles(inputs.guestAgentVersion, debDir, work);
  const agentFiles = 'files' in agent ? agent.files : [];
  const agentSkipped = 'skipped' in agent ? agent.skipped : null;
  const withAgent = agentSkipped === null;
  if (agentSkipped !== null) progress(`leaving the guest agent out: ${agentSkipped}`);
  // The balloon chain exactly in its order; the agent's port driver after it (it needs only virtio + virtio_pci).
  const wanted = [...BALLOON_MODULES, ...(withAgent ? AGENT_MODULES : []), ...DISK_MODULES, ...VMEM_MODULES];
  const kernel = await unpackKernel(kernelDeb, work, wanted);
  const workload = await compileWorkload(work);

  progress('writing the initramfs');
  const files: { path: string; data: Buffer; mode: number }[] = [
    { path: 'init', data: readFileSync(join(LAB_DIR, 'init.sh')), mode: 0o755 },
    { path: 'bin/busybox', data: readFileSync(BUSYBOX), mode: 0o755 },
    { path: 'bin/workload', data: readFileSync(workload), mode: 0o755 },
    { path: 'etc/ballast-modules', data: Buffer.from(kernel.modules.map((m) => `${m.name} ${m.kind}\n`).join('')), mode: 0o644 },
    ...kernel.modules.filter((m) => m.kind === 'file').map((m) => ({ path: `lib/modules/${m.name}.ko`, data: m.bytes!, mode: 0o644 })),
    ...agentFiles,
  ];
  const baseDirs = ['bin', 'sbin', 'dev', 'etc', 'lib', 'lib/modules', 'proc', 'sys', 'tmp', 'run', 'usr', 'usr/bin', 'usr/sbin', 'var'];
  const dirs = [...new Set([...baseDirs, ...parentDirs(files.map((f) => f.path))])].sort(
    (a, b) => a.split('/').length - b.split('/').length || a.localeCompare(b),
  );
  const entries: CpioEntry[] = [
    ...dirs.map((d): CpioEntry => ({ type: 'dir', path: d, mode: d === 'tmp' ? 0o1777 : 0o755 })),
    // The kernel opens /dev/console for init before init can mount devtmpfs.
    { type: 'chardev', path: 'dev/console', major: 5, minor: 1, mode: 0o600 },
    { type: 'chardev', path: 'dev/null', major: 1, minor: 3, mode: 0o666 },
    { type: 'symlink', path: 'var/run', target: '../run' },
    ...files.map((f): CpioEntry => ({ type: 'file', path: f.path, data: f.data, mode: f.mode })),
  ];
  const initrdData = gzipSync(newcArchive(entries), { level: 6 });

  // Write next to the final names, then rename: a guest starting meanwhile never reads half a file.
  const kernelOut = join(dir, 'vmlinuz');
  const initrdOut = join(dir, 'initramfs.cpio.gz');
  const workloadOut = join(dir, 'workload');
  copyFileSync(kernel.vmlinuz, kernelOut + '.tmp');
  renameSync(kernelOut + '.tmp', kernelOut);
  writeFileSync(initrdOut + '.tmp', initrdData);
  renameSync(initrdOut + '.tmp', initrdOut);
  copyFileSync(workload, workloadOut + '.tmp');
  renameSync(workloadOut + '.tmp', workloadOut);
  rmSync(work, { recursive: true, force: true });

  const manifest: LabManifest = {
    hash,
    inputs,
    aptStamp: stamp,
    kernelRelease: kernel.release,
    kernel: kernelOut,
    initrd: initrdOut,
    workload: workloadOut,
    modules: kernel.modules.map(({ name, kind }) => ({ name, kind })),
    guestAgent: withAgent,
    ...(agentSkipped === null ? {} : { guestAgentSkipped: agentSkipped }),
    initrdBytes: initrdData.length,
    buildMs: Date.now() - t0,
    builtAt: new Date().toISOString(),
  };
  writeFileSync(join(dir, 'manifest.json.tmp'), JSON.stringify(manifest, null, 2) + '\n');
  renameSync(join(dir, 'manifest.json.tmp'), join(dir, 'manifest.json'));
  progress(
    `done in ${manifest.buildMs} ms: kernel ${kernel.release}, initramfs ${(initrdData.length / 1048576).toFixed(1)} MiB, guest agent ${withAgent ? 'included' : 'left out'}`,
  );
  return manifest;
}

/**
 * Makes sure lab/build holds an image built from the current inputs; builds it when not.
 * Safe to call from several processes at once (one builds, the others wait and reuse).
 */
export async function ensureLabBuilt(opts: { force?: boolean; dir?: string } = {}): Promise<LabBuild> {
  const t0 = Date.now();
  const dir = opts.dir ?? BUILD_DIR;
  mkdirSync(dir, { recursive: true });
  const stamp = aptStamp();
  const inputs = await resolveInputs(readManifest(dir) ?? undefined, stamp);
  const hash = inputsHash(inputs);
  const fresh = () => {
    const m = readManifest(dir);
    return m && m.hash === hash ? m : null;
  };
  const cached = opts.force ? null : fresh();
  if (cached) return { dir, kernel: cached.kernel, initrd: cached.initrd, manifest: cached, rebuilt: false, ms: Date.now() - t0 };
  return withLockFile(join(dir, '.build.lock'), 900_000, async () => {
    const again = opts.force ? null : fresh();
    if (again) return { dir, kernel: again.kernel, initrd: again.initrd, manifest: again, rebuilt: false, ms: Date.now() - t0 };
    progress(`inputs changed (hash ${hash.slice(0, 12)}): building into ${dir}`);
    const manifest = await buildInto(dir, inputs, hash, stamp);
    return { dir, kernel: manifest.kernel, initrd: manifest.initrd, manifest, rebuilt: true, ms: Date.now() - t0 };
  });
}
