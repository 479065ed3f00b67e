// `ballast experiment`: placeholder until its module is written.
import type { Command } from 'commander';

export function register(program: Command): void {
  program.command('experiment').description('(not implemented yet)').action(() => {
    throw new Error('ballast experiment is not implemented yet');
  });
}
