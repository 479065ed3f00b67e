#!/usr/bin/env node
// The `ballast` command: each subcommand lives in its own module and registers itself here.
import { Command } from 'commander';
import { register as registerPolicy } from './policy.js';

const program = new Command();
program
  .name('ballast')
  .description('Memory overcommitment manager for KVM hosts (MOM-compatible policies)')
  .version('0.1.0');

registerPolicy(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`ballast: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
