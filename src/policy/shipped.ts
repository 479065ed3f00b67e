// The policies shipped in policies/ (next to src/ and dist/, so the same relative path works
// from the sources under tsx and from the build).
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { PolicySource } from './program.js';

const DIR = new URL('../../policies/', import.meta.url);

/** Names of the shipped policies (without `.policy`). */
export function shippedPolicyNames(): string[] {
  return readdirSync(DIR)
    .filter((f) => f.endsWith('.policy'))
    .map((f) => f.slice(0, -'.policy'.length))
    .sort();
}

/** The file of a shipped policy (`default`, or `default.policy`). */
export function shippedPolicyFile(name = 'default'): string {
  return fileURLToPath(new URL(name.endsWith('.policy') ? name : `${name}.policy`, DIR));
}

/** A shipped policy as a source for compilePolicies; `default` is what `ballast run` uses. */
export function shippedPolicy(name = 'default'): PolicySource {
  const url = new URL(`${name}.policy`, DIR);
  const file = fileURLToPath(url);
  return { name, file, text: readFileSync(url, 'utf8') };
}
