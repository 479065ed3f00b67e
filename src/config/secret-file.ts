// Token files are secrets: whoever reads api.token_file can steer the daemon. A file other
// users can read is refused, as ssh refuses a private key others can read, rather than
// warned about: a warning scrolls by in a log while the token stays exposed, and the fix
// (chmod 600) is one command the error names.
import { statSync } from 'node:fs';
import type { Config } from './schema.js';

/** Throws naming `key`, the mode and the fix when `path` is readable or writable by group or others. */
export function checkSecretFile(path: string, key: string): void {
  let mode: number;
  try {
    mode = statSync(path).mode;
  } catch (err) {
    throw new Error(`${key}: cannot read ${path}: ${(err as Error).message}`);
  }
  if ((mode & 0o077) !== 0) {
    const octal = (mode & 0o777).toString(8).padStart(4, '0');
    throw new Error(`${key}: ${path} has mode ${octal}: other users could read the token; chmod 600 ${path} (only its owner may read it)`);
  }
}

/** Every token file of a config, checked. */
export function checkTokenFiles(config: Config): void {
  if (config.api.token_file) checkSecretFile(config.api.token_file, 'api.token_file');
  if (config.api.read_token_file) checkSecretFile(config.api.read_token_file, 'api.read_token_file');
}
