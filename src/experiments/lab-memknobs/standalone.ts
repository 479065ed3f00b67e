// `node --import tsx src/experiments/lab-memknobs/standalone.ts lab-memknobs [options]`: the
// experiment's command on its own, for use before (or without) `ballast experiment`.
import { Command } from 'commander';
import { addLabExperiment } from '../../cli/experiment-lab.js';

const program = new Command('ballast-experiment').description('lab experiments');
addLabExperiment(program);
program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`ballast: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
