// The MOM compatibility check, rerunnable by anyone: oVirt MOM's own policy engine (from a
// checkout given with --mom; MOM's code never enters this repository) and ballast's run the
// same policies on the same seeded snapshots, and the controls and variables they leave are
// compared. See docs/compat.md, "Rerunning the comparison".
//
//   npm run compat -- --mom /path/to/mom [--policies FILE|DIR ...] [--cases 200]
//                     [--random-programs 2000] [--seed 7] [--no-mom-examples] [--show 3]
//
// Per policy: MOM's side is one request to one python3 process (mom_eval.py --serve) with all
// the snapshots; ballast's side is one `ballast policy eval` run (the CLI, from src/ through
// tsx) with all the snapshots as a JSON array. Random programs are evaluated in-process
// with what `policy eval` does, one fresh snapshot each.
// Exit status: 0 no difference, 1 a real difference somewhere, 2 bad arguments.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..');

export const USAGE = `usage: npm run compat -- --mom PATH [options]
Runs oVirt MOM's own policy engine (from the MOM checkout at PATH) beside ballast's on the
same seeded snapshots and compares the controls and variables (docs/compat.md).
  --mom PATH             a checkout of github.com/oVirt/mom (required)
  --policies FILE|DIR    ballast-side policies to compare, repeatable (default: policies/*.policy);
                         each alone, and all of them concatenated when more than one
  --cases N              random snapshots per policy (default 200)
  --random-programs N    random policy programs, one snapshot each (default 2000; 0: none)
  --seed N               seed of the snapshots and programs (default 7)
  --no-mom-examples      leave out MOM's own doc/*.rules
  --show N               differences shown in full per policy (default 3)
Exit status: 0 no difference, 1 a real difference, 2 bad arguments.
`;

export class UsageError extends Error {}

export function parseArgs(argv) {
  const o = { mom: null, policies: [], cases: 200, randomPrograms: 2000, seed: 7, momExamples: true, show: 3, help: false };
  const counts = { '--cases': 'cases', '--random-programs': 'randomPrograms', '--random': 'randomPrograms', '--seed': 'seed', '--show': 'show' };
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    let inline;
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq > 0) [a, inline] = [a.slice(0, eq), a.slice(eq + 1)];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined || v === '') throw new UsageError(`${a} needs a value`);
      return v;
    };
    if (a === '--help' || a === '-h') o.help = true;
    else if (a === '--mom') o.mom = value();
    else if (a === '--policies' || a === '--policy') o.policies.push(value());
    else if (a === '--no-mom-examples') o.momExamples = false;
    else if (a in counts) {
      const v = value();
      const n = Number(v);
      if (!/^\d+$/.test(v) || !Number.isSafeInteger(n)) throw new UsageError(`${a} needs a whole number >= 0, not ${JSON.stringify(v)}`);
      o[counts[a]] = n;
    } else throw new UsageError(`unknown argument ${a}`);
  }
  if (!o.help && !o.mom) throw new UsageError('--mom PATH (a checkout of github.com/oVirt/mom) is required');
  return o;
}

/** Policy files named by --policies: files as given, directories as their *.policy and *.rules files in name order. */
export function listPolicies(paths) {
  const out = [];
  for (const p of paths) {
    const full = resolve(p);
    if (!existsSync(full)) throw new UsageError(`--policies ${p}: no such file or directory`);
    if (statSync(full).isDirectory()) {
      const files = readdirSync(full)
        .filter((f) => f.endsWith('.policy') || f.endsWith('.rules'))
        .sort();
      if (files.length === 0) throw new UsageError(`--policies ${p}: no .policy or .rules files in it`);
      for (const f of files) out.push(join(full, f));
    } else out.push(full);
  }
  return out;
}

/** mulberry32: a small seeded generator, so a run can be repeated exactly. */
export function rng(seed) {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (a, b) => a + Math.floor(next() * (b - a + 1)), pick: (xs) => xs[Math.floor(next() * xs.length)] };
}

/**
 * A host (from plenty of free memory to critical) and 0-5 guests with a 1-10 sample history,
 * in KiB as MOM's collectors give them; now and then a statistic is missing or null (a guest
 * without a balloon driver), and some entities carry variables from an earlier cycle.
 */
export function snapshot(r) {
  const samples = r.int(1, 10);
  const total = r.pick([4, 16, 64, 256]) * 1048576;
  const freeShare = r.pick([0.01, 0.05, 0.1, 0.2, 0.25, 0.4, 0.6, 0.9]);
  const free = Math.floor(total * freeShare);
  const host = {
    props: { name: 'host' },
    stats: Array.from({ length: samples }, () => ({
      mem_available: total,
      mem_free: Math.max(0, free + r.int(-50000, 50000)),
      mem_unused: Math.floor(free / 2),
      swap_in: r.int(0, 3),
      swap_out: r.int(0, 3),
      swap_total: r.pick([0, 2097152]),
      swap_usage: r.int(0, 100000),
      anon_pages: Math.floor(total * 0.4),
      ksm_run: r.int(0, 1),
      ksm_pages_to_scan: r.pick([64, 100, 1250]),
      ksm_sleep_millisecs: r.pick([10, 20]),
      ksm_pages_shared: r.int(0, 1000),
      ksm_pages_sharing: r.int(0, 5000),
      ksm_shareable: Math.floor(total / r.pick([2, 8])),
      ksmd_cpu_usage: r.int(0, 30),
      ksm_merge_across_nodes: 1,
      cpu_count: r.pick([2, 8, 64]),
    })),
    vars: r.next() < 0.2 ? { ksm_run_prev: r.int(0, 1) } : {},
  };
  const guests = Array.from({ length: r.int(0, 5) }, (_, i) => {
    const max = r.pick([1, 2, 4, 8]) * 1048576;
    const cur = Math.floor(max * r.pick([0.3, 0.5, 0.8, 1]));
    const noDriver = r.next() < 0.1;
    // guest-specific.rules treats guests named kubernetes and nomad differently.
    const name = i < 2 && r.next() < 0.25 ? ['kubernetes', 'nomad'][i] : `vm${i}`;
    return {
      props: { name, uuid: `00000000-0000-0000-0000-00000000000${i}`, pid: 1000 + i },
      stats: Array.from({ length: samples }, () => {
        const unused = Math.floor(cur * r.pick([0.01, 0.05, 0.2, 0.3, 0.6]));
        const row = {
          balloon_cur: cur,
          balloon_max: max,
          balloon_min: r.pick([0, 0, Math.floor(max / 4), Math.floor(max / 2)]),
          mem_available: cur,
          mem_unused: noDriver ? null : unused,
          mem_free: noDriver ? null : unused + r.int(0, 100000),
          swap_in: r.int(0, 2),
          swap_out: r.int(0, 2),
          major_fault: r.int(0, 50),
          minor_fault: r.int(0, 5000),
          rss: cur,
          vcpu_count: r.int(1, 4),
        };
        if (r.next() < 0.05) delete row.swap_in;
        return row;
      }),
      vars: r.next() < 0.2 ? { last_target: cur } : {},
    };
  });
  return { host, guests };
}

/** A random program from a small grammar over the language's forms. */
export function program(r) {
  const num = () => r.pick([String(r.int(-5, 100)), `${r.int(0, 9)}.${r.int(0, 99)}`, '0x1f', '1e3', String(r.int(0, 1048576))]);
  const field = () => r.pick(['Host.mem_free', 'Host.mem_available', 'Host.swap_in', 'Host.ksm_pages_sharing', 'Host.cpu_count']);
  const expr = (d) => {
    if (d <= 0) return r.pick([num, num, num, field, field, () => 'x', () => 'x', () => 'nil', () => '"s"'])();
    const e = () => expr(d - 1);
    return r.pick([
      () => `(${r.pick(['+', '-', '*', '/', '<', '>', '<=', '>=', '==', '!=', 'and', 'or', 'min', 'max'])} ${e()} ${e()})`,
      () => `(not ${e()})`,
      () => `(abs ${e()})`,
      () => `(if ${e()} ${e()} ${e()})`,
      () => `(let ((y ${e()})) (+ y ${e()}))`,
      () => `(Host.StatAvg "${r.pick(['mem_free', 'swap_out', 'ksmd_cpu_usage'])}")`,
      () => `(Host.Stat "mem_free")`,
      () => `(Host.GetVar "v0")`,
      () => `(valid ${e()})`,
      () => `(null ${e()})`,
    ])();
  };
  const lines = ['(defvar x 3)'];
  for (let i = 0; i < r.int(1, 4); i++) {
    lines.push(
      r.pick([
        () => `(Host.Control "ksm_pages_to_scan" ${expr(2)})`,
        () => `(Host.SetVar "v${i}" ${expr(3)})`,
        () => `(set x ${expr(2)})`,
        () => `(with Guests guest (guest.Control "balloon_target" (max 1 (- guest.balloon_cur ${expr(2)}))))`,
        () => `(with Guests guest (guest.SetVar "u" (+ guest.mem_unused ${expr(1)})))`,
        () => `(with Guests g (if (< (g.StatAvg "swap_in") ${expr(1)}) (g.Control "balloon_target" g.balloon_max) 0))`,
        () => `(def f (a) (* a ${expr(1)})) (Host.SetVar "f" (f ${expr(1)}))`,
      ])(),
    );
  }
  return `${lines.join('\n')}\n`;
}

/** JSON as both engines write it: Python's NaN, Infinity and -Infinity become {"$float": "nan" | "inf" | "-inf"}. */
export function parseResultJson(text) {
  if (!/NaN|Infinity/.test(text)) return JSON.parse(text);
  const parts = [];
  let from = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === 'N' || c === 'I' || c === '-') {
      const word = text.startsWith('NaN', i) ? 'NaN' : text.startsWith('Infinity', i) ? 'Infinity' : text.startsWith('-Infinity', i) ? '-Infinity' : null;
      if (!word) continue;
      parts.push(text.slice(from, i), `{"$float":"${{ NaN: 'nan', Infinity: 'inf', '-Infinity': '-inf' }[word]}"}`);
      from = i + word.length;
      i = from - 1;
    }
  }
  parts.push(text.slice(from));
  return JSON.parse(parts.join(''));
}

const close = (a, b) => a === b || Math.abs(a - b) <= 1e-9 * Math.max(Math.abs(a), Math.abs(b));

/** Equal as JSON values, numbers within 1e-9 relative (MOM's 2.0 and ballast's 2 are the same control). */
export function same(a, b) {
  if (typeof a === 'number' && typeof b === 'number') return close(a, b);
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return a === b;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && same(a[k], b[k]));
}

/** ballast's limits on one evaluation (docs/policy.md), which MOM does not have. */
const LIMIT = /too long|budget|time limit|allocat/;

/**
 * One MOM result against one ballast result: 'identical', 'both-error', 'intended' (ballast
 * refused at one of its resource limits, MOM went on), or a sentence saying how they differ.
 */
export function compareResults(mom, ours) {
  const ourError = ours.errors.length > 0;
  if (mom.error && ourError) return 'both-error';
  if (mom.error) return `MOM aborted (${mom.error}), ballast did not`;
  if (ourError && LIMIT.test(ours.errors[0].message)) return 'intended';
  if (ourError) return `ballast reported "${ours.errors[0].message}", MOM did not`;
  if (!same(mom.host.controls, ours.host.controls))
    return `host controls: MOM ${JSON.stringify(mom.host.controls)}, ballast ${JSON.stringify(ours.host.controls)}`;
  if (!same(mom.host.vars, ours.host.vars)) return `host vars: MOM ${JSON.stringify(mom.host.vars)}, ballast ${JSON.stringify(ours.host.vars)}`;
  if (mom.guests.length !== ours.guests.length) return `guests: MOM ${mom.guests.length}, ballast ${ours.guests.length}`;
  for (const g of mom.guests) {
    const o = ours.guests.find((x) => x.name === g.name);
    if (!o) return `${g.name}: missing from ballast's result`;
    if (!same(g.controls, o.controls)) return `${g.name} controls: MOM ${JSON.stringify(g.controls)}, ballast ${JSON.stringify(o.controls)}`;
    if (!same(g.vars, o.vars)) return `${g.name} vars: MOM ${JSON.stringify(g.vars)}, ballast ${JSON.stringify(o.vars)}`;
  }
  return 'identical';
}

export function newCounts() {
  return { cases: 0, identical: 0, 'both-error': 0, intended: 0, different: 0 };
}

/** Counts one verdict; true when it is a real difference. */
export function tally(counts, verdict) {
  counts.cases++;
  if (verdict in counts && verdict !== 'cases') {
    counts[verdict]++;
    return false;
  }
  counts.different++;
  return true;
}

export function summaryLine(name, c) {
  const intended = c.intended ? ` (and ${c.intended} intended: ballast's resource limits)` : '';
  return `${name}: ${c.cases} cases, ${c.identical} identical, ${c['both-error']} both-error, ${c.different} different${intended}`;
}

/** MOM's side: one python3 process (mom_eval.py --serve), one request per policy with all its snapshots. */
function momEngine(momPath) {
  const child = spawn('python3', [join(here, 'mom_eval.py'), '--mom', momPath, '--serve'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const waiting = [];
  let dead = null;
  lines.on('line', (l) => waiting.shift()?.resolve(parseResultJson(l)));
  child.on('exit', (code) => {
    dead = new Error(`mom_eval.py exited with status ${code}`);
    for (const w of waiting.splice(0)) w.reject(dead);
  });
  return {
    run: (policy, snapshots, fields) =>
      new Promise((res, rej) => {
        if (dead) return rej(dead);
        waiting.push({ resolve: res, reject: rej });
        child.stdin.write(`${JSON.stringify({ policy, snapshots, fields })}\n`);
      }),
    close: () => child.stdin.end(),
  };
}

const CLI = ['--import', 'tsx', join(repo, 'src', 'cli', 'main.ts')];

/** ballast's side for a named policy: `ballast policy eval` itself, all the snapshots as one JSON array. */
function ballastCli(files, snapshotFile, count) {
  const args = [...CLI, 'policy', 'eval', '--input', snapshotFile, ...files.flatMap((f) => ['--policy', f])];
  const p = spawnSync(process.execPath, args, { cwd: repo, encoding: 'utf8', maxBuffer: 1 << 30 });
  if (p.status === 1 && !p.stdout) {
    const message = `policy refused: ${p.stderr.trim()}`;
    return Array.from({ length: count }, () => ({ errors: [{ message }], host: {}, guests: [] }));
  }
  if (p.status !== 0) throw new Error(`ballast policy eval failed (status ${p.status}): ${p.stderr}`);
  return parseResultJson(p.stdout);
}

/** What `ballast policy eval` does, in-process (for the many random programs). */
async function ballastInProcess() {
  const { compilePolicies, evaluate } = await import('../../src/policy/index.ts');
  const { parseSnapshots } = await import('../../src/policy/snapshot.ts');
  const { stringifyPyJson } = await import('../../src/policy/json.ts');
  return (text, snapshots) => {
    const { snapshots: typed } = parseSnapshots(JSON.stringify(snapshots), 'generated');
    let policy;
    try {
      policy = compilePolicies([{ name: 'random.policy', text }]);
    } catch (e) {
      return typed.map(() => ({ errors: [{ message: `policy refused: ${e.message}` }], host: {}, guests: [] }));
    }
    return typed.map((s) => {
      const r = evaluate(policy, s.host, s.guests, { rawValues: true, debug: () => {} });
      return parseResultJson(stringifyPyJson({ host: r.host, guests: r.guests, errors: r.errors }));
    });
  };
}

async function main() {
  let o;
  let ourFiles;
  try {
    o = parseArgs(process.argv.slice(2));
    if (o.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    ourFiles = listPolicies(o.policies.length ? o.policies : [join(repo, 'policies')]);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`compat: ${e.message}\n${USAGE}`);
    return 2;
  }
  const momPath = resolve(o.mom);
  if (!existsSync(join(momPath, 'mom', 'Policy', 'Parser.py'))) {
    process.stderr.write(`compat: ${momPath} is not a MOM checkout (no mom/Policy/Parser.py)\n`);
    return 2;
  }
  // The TypeScript sources are loaded through tsx, so `node scripts/mom-compare/compare.mjs` works as is.
  const { register } = await import('tsx/esm/api');
  register();
  const { HOST_FIELDS, GUEST_FIELDS } = await import('../../src/policy/entity.ts');
  // MOM's collectors declare the fields ballast knows as MOM's (POLICY-LANGUAGE.md).
  const fields = { host: [...HOST_FIELDS], guest: [...GUEST_FIELDS] };
  const gitHead = spawnSync('git', ['-C', momPath, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout?.trim();
  const out = mkdtempSync(join(tmpdir(), 'ballast-compat-'));
  writeFileSync(join(out, 'fields.json'), `${JSON.stringify(fields)}\n`);
  const r = rng(o.seed);
  const snaps = Array.from({ length: o.cases }, () => snapshot(r));
  const snapFile = join(out, 'snapshots.json');
  writeFileSync(snapFile, `${JSON.stringify(snaps)}\n`);

  const named = (files, label) => [...files.map((f) => ({ name: label(f), files: [f] }))];
  const withAll = (list, name) => (list.length > 1 ? [...list, { name, files: list.flatMap((p) => p.files) }] : list);
  const groups = [];
  if (o.momExamples) {
    const docDir = join(momPath, 'doc');
    const rules = existsSync(docDir) ? listPolicies([docDir]).filter((f) => f.endsWith('.rules')) : [];
    const policies = withAll(
      named(rules, (f) => `mom:doc/${basename(f)}`),
      'mom:doc/*.rules, concatenated',
    );
    // guest-specific.rules only redefines balloon.rules's shrink_guest; this line of ours calls it.
    const balloon = rules.find((f) => basename(f) === 'balloon.rules');
    const specific = rules.find((f) => basename(f) === 'guest-specific.rules');
    if (balloon && specific) {
      const glue = join(out, 'shrink-with-guest-specific.policy');
      writeFileSync(glue, '(with Guests guest (if (< host_free_percent pressure_threshold) (shrink_guest guest) 0))\n');
      policies.push({ name: 'mom:doc/balloon.rules + guest-specific.rules, shrinking', files: [balloon, specific, glue] });
    }
    groups.push({ label: "MOM's example policies", policies });
  }
  const rel = (f) => (f.startsWith(repo) ? relative(repo, f) : f);
  groups.push({ label: 'ballast-side policies', policies: withAll(named(ourFiles, rel), 'all of them, concatenated') });

  process.stdout.write(
    `MOM ${momPath}${gitHead ? ` (commit ${gitHead})` : ''}; seed ${o.seed}; ${o.cases} snapshots per policy; ${o.randomPrograms} random programs\n`,
  );
  const mom = momEngine(momPath);
  let different = 0;
  let shown = 0;
  const report = (name, policyFiles, policyText, snap, verdict, momResult, ourResult) => {
    if (shown >= 20) return;
    const dir = join(out, `difference-${++shown}`);
    mkdirSync(dir);
    writeFileSync(join(dir, 'snapshot.json'), `${JSON.stringify(snap, null, 1)}\n`);
    let files = policyFiles;
    if (!files) writeFileSync((files = [join(dir, 'program.policy')])[0], policyText);
    writeFileSync(join(dir, 'mom.json'), `${JSON.stringify(momResult, null, 1)}\n`);
    writeFileSync(join(dir, 'ballast.json'), `${JSON.stringify(ourResult, null, 1)}\n`);
    const q = (s) => (/^[\w./:=@-]+$/.test(s) ? s : `'${s.replaceAll("'", "'\\''")}'`);
    process.stdout.write(
      `  ${name}: ${verdict}\n` +
        `    snapshot: ${dir}/snapshot.json (results: mom.json, ballast.json)\n` +
        `    MOM:     python3 ${q(rel(join(here, 'mom_eval.py')))} --mom ${q(momPath)} --fields ${q(join(out, 'fields.json'))} --input ${q(`${dir}/snapshot.json`)} ${files.map(q).join(' ')}\n` +
        `    ballast: node --import tsx src/cli/main.ts policy eval --input ${q(`${dir}/snapshot.json`)} ${files.map((f) => `--policy ${q(f)}`).join(' ')}\n`,
    );
  };

  try {
    for (const g of groups) {
      process.stdout.write(`${g.label}:\n`);
      for (const p of g.policies) {
        const text = p.files.map((f) => readFileSync(f, 'utf8')).join('\n');
        const momResults = await mom.run(text, snaps, fields);
        const ours = ballastCli(p.files, snapFile, snaps.length);
        const counts = newCounts();
        const diffs = [];
        snaps.forEach((s, i) => {
          const verdict = compareResults(momResults[i], ours[i]);
          if (tally(counts, verdict) && diffs.length < o.show) diffs.push([s, verdict, momResults[i], ours[i]]);
        });
        different += counts.different;
        process.stdout.write(`${summaryLine(`  ${p.name}`, counts)}\n`);
        for (const [s, verdict, m, b] of diffs) report(p.name, p.files, null, s, verdict, m, b);
      }
    }
    if (o.randomPrograms > 0) {
      const run = await ballastInProcess();
      const counts = newCounts();
      const reasons = new Map();
      for (let i = 0; i < o.randomPrograms; i++) {
        const text = program(r);
        const snap = [snapshot(r)];
        const [momResult] = await mom.run(text, snap, fields);
        const [ourResult] = run(text, snap);
        const verdict = compareResults(momResult, ourResult);
        if (tally(counts, verdict)) {
          const kind = verdict.replace(/:.*/s, '');
          reasons.set(kind, (reasons.get(kind) ?? 0) + 1);
          if (counts.different <= o.show) report(`random program #${i}`, null, text, snap[0], verdict, momResult, ourResult);
        }
      }
      different += counts.different;
      process.stdout.write(`${summaryLine(`random programs (seed ${o.seed})`, counts)}\n`);
      for (const [kind, n] of reasons) process.stdout.write(`    ${n} x ${kind}\n`);
    }
  } finally {
    mom.close();
  }
  process.stdout.write(
    different > 0 ? `${different} real difference(s); reproduction files under ${out}\n` : `no difference between MOM and ballast (snapshots: ${snapFile})\n`,
  );
  return different > 0 ? 1 : 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) process.exitCode = await main();
