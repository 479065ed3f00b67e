// `ballast policy check|eval|fmt`: the policy author's tools and the compatibility contract
// with MOM (see docs/policy.md and POLICY-LANGUAGE.md's "policy eval" section).
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { PolicyParseError, checkPolicy, compilePolicies, evaluate, formatPolicy, type EvalResult, type PolicySource } from '../policy/index.js';
import { SnapshotError, parseSnapshots } from '../policy/snapshot.js';
import { stringifyPyJson } from '../policy/json.js';
import { apiCall, ApiError, DEFAULT_API_SOCKET } from '../api/client.js';
import { printable, printableText } from '../printable.js';

/** Exit codes: 0 done, 1 a policy does not parse, 2 unusable input (files, JSON, shape). */
class UsageError extends Error {}

function readText(file: string): string {
  try {
    return readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (e) {
    throw new UsageError(`${file}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

function run(action: () => number): void {
  let code: number;
  try {
    code = action();
  } catch (e) {
    if (e instanceof PolicyParseError) {
      process.stderr.write(`${e.message}\n`);
      code = 1;
    } else if (e instanceof UsageError || e instanceof SnapshotError) {
      process.stderr.write(`ballast policy: ${e.message}\n`);
      code = 2;
    } else throw e;
  }
  process.exitCode = code;
}

function check(files: string[]): number {
  let bad = 0;
  for (const f of files) {
    const errs = checkPolicy(readText(f), f);
    for (const e of errs) process.stderr.write(`${e.message}\n`);
    if (errs.length) bad++;
  }
  return bad ? 1 : 0;
}

interface EvalFlags {
  policy: string[];
  input: string;
  time?: boolean;
  values?: boolean;
}

function evalCmd(flags: EvalFlags): number {
  const sources: PolicySource[] = flags.policy.map((f) => ({ name: f, file: f, text: readText(f) }));
  const { snapshots, isArray } = parseSnapshots(readText(flags.input), flags.input);
  const policy = compilePolicies(sources);
  const debug = (text: string) => process.stderr.write(`${text}\n`);
  const results: EvalResult[] = [];
  const t0 = process.hrtime.bigint();
  for (const s of snapshots) {
    results.push(evaluate(policy, s.host, s.guests, { collectValues: !!flags.values, debug, rawValues: true }));
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const out = results.map((r) => {
    const o: Record<string, unknown> = { host: r.host, guests: r.guests, errors: r.errors };
    if (flags.values) o['values'] = r.values;
    return o;
  });
  process.stdout.write(stringifyPyJson(isArray ? out : out[0]) + '\n');
  if (flags.time) process.stderr.write(`${seconds.toFixed(6)}\n`);
  return 0;
}

function fmt(file: string): number {
  process.stdout.write(formatPolicy(readText(file), file));
  return 0;
}

/** The running daemon's side: exit 1 when it refuses (a bad policy, no such name), 2 when it cannot be reached. */
async function remote(action: () => Promise<string>): Promise<void> {
  try {
    process.stdout.write(await action());
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    process.stderr.write(`ballast policy: ${e.message}\n`);
    process.exitCode = e.status === undefined ? 2 : 1;
  }
}

interface RemoteFlags {
  api: string;
}

function registerRemote(policy: Command): void {
  const api = ['--api <path>', "the running daemon's API socket", DEFAULT_API_SOCKET] as const;
  policy
    .command('list')
    .description('the policies a running daemon has in force (files and those set at run time), in evaluation order')
    .option(...api)
    .action((f: RemoteFlags) =>
      remote(async () => {
        const list = (await apiCall(f.api, 'GET', 'policies')) as { name: string; source: string; path?: string }[];
        return list.map((p) => `${printable(p.name)}\t${printable(p.source)}${p.path ? `\t${printable(p.path)}` : ''}\n`).join('');
      }),
    );
  policy
    .command('get')
    .argument('<name>', 'policy name')
    .description('print a named policy of a running daemon')
    .option(...api)
    .action((name: string, f: RemoteFlags) =>
      remote(async () => printableText(((await apiCall(f.api, 'GET', `policies/${encodeURIComponent(name)}`)) as { text: string }).text)),
    );
  policy
    .command('set')
    .argument('<name>', 'policy name (e.g. 01-parameters)')
    .argument('<file>', "policy file ('-' for stdin)")
    .description(
      'set (create or replace) a named policy in a running daemon; refused with FILE:LINE:COL, and nothing changes, when it does not compile; not kept across a restart',
    )
    .option(...api)
    .action((name: string, file: string, f: RemoteFlags) =>
      remote(async () => {
        let text: string;
        try {
          text = readText(file);
        } catch (e) {
          throw new ApiError((e as Error).message);
        }
        await apiCall(f.api, 'PUT', `policies/${encodeURIComponent(name)}`, text);
        return `${name}: set\n`;
      }),
    );
  policy
    .command('delete')
    .argument('<name>', 'policy name')
    .description('delete a named policy set at run time (files are deleted from the policy directory)')
    .option(...api)
    .action((name: string, f: RemoteFlags) =>
      remote(async () => {
        await apiCall(f.api, 'DELETE', `policies/${encodeURIComponent(name)}`);
        return `${name}: deleted\n`;
      }),
    );
}

export function register(program: Command): void {
  const policy = program.command('policy').description('check, evaluate and format MOM policies; set, get, list and delete them in a running daemon');
  registerRemote(policy);
  policy
    .command('check')
    .argument('<files...>', 'policy files')
    .description('parse policies; print FILE:LINE:COL: message for each that does not parse (exit 1)')
    .action((files: string[]) => run(() => check(files)));
  policy
    .command('eval')
    .description('evaluate policies on a snapshot (or a JSON array of snapshots); JSON results on stdout')
    .requiredOption('--policy <file>', 'policy file (repeat to concatenate several, in order)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .requiredOption('--input <snapshot.json>', "snapshot file ('-' for stdin)")
    .option('--time', 'print the seconds spent evaluating as the last line on stderr')
    .option('--values', 'include the value of every top-level expression')
    .action((flags: EvalFlags) => run(() => evalCmd(flags)));
  policy
    .command('fmt')
    .argument('<file>', 'policy file')
    .description('print the policy in the canonical layout (comments kept)')
    .action((file: string) => run(() => fmt(file)));
}
