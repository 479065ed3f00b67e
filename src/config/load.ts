// Reading and checking a config file. Every problem is reported as
// `config error: <dotted.key>: <what was expected>`, all of them at once, so an operator fixes
// the file in one pass; nothing is half-applied.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseToml, TomlError } from 'smol-toml';
import type { z } from 'zod';
import { configSchema, type Config } from './schema.js';

export class ConfigError extends Error {
  constructor(readonly problems: string[], readonly file?: string) {
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

export function parseConfigText(text: string, file?: string): Config {
  let obj: unknown;
  try {
    obj = parseToml(text);
  } catch (err) {
    if (err instanceof TomlError) {
      throw new ConfigError([`TOML syntax at line ${err.line}, column ${err.column}: ${firstLine(err.message)}`], file);
    }
    throw err;
  }
  return parseConfigObject(obj, file);
}

function firstLine(s: string): string {
  return s.split('\n')[0] ?? s;
}

/** Relative paths in a config file are relative to the file, not to wherever the daemon
 *  was started from (systemd starts it in /). A scenario counts as a path when it looks like
 *  one (a built-in scenario is a bare name). */
export function resolveRelativePaths(config: Config, baseDir: string): void {
  config.engine.policy_dir = resolve(baseDir, config.engine.policy_dir);
  config.hypervisor.qmp_dir = resolve(baseDir, config.hypervisor.qmp_dir);
  if (config.engine.record_file) config.engine.record_file = resolve(baseDir, config.engine.record_file);
  const sc = config.hypervisor.scenario;
  if (sc.includes('/') || /\.(json|toml)$/i.test(sc)) config.hypervisor.scenario = resolve(baseDir, sc);
}

/** Read, check and complete a config file; relative paths become relative to the file. */
export function loadConfigFile(file: string): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([`cannot read: ${(err as Error).message}`], file);
  }
  const config = parseConfigText(text, file);
  resolveRelativePaths(config, dirname(resolve(file)));
  return config;
}
