// `ballast policy check|eval|fmt` (owned by the policy engine work).
import type { Command } from 'commander';

export function register(program: Command): void {
  const policy = program.command('policy').description('check, evaluate and format MOM policies');
  policy.command('check <files...>').description('parse policies; print FILE:LINE:COL errors').action(() => {
    throw new Error('not implemented yet');
  });
}
