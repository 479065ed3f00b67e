/** The experiment cannot run on this machine (not root, no QEMU, no memory cgroup, no way to
 *  add swap...): the reason says which. Lab tests skip loudly on it. */
export class LabUnavailable extends Error {}
