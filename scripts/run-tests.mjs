// Runs node's test runner over the TypeScript test files of the chosen suites (through tsx).
// Node 20's runner does not find .ts files by itself, hence this list.
//
// Besides the usual reporter, a TAP copy of the run goes to a file so that this script can
// count what passed, failed and skipped: it appends a line per suite to
// $BALLAST_TEST_SUMMARY (when set) for .ci/run's closing summary, and with
// BALLAST_FAIL_ON_SKIP=1 it fails a lab run in which any test skipped (in CI a lab test that
// skips has proven nothing; a unit test may skip where the kernel lacks a feature).
import { appendFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const suites = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const passThrough = process.argv.slice(2).filter((a) => a.startsWith('-'));
if (suites.length === 0) suites.push('unit');

function find(dir) {
  let out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out = out.concat(find(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

/** The counts of the closing lines of a TAP run ("# pass 12"). */
export function tapCounts(tap) {
  const counts = {};
  for (const m of tap.matchAll(/^# (tests|pass|fail|cancelled|skipped|todo) (\d+)$/gm)) counts[m[1]] = Number(m[2]);
  return counts;
}

/** Names of the tests that skipped, with their reasons ("ok 3 - name # SKIP why"). */
export function skippedTests(tap) {
  return [...tap.matchAll(/^\s*ok \d+ - (.*) # SKIP ?(.*)$/gm)].map((m) => `${m[1]}${m[2] ? `: ${m[2]}` : ''}`);
}

const files = suites.flatMap((s) => find(join('test', s)));
if (files.length === 0) {
  console.error(`no test files under ${suites.map((s) => 'test/' + s).join(', ')}`);
  process.exit(1);
}
const tmp = mkdtempSync(join(tmpdir(), 'ballast-tests-'));
const tapFile = join(tmp, 'run.tap');
const human = process.stdout.isTTY ? 'spec' : 'tap';
const r = spawnSync(
  process.execPath,
  [
    '--import',
    'tsx',
    '--test',
    `--test-reporter=${human}`,
    '--test-reporter-destination=stdout',
    '--test-reporter=tap',
    `--test-reporter-destination=${tapFile}`,
    ...passThrough,
    ...files,
  ],
  { stdio: 'inherit' },
);
let status = r.status ?? 1;
let tap = '';
try {
  tap = readFileSync(tapFile, 'utf8');
} catch {
  // The runner died before writing anything: its exit status already says so.
}
rmSync(tmp, { recursive: true, force: true });
const c = tapCounts(tap);
const name = suites.join('+');
const line = `${name}: ${c.pass ?? 0} passed, ${(c.fail ?? 0) + (c.cancelled ?? 0)} failed, ${c.skipped ?? 0} skipped`;
if (process.env.BALLAST_TEST_SUMMARY) appendFileSync(process.env.BALLAST_TEST_SUMMARY, line + '\n');
if (process.env.BALLAST_FAIL_ON_SKIP === '1' && suites.includes('lab') && (c.skipped ?? 0) > 0) {
  console.error(`\n${name}: ${c.skipped} test(s) skipped, which fails this run (BALLAST_FAIL_ON_SKIP=1):`);
  for (const s of skippedTests(tap)) console.error(`  - ${s}`);
  if (status === 0) status = 1;
}
process.exit(status);
