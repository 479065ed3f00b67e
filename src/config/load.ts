// Reading and checking a config file. Every problem is reported as
// `config error: <dotted.key>: <what was expected>`, all of them at once, so an operator fixes
// the file in one pass; nothing is half-applied.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseToml, TomlError } from 'smol-toml';
import type { z } from 'zod';
import { configSchema, type Config } from './schema.js';

export class ConfigError extends Error {
  constructor(
    readonly problems: string[],
    readonly file?: string,
  ) {
    super(problems.map((p) => `config error: ${p}${file ? ` (in ${file})` : ''}`).join('\n'));
    this.name = 'ConfigError';
  }
}

function keyPath(path: readonly PropertyKey[]): string {
  return path.map(String).join('.');
}

/** One line per zod issue, naming the key; unknown keys are named one by one. */
export function describeIssues(issues: readonly z.core.$ZodIssue[]): string[] {
  const out: string[] = [];
  for (const issue of issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const k of issue.keys) out.push(`${keyPath([...issue.path, k])}: unknown key`);
    } else {
      const where = issue.path.length ? keyPath(issue.path) : '(top level)';
      out.push(`${where}: ${issue.message}`);
    }
  }
  return out;
}

/** Validate an already-parsed object (TOML or JSON) against the schema. */
export function parseConfigObject(obj: unknown, file?: string): Config {
  const r = configSchema.safeParse(obj);
  if (!r.success) throw new ConfigError(describeIssues(r.error.issues), file);
  return r.data;
}

function readToml(text: string, file?: string): Record<string, unknown> {
  try {
    return parseToml(text) as Record<string, unknown>;
  } catch (err) {
    if (err instanceof TomlError) {
      throw new ConfigError([`TOML syntax at line ${err.line}, column ${err.column}: ${firstLine(err.message)}`], file);
    }
    throw err;
  }
}

export function parseConfigText(text: string, file?: string): Config {
  return parseConfigObject(readToml(text, file), file);
}

/** `over`'s tables laid over `base`'s, key by key (one level of tables, as the config has). */
function overlay(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = base[k];
    const table = (x: unknown) => typeof x === 'object' && x !== null && !Array.isArray(x) && !(x instanceof Date);
    out[k] = table(b) && table(v) ? { ...(b as object), ...(v as object) } : v;
  }
  return out;
}

function firstLine(s: string): string {
  return s.split('\n')[0] ?? s;
}

/** One rule for every path in a config file: a relative one is relative to the file, not to
 *  wherever the daemon was started from (systemd starts it in /). Empty stays empty (off).
 *  A scenario counts as a path when it looks like one (a built-in scenario is a bare name). */
export function resolveRelativePaths(config: Config, baseDir: string): void {
  const at = (p: string) => (p ? resolve(baseDir, p) : p);
  config.engine.policy_dir = at(config.engine.policy_dir);
  config.engine.record_file = at(config.engine.record_file);
  config.hypervisor.qmp_dir = at(config.hypervisor.qmp_dir);
  config.hypervisor.socket = at(config.hypervisor.socket);
  config.api.socket = at(config.api.socket);
  config.api.token_file = at(config.api.token_file);
  config.api.read_token_file = at(config.api.read_token_file);
  config.mom_rpc.socket = at(config.mom_rpc.socket);
  const sc = config.hypervisor.scenario;
  if (sc.includes('/') || /\.(json|toml)$/i.test(sc)) config.hypervisor.scenario = resolve(baseDir, sc);
}

/** Read, check and complete a config file; relative paths become relative to the file.
 *  `base` (e.g. what a MOM config gives) is what the file's keys are laid over. */
export function loadConfigFile(file: string, base: Record<string, unknown> = {}): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([`cannot read: ${(err as Error).message}`], file);
  }
  const config = parseConfigObject(overlay(base, readToml(text, file)), file);
  resolveRelativePaths(config, dirname(resolve(file)));
  return config;
}
