// The MOM compatibility check, rerunnable by anyone: oVirt MOM's own policy engine (from a
// checkout given with --mom; MOM's code never enters this repository) and ballast's run the
// same policies on the same snapshots, and the results are compared. See docs/compat.md.
//
//   npm run compat -- --mom /path/to/mom [--cases 64] [--random 2000] [--seed 7]
//
// Corpora: (a) MOM's example policies (doc/*.rules) alone and together, (b) ballast's
// policies/*.policy alone and together, (c) seeded random programs. Exit 1 when (a) or (b)
// differ anywhere; differences in (c) are listed (docs/compat.md names the intended ones).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..');

export function parseArgs(argv) {
  const o = { mom: null, cases: 64, random: 2000, seed: 7, help: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${a} needs a value`);
      return v;
    };
    if (a === '--help' || a === '-h') o.help = true;
    else if (a === '--mom') o.mom = next();
    else if (a === '--cases' || a === '--random' || a === '--seed') {
      const n = Number(next());
      if (!Number.isInteger(n) || n < 0) throw new UsageError(`${a} needs a whole number >= 0`);
      o[a.slice(2)] = n;
    } else throw new UsageError(`unknown argument ${a}`);
  }
  if (!o.help && !o.mom) throw new UsageError('--mom PATH (a checkout of github.com/oVirt/mom) is required');
  return o;
}

export class UsageError extends Error {}

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

/** A host (under pressure or not) and 0-5 guests with 1-10 samples, in KiB as MOM's collectors give them. */
export function snapshot(r) {
  const samples = r.int(1, 10);
  const total = r.pick([4, 16, 64]) * 1048576;
  const free = Math.floor(total * r.pick([0.02, 0.1, 0.25, 0.6]));
  const host = {
    props: { name: 'host' },
    stats: Array.from({ length: samples }, () => ({
      mem_available: total,
      mem_free: Math.max(0, free + r.int(-50000, 50000)),
      mem_unused: Math.floor(free / 2),
      swap_in: r.int(0, 3),
      swap_out: r.int(0, 3),
      anon_pages: Math.floor(total * 0.4),
      ksm_run: r.int(0, 1),
      ksm_pages_to_scan: r.pick([64, 100, 1250]),
      ksm_sleep_millisecs: 20,
      ksm_pages_shared: r.int(0, 1000),
      ksm_pages_sharing: r.int(0, 5000),
      ksm_shareable: Math.floor(total / 8),
      ksmd_cpu_usage: r.int(0, 30),
      ksm_merge_across_nodes: 1,
      cpu_count: r.pick([2, 8, 64]),
    })),
    vars: {},
  };
  const guests = Array.from({ length: r.int(0, 5) }, (_, i) => {
    const max = r.pick([1, 2, 4]) * 1048576;
    const cur = Math.floor(max * r.pick([0.5, 0.8, 1]));
    return {
      props: { name: `vm${i}`, uuid: `00000000-0000-0000-0000-00000000000${i}` },
      stats: Array.from({ length: samples }, () => {
        const unused = Math.floor(cur * r.pick([0.05, 0.3, 0.6]));
        return {
          balloon_cur: cur,
          balloon_max: max,
          balloon_min: 0,
          mem_available: cur,
          mem_unused: unused,
          mem_free: unused + r.int(0, 100000),
          swap_in: r.int(0, 2),
          swap_out: r.int(0, 2),
          major_fault: r.int(0, 50),
          minor_fault: r.int(0, 5000),
          rss: cur,
          vcpu_count: r.int(1, 4),
          vcpu_quota: -1,
          vcpu_period: 100000,
          vcpu_user_limit: r.pick([100, 50]),
        };
      }),
      vars: {},
    };
  });
  return { host, guests };
}

/** A random program over the language's forms (corpus c). */
export function program(r) {
  const num = () => r.pick([String(r.int(-5, 100)), `${r.int(0, 9)}.${r.int(0, 99)}`, '0x1f', '1e3', String(r.int(0, 1048576))]);
  const field = () => r.pick(['Host.mem_free', 'Host.mem_available', 'Host.swap_in', 'Host.ksm_pages_sharing', 'Host.cpu_count']);
  const expr = (d) => {
    if (d <= 0) return r.pick([num, field, () => 'x', () => 'nil', () => '"s"'])();
    const e = () => expr(d - 1);
    return r.pick([
      () => `(${r.pick(['+', '-', '*', '/', '<', '>', '<=', '>=', '==', '!=', 'and', 'or', 'min', 'max'])} ${e()} ${e()})`,
      () => `(not ${e()})`,
      () => `(abs ${e()})`,
      () => `(if ${e()} ${e()} ${e()})`,
      () => `(let ((y ${e()})) (+ y ${e()}))`,
      () => `(Host.StatAvg "mem_free")`,
      () => `(Host.Stat "mem_free")`,
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
        () => `(def f (a) (* a ${expr(1)})) (Host.SetVar "f" (f ${expr(1)}))`,
      ])(),
    );
  }
  return `${lines.join('\n')}\n`;
}

const close = (a, b) => a === b || Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(a), Math.abs(b));

/** Equal as JSON values, numbers compared by value (MOM's 2.0 and ballast's 2 are the same control). */
export function same(a, b) {
  if (typeof a === 'number' && typeof b === 'number') return close(a, b);
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return a === b || (Number.isNaN(a) && Number.isNaN(b));
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && same(a[k], b[k]));
}

/** Compare one MOM result with one ballast result: 'same', 'both-error', 'intended' or a reason they differ. */
export function compareResults(mom, ours) {
  const ourError = ours.errors.length > 0;
  if (mom.error && ourError) return 'both-error';
  if (mom.error) return `MOM aborted (${mom.error}), ballast did not`;
  // ballast caps the size of values and the work of one evaluation (docs/policy.md); MOM does not.
  if (ourError && /too long|budget|time limit|allocat/.test(ours.errors[0].message)) return 'intended';
  if (ourError) return `ballast reported ${ours.errors[0].message}, MOM did not`;
  if (!same(mom.host.controls, ours.host.controls))
    return `host controls: MOM ${JSON.stringify(mom.host.controls)}, ballast ${JSON.stringify(ours.host.controls)}`;
  if (!same(mom.host.vars, ours.host.vars)) return `host vars: MOM ${JSON.stringify(mom.host.vars)}, ballast ${JSON.stringify(ours.host.vars)}`;
  for (const g of mom.guests) {
    const o = ours.guests.find((x) => x.name === g.name);
    if (!o || !same(g.controls, o.controls)) return `${g.name} controls: MOM ${JSON.stringify(g.controls)}, ballast ${JSON.stringify(o?.controls)}`;
    if (!same(g.vars, o.vars)) return `${g.name} vars: MOM ${JSON.stringify(g.vars)}, ballast ${JSON.stringify(o.vars)}`;
  }
  return 'same';
}

function momEngine(momPath) {
  const child = spawn('python3', [join(here, 'mom_eval.py'), '--mom', momPath], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const waiting = [];
  lines.on('line', (l) => waiting.shift()?.(JSON.parse(l)));
  return {
    run: (policy, snapshots) =>
      new Promise((res) => {
        waiting.push(res);
        child.stdin.write(`${JSON.stringify({ policy, snapshots })}\n`);
      }),
    close: () => child.stdin.end(),
  };
}

async function main() {
  let o;
  try {
    o = parseArgs(process.argv.slice(2));
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`compat: ${e.message}\nusage: npm run compat -- --mom PATH [--cases N] [--random N] [--seed N]\n`);
    process.exit(2);
  }
  if (o.help) {
    process.stdout.write(
      "usage: npm run compat -- --mom PATH [--cases N] [--random N] [--seed N]\nRuns oVirt MOM's policy engine beside ballast's on the same snapshots (docs/compat.md).\n",
    );
    return;
  }
  const momPath = resolve(o.mom);
  if (!existsSync(join(momPath, 'mom', 'Policy', 'Parser.py'))) {
    process.stderr.write(`compat: ${momPath} is not a MOM checkout (no mom/Policy/Parser.py)\n`);
    process.exit(2);
  }
  const { compilePolicies, evaluate, toPlain } = await import('../../src/policy/index.js');
  const { parseSnapshots } = await import('../../src/policy/snapshot.js');
  const r = rng(o.seed);
  const snaps = Array.from({ length: o.cases }, () => snapshot(r));
  const text = (dir, ext) =>
    readdirSync(dir)
      .filter((f) => f.endsWith(ext))
      .sort()
      .map((f) => ({ name: f, text: readFileSync(join(dir, f), 'utf8') }));
  const momRules = text(join(momPath, 'doc'), '.rules');
  const ours = text(join(repo, 'policies'), '.policy');
  const corpora = [
    ["a: MOM's example policies", [...momRules, { name: 'all MOM rules', text: momRules.map((p) => p.text).join('\n') }], snaps],
    ["b: ballast's policies", [...ours, { name: 'all of policies/', text: ours.map((p) => p.text).join('\n') }], snaps],
    ['c: random programs', Array.from({ length: o.random }, (_, i) => ({ name: `random #${i}`, text: program(r) })), null],
  ];
  const mom = momEngine(momPath);
  const out = mkdtempSync(join(tmpdir(), 'ballast-compat-'));
  let realFailure = false;
  for (const [label, policies, fixed] of corpora) {
    const counts = { cases: 0, same: 0, 'both-error': 0, intended: 0, different: 0 };
    const examples = [];
    for (const p of policies) {
      const list = fixed ?? [snapshot(r)];
      const momResults = await mom.run(p.text, list);
      const typed = parseSnapshots(JSON.stringify(list), 'generated').snapshots;
      let compiled = null;
      let compileError = null;
      try {
        compiled = compilePolicies([{ name: p.name, text: p.text }]);
      } catch (e) {
        compileError = e.message;
      }
      typed.forEach((s, i) => {
        counts.cases++;
        const ourResult = compiled ? toPlain(evaluate(compiled, s.host, s.guests)) : { errors: [{ message: compileError }], host: {}, guests: [] };
        const verdict = compareResults(momResults[i], ourResult);
        if (verdict === 'same' || verdict === 'both-error' || verdict === 'intended') counts[verdict]++;
        else {
          counts.different++;
          if (examples.length < 3) {
            const file = join(out, `case-${label[0]}-${counts.cases}.json`);
            writeFileSync(file, JSON.stringify({ policy: p.text, snapshot: list[i] }, null, 1));
            examples.push(`  ${p.name}: ${verdict}\n    reproduce: ${file}`);
          }
        }
      });
    }
    process.stdout.write(
      `${label}: ${counts.cases} cases, ${counts.same} identical, ${counts['both-error']} both errors, ${counts.intended} intended differences (ballast's resource limits), ${counts.different} different\n`,
    );
    for (const e of examples) process.stdout.write(`${e}\n`);
    if (!label.startsWith('c') && counts.different > 0) realFailure = true;
  }
  mom.close();
  process.exit(realFailure ? 1 : 0);
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
