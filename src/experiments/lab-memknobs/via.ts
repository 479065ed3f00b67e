// How the run's guests are run: QEMU with a QMP socket (the default, ballast's QMP driver in
// the experiment's process), or under a libvirtd of the run's own (`--via libvirt`: ballast
// as a `ballast run` process with its libvirt driver; momd, which speaks only libvirt). A
// run with momd runs every row on libvirt guests so that the rows compare. Pure.
import { configParts, type ConfigName } from './plan.js';

export type GuestsVia = 'qmp' | 'libvirt';

export function parseVia(v: string | undefined): GuestsVia | undefined {
  if (v === undefined) return undefined;
  if (v !== 'qmp' && v !== 'libvirt') throw new Error(`--via must be qmp or libvirt, got "${v}"`);
  return v;
}

/** The guests' kind for a set of runs, or a clear error for what cannot run that way. */
export function guestsVia(configs: readonly ConfigName[], o: { via?: GuestsVia; mom?: string; thp?: 'host' | 'off' }): GuestsVia {
  const momd = configs.includes('momd');
  if (momd && !o.mom)
    throw new Error("--configs momd runs oVirt MOM's own daemon: give a MOM checkout with --mom PATH (git clone https://github.com/oVirt/mom)");
  if (!momd && o.mom) throw new Error('--mom is for the momd row: add momd to --configs');
  if (momd && o.via === 'qmp') throw new Error('momd speaks only libvirt: its rows (and the others beside them) run on libvirt guests; leave out --via qmp');
  const via = momd ? 'libvirt' : (o.via ?? 'qmp');
  if (via === 'libvirt') {
    if (o.thp === 'off')
      throw new Error('--thp off is not available for libvirt guests (it is set on the QEMU process before exec; libvirt starts QEMU itself): use --thp host');
    // MOM's style with guest PSI adds a PSI-only rollback no config key can express.
    const refused = configs.filter((c) => c === 'mom+psi');
    if (refused.length) throw new Error(`${refused.join(', ')} cannot run on libvirt guests (--via libvirt${momd ? ', implied by momd' : ''})`);
  }
  if (via === 'qmp' && configs.some((c) => configParts(c).manager === 'momd')) throw new Error('momd needs libvirt guests');
  return via;
}
