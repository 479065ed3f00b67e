// Every control ballast drives besides balloon_target. Adding a memory (or CPU) mechanism is a
// folder under src/controls/ and its line here (the module, and its config section if it has
// one): the loop plans, guards, actuates and restores through CONTROLS, and the config schema
// takes CONTROL_SECTIONS as top-level tables.
import type { ControlModule } from './control.js';
import { cgroup } from './cgroup/index.js';
import { cputune } from './cputune/index.js';
import { cputuneSection } from './cputune/config.js';
import { ksm } from './ksm/index.js';
import { ksmSection } from './ksm/config.js';

export const CONTROLS: readonly ControlModule[] = [ksm, cgroup, cputune];

export const CONTROL_SECTIONS = { ksm: ksmSection, cputune: cputuneSection };
