// `npm run package`: builds ballast_<version>_all.deb from this checkout with dpkg-deb, without
// the network. The program goes under /usr/lib/ballast (a fresh compile of src/, so a stale
// dist/ never ships), its production dependencies are the lockfile's non-dev entries copied
// from node_modules/, the config and the default policy are conffiles under /etc/ballast.
//
//   node scripts/package-deb.mjs [--out DIR] [--keep-staging]
//
// Prints the path of the .deb. Maintainer: $DEB_MAINTAINER, or DEBFULLNAME <DEBEMAIL>, or a
// default. Timestamps come from the last commit (SOURCE_DATE_EPOCH), so two builds of one
// commit give the same package.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const PREFIX = 'usr/lib/ballast';
const DEFAULT_MAINTAINER = 'ballast maintainers <maintainers@ballast.invalid>';
/** The policy directory a package installs (conffiles), in the order ballast runs them. */
const DEFAULT_POLICY_DIR = ['default.policy', 'vmem.policy'];
// Licenses Debian ships in /usr/share/common-licenses: referenced, not copied.
const COMMON_LICENSES = new Set(['Apache-2.0', 'GPL-2', 'GPL-3', 'LGPL-2.1', 'LGPL-3', 'MPL-2.0', 'CC0-1.0']);
// What of a dependency is not program: documentation (its license text goes into the copyright
// file instead), examples, and dotfiles (.npmignore and the like).
const DOC_FILE = /^(readme|changelog|history|license|licence|copying|authors|contributing)(\.|$)|\.md$/i;
const NOT_PROGRAM = (name, path) =>
  name === 'node_modules' || name.startsWith('.') || /^examples?(\.|$)/i.test(name) || (DOC_FILE.test(name) && statSync(path).isFile());

function fail(msg) {
  console.error(`package-deb: ${msg}`);
  process.exit(1);
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...opts });
  if (r.error) fail(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) fail(`${cmd} ${args.join(' ')} exited ${r.status}\n${r.stdout ?? ''}${r.stderr ?? ''}`);
  return r.stdout;
}

function parseArgs(argv) {
  const opts = { out: ROOT, keepStaging: false };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--out') {
      if (!argv[i + 1]) fail('--out needs a directory');
      opts.out = resolve(argv[++i]);
    } else if (argv[i] === '--keep-staging') opts.keepStaging = true;
    else fail(`unknown argument "${argv[i]}" (usage: package-deb.mjs [--out DIR] [--keep-staging])`);
  }
  return opts;
}

/** The packages `npm ci --omit=dev` would install, from package-lock.json (lockfile v2/v3). */
function productionPackages(lock) {
  if (!lock.packages) fail('package-lock.json has no "packages" (lockfile v1?): run npm install with npm 7 or later');
  return Object.entries(lock.packages)
    .filter(([path, p]) => path !== '' && !p.dev && !p.link)
    .map(([path, p]) => ({ path, optional: Boolean(p.optional), license: p.license ?? null }));
}

function copyTree(src, dst, skip) {
  const st = lstatSync(src);
  if (st.isSymbolicLink()) return; // npm's .bin links: nothing under /usr/lib/ballast runs them
  if (st.isDirectory()) {
    mkdirSync(dst, { recursive: true });
    for (const name of readdirSync(src)) if (!skip(name, join(src, name))) copyTree(join(src, name), join(dst, name), skip);
    return;
  }
  copyFileSync(src, dst);
}

/** Debian's permissions: root-owned (dpkg-deb --root-owner-group), 0755 dirs and scripts, 0644 the rest. */
function normaliseModes(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = lstatSync(p);
    if (st.isSymbolicLink()) continue;
    if (st.isDirectory()) {
      chmodSync(p, 0o755);
      normaliseModes(p);
    } else {
      const head = readFileSync(p).subarray(0, 2).toString();
      chmodSync(p, head === '#!' ? 0o755 : 0o644);
    }
  }
}

function walkFiles(dir, out = []) {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    const st = lstatSync(p);
    if (st.isDirectory()) walkFiles(p, out);
    else out.push(p);
  }
  return out;
}

/** dpkg's Installed-Size: KiB, each file rounded up, one per directory and symlink. */
function installedSizeKib(dir) {
  let kib = 0;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = lstatSync(p);
    if (st.isDirectory()) kib += 1 + installedSizeKib(p);
    else if (st.isSymbolicLink()) kib += 1;
    else kib += Math.ceil(st.size / 1024);
  }
  return kib;
}

const indent = (text) =>
  text
    .replace(/\s+$/, '')
    .split('\n')
    .map((l) => (l.trim() === '' ? ' .' : ` ${l.replace(/\s+$/, '')}`))
    .join('\n');

/** debian/copyright (machine-readable format 1.0): ballast, then each bundled dependency. */
function copyrightFile(pkg, year, deps) {
  const parts = [
    [
      'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/',
      'Upstream-Name: ballast',
      'Comment: The program under /usr/lib/ballast bundles its production npm dependencies',
      ' (/usr/lib/ballast/node_modules), each listed below with its license.',
    ].join('\n'),
    [`Files: *`, `Copyright: ${year} the ballast authors`, `License: ${pkg.license}`].join('\n'),
  ];
  for (const d of deps) {
    const dir = join(ROOT, d.path);
    const meta = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    const spdx = meta.license ?? d.license ?? 'unknown';
    const licenseFile = readdirSync(dir).find((f) => /^(license|licence|copying)(\.|$)/i.test(f));
    const text = licenseFile ? readFileSync(join(dir, licenseFile), 'utf8') : null;
    const holders = text ? text.split('\n').filter((l) => /^\s*copyright\b/i.test(l) && /\d{4}|\(c\)|©/i.test(l)) : [];
    const author = typeof meta.author === 'string' ? meta.author : meta.author?.name;
    const copyright = holders.length > 0 ? holders.map((l) => l.trim()).join('\n ') : `the authors of ${meta.name}${author ? ` (${author})` : ''}`;
    let license = `License: ${spdx}`;
    if (COMMON_LICENSES.has(spdx)) license += `\n On Debian systems the full text is in /usr/share/common-licenses/${spdx}.`;
    else if (text) license += `\n${indent(text)}`;
    else license += `\n ${meta.name} ships no license file; its package.json names ${spdx}.`;
    parts.push([`Files: ${PREFIX}/${d.path}/*`, `Copyright: ${copyright}`, license].join('\n'));
  }
  parts.push(
    COMMON_LICENSES.has(pkg.license)
      ? `License: ${pkg.license}\n On Debian systems the full text is in /usr/share/common-licenses/${pkg.license}.`
      : fail(`package.json license "${pkg.license}" is not one of Debian's common licenses: add its text here`),
  );
  return parts.join('\n\n') + '\n';
}

function gitOut(args) {
  const r = spawnSync('git', args, { cwd: ROOT, encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  const version = pkg.version;
  // Debian's upstream_version: starts with a digit; letters, digits and . + ~ (no hyphen: a
  // hyphen would start a Debian revision, and this package is its own upstream).
  if (!/^\d[A-Za-z0-9.+~]*$/.test(version)) fail(`package.json version "${version}" is not a valid Debian version without revision`);
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8'));
  const deps = [];
  for (const d of productionPackages(lock)) {
    if (existsSync(join(ROOT, d.path, 'package.json'))) deps.push(d);
    // An optional dependency npm left out on this platform is fine; anything else is not.
    else if (!d.optional) fail(`${d.path} is a production dependency in package-lock.json but is not installed: run npm ci`);
  }
  const maintainer =
    process.env.DEB_MAINTAINER || (process.env.DEBEMAIL ? `${process.env.DEBFULLNAME || 'ballast maintainers'} <${process.env.DEBEMAIL}>` : DEFAULT_MAINTAINER);
  const epoch = Number(process.env.SOURCE_DATE_EPOCH || gitOut(['log', '-1', '--format=%ct']) || Math.floor(Date.now() / 1000));
  const commit = gitOut(['rev-parse', '--short', 'HEAD']);
  const date = new Date(epoch * 1000);

  const stage = mkdtempSync(join(tmpdir(), 'ballast-deb-'));
  try {
    const lib = join(stage, PREFIX);
    mkdirSync(lib, { recursive: true });
    // A fresh compile into the package (no source maps: the sources are not shipped).
    run(join(ROOT, 'node_modules/.bin/tsc'), ['-p', join(ROOT, 'tsconfig.build.json'), '--outDir', join(lib, 'dist'), '--sourceMap', 'false'], {
      cwd: ROOT,
    });
    for (const dir of ['bin', 'web', 'policies', 'scenarios']) copyTree(join(ROOT, dir), join(lib, dir), () => false);
    // "type": "module" makes Node load dist/ as ESM; the rest of package.json is harmless.
    const { devDependencies: _dev, scripts: _scripts, ...runtimePkg } = pkg;
    writeFileSync(join(lib, 'package.json'), JSON.stringify(runtimePkg, null, 2) + '\n');
    for (const d of deps) {
      copyTree(join(ROOT, d.path), join(lib, d.path), NOT_PROGRAM);
    }

    mkdirSync(join(stage, 'usr/bin'), { recursive: true });
    symlinkSync(`../lib/ballast/bin/ballast.js`, join(stage, 'usr/bin/ballast'));
    mkdirSync(join(stage, 'usr/lib/systemd/system'), { recursive: true });
    copyFileSync(join(ROOT, 'contrib/ballast.service'), join(stage, 'usr/lib/systemd/system/ballast.service'));

    // The config (every key with its default: the libvirt driver, policies from
    // /etc/ballast/policies, the API on /run/ballast/api.sock) and the policies it runs are the
    // operator's to edit, so conffiles. Those policies give each kind of memory to its
    // mechanism: default.policy (balloon and KSM, the one file a MOM policy setting names, so
    // it stays MOM-runnable) and, after it in name order, vmem.policy (virtio-mem, ballast's
    // own; it does nothing for guests without a device). Free page reporting needs no policy:
    // the guard leaves what a reporting guest frees to it. The other shipped policies stay in
    // /usr/lib/ballast/policies.
    mkdirSync(join(stage, 'etc/ballast/policies'), { recursive: true });
    copyFileSync(join(ROOT, 'examples/ballast.toml'), join(stage, 'etc/ballast/ballast.toml'));
    const conffiles = ['/etc/ballast/ballast.toml'];
    for (const name of DEFAULT_POLICY_DIR) {
      copyFileSync(join(ROOT, 'policies', name), join(stage, 'etc/ballast/policies', name));
      conffiles.push(`/etc/ballast/policies/${name}`);
    }

    const doc = join(stage, 'usr/share/doc/ballast');
    mkdirSync(join(doc, 'docs'), { recursive: true });
    copyFileSync(join(ROOT, 'README.md'), join(doc, 'README.md'));
    for (const f of readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md'))) copyFileSync(join(ROOT, 'docs', f), join(doc, 'docs', f));
    writeFileSync(join(doc, 'copyright'), copyrightFile(pkg, date.getUTCFullYear(), deps));
    const changelog = [
      `ballast (${version}) unstable; urgency=medium`,
      '',
      `  * Built from the ballast checkout${commit ? ` at commit ${commit}` : ''} by npm run package.`,
      '',
      ` -- ${maintainer}  ${date.toUTCString().replace(/^(\w+), (\d+) (\w+) (\d+) ([\d:]+) GMT$/, '$1, $2 $3 $4 $5 +0000')}`,
      '',
    ].join('\n');
    // ballast is its own upstream (a native package): its Debian changelog is changelog.gz.
    writeFileSync(join(doc, 'changelog.gz'), gzipSync(changelog, { level: 9 }).fill(0, 4, 8)); // no mtime in the gzip header
    if (existsSync(join(ROOT, 'contrib/debian/lintian-overrides'))) {
      mkdirSync(join(stage, 'usr/share/lintian/overrides'), { recursive: true });
      copyFileSync(join(ROOT, 'contrib/debian/lintian-overrides'), join(stage, 'usr/share/lintian/overrides/ballast'));
    }

    const man = join(stage, 'usr/share/man/man1');
    mkdirSync(man, { recursive: true });
    writeFileSync(join(man, 'ballast.1.gz'), gzipSync(readFileSync(join(ROOT, 'contrib/ballast.1')), { level: 9 }).fill(0, 4, 8));

    normaliseModes(stage);
    chmodSync(stage, 0o755);

    const control = join(stage, 'DEBIAN');
    mkdirSync(control);
    const md5 = walkFiles(stage)
      .filter((p) => !p.startsWith(control) && !lstatSync(p).isSymbolicLink() && !conffiles.includes(`/${relative(stage, p)}`))
      .map((p) => `${createHash('md5').update(readFileSync(p)).digest('hex')}  ${relative(stage, p)}`);
    writeFileSync(join(control, 'md5sums'), md5.join('\n') + '\n');
    writeFileSync(join(control, 'conffiles'), conffiles.join('\n') + '\n');
    for (const script of ['postinst', 'prerm', 'postrm']) {
      if (!existsSync(join(ROOT, 'contrib/debian', script))) continue;
      copyFileSync(join(ROOT, 'contrib/debian', script), join(control, script));
      chmodSync(join(control, script), 0o755);
    }
    writeFileSync(
      join(control, 'control'),
      [
        'Package: ballast',
        `Version: ${version}`,
        'Architecture: all',
        `Maintainer: ${maintainer}`,
        `Installed-Size: ${installedSizeKib(stage) - installedSizeKib(control) - 1}`,
        'Depends: nodejs (>= 20)',
        // Not Recommends: a QMP host (bare QEMU, Proxmox VE) has no use for libvirt.
        'Suggests: libvirt-daemon-system, qemu-system-x86',
        'Section: admin',
        'Priority: optional',
        'Description: memory overcommitment manager for KVM hosts',
        ' ballast watches a KVM host and its virtual machines (host memory, swap,',
        ' pressure stall information, KSM; each guest balloon and in-guest memory',
        ' statistics), evaluates an operator policy every few seconds and acts: it',
        ' inflates and deflates virtio balloons, tunes kernel samepage merging and sets',
        ' cgroup memory limits, so more guests fit on a host without swapping.',
        ' .',
        ' Policies are written in the language of oVirt MOM, and MOM policies run',
        ' unchanged. The daemon talks to libvirtd over its socket or to QEMU over QMP.',
        ' The service is installed but not enabled: edit /etc/ballast/ballast.toml, then',
        ' systemctl enable --now ballast.',
        '',
      ].join('\n'),
    );
    chmodSync(join(control, 'control'), 0o644);
    chmodSync(join(control, 'md5sums'), 0o644);
    chmodSync(join(control, 'conffiles'), 0o644);

    mkdirSync(opts.out, { recursive: true });
    const deb = join(opts.out, `ballast_${version}_all.deb`);
    run('dpkg-deb', ['--root-owner-group', '-Zxz', '--build', stage, deb], { env: { ...process.env, SOURCE_DATE_EPOCH: String(epoch) } });
    console.log(deb);
  } finally {
    if (opts.keepStaging) console.error(`package-deb: staging kept in ${stage}`);
    else rmSync(stage, { recursive: true, force: true });
  }
}

main();
