#!/usr/bin/env node
// The `ballast` command: each subcommand lives in its own module and registers itself here.
import { Command } from 'commander';
import { register as registerPolicy } from './policy.js';
import { register as registerDemo } from './demo.js';
import { register as registerRun } from './run.js';
import { register as registerSim } from './sim.js';
import { register as registerExperiment } from './experiment.js';
import { register as registerLab } from './lab.js';
import { register as registerKsm } from './ksm.js';

const program = new Command();
program
  .name('ballast')
  .description('Memory overcommitment manager for KVM hosts (MOM-compatible policies)')
  .version('0.1.0');

registerPolicy(program);
registerDemo(program);
registerRun(program);
registerSim(program);
registerExperiment(program);
registerLab(program);
registerKsm(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`ballast: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
