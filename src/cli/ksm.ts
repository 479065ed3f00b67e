// `ballast ksm`: placeholder until its module is written.
import type { Command } from 'commander';

export function register(program: Command): void {
  program.command('ksm').description('(not implemented yet)').action(() => {
    throw new Error('ballast ksm is not implemented yet');
  });
}
