// `ballast lab`: placeholder until its module is written.
import type { Command } from 'commander';

export function register(program: Command): void {
  program.command('lab').description('(not implemented yet)').action(() => {
    throw new Error('ballast lab is not implemented yet');
  });
}
