// `ballast sim`: placeholder until its module is written.
import type { Command } from 'commander';

export function register(program: Command): void {
  program.command('sim').description('(not implemented yet)').action(() => {
    throw new Error('ballast sim is not implemented yet');
  });
}
