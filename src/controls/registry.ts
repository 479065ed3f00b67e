// Every mechanism ballast drives. Adding one is a folder under src/controls/ exporting a
// ControlModule, and its line here: the loop plans, guards, actuates, commits and restores
// through CONTROLS, and the config schema takes each module's section as a top-level table.
// Order matters only for the order of actions in a cycle (the balloon first).
import { balloon } from './balloon/index.js';
import { cgroup } from './cgroup/index.js';
import type { ControlModule } from './control.js';
import { cputune } from './cputune/index.js';
import { ksm } from './ksm/index.js';
import { reclaim } from './reclaim/index.js';
import { vmem } from './vmem/index.js';

const MODULES = [balloon, vmem, reclaim, ksm, cgroup, cputune] as const;

export const CONTROLS: readonly ControlModule[] = MODULES;

/** Each module's config table by its key, typed, for the config schema. */
type Sections<T extends readonly unknown[]> = {
  [M in T[number] as M extends { section: { key: infer K extends string } } ? K : never]: M extends { section: { schema: infer S } } ? S : never;
};

export const CONTROL_SECTIONS = Object.fromEntries(MODULES.map((m) => [m.section.key, m.section.schema])) as Sections<typeof MODULES>;
