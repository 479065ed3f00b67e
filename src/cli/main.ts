#!/usr/bin/env node
// The `ballast` command: each subcommand lives in its own module and registers itself here.
// Only the module of the command being run is loaded: `ballast run` is a long-lived daemon
// and should not carry the simulator, the lab or the experiments in its heap.
import { errorMessage } from '../errors.js';
import type { Command as CommandT } from 'commander';
import { smallHeap } from './heap.js';

// SIGUSR1 would open Node's inspector, an unauthenticated debugger: log rotation scripts send
// it. A handler of our own keeps the inspector shut; SIGUSR2 must not end the process either.
// (`ballast run` logs them.)
for (const sig of ['SIGUSR1', 'SIGUSR2'] as const) process.on(sig, () => {});

const first = process.argv.slice(2).find((a) => !a.startsWith('-'));
// The daemon's heap settings must come before any module is loaded (see heap.ts).
if (first === 'run') smallHeap(true);
const { Command } = await import('commander');

type Register = (program: CommandT) => void;
const commands: Record<string, () => Promise<{ register: Register }>> = {
  policy: () => import('./policy.js'),
  demo: () => import('./demo.js'),
  run: () => import('./run.js'),
  sim: () => import('./sim.js'),
  experiment: () => import('./experiment.js'),
  lab: () => import('./lab.js'),
  ksm: () => import('./ksm.js'),
  status: () => import('./status.js'),
  doctor: () => import('./doctor.js'),
};

const program = new Command();
program.name('ballast').description('Memory overcommitment manager for KVM hosts (MOM-compatible policies)').version('0.1.0');

const chosen = first !== undefined && first in commands ? [first] : Object.keys(commands);

try {
  for (const name of chosen) (await commands[name]!()).register(program);
  await program.parseAsync(process.argv);
} catch (err: unknown) {
  process.stderr.write(`ballast: ${errorMessage(err)}\n`);
  process.exit(1);
}
