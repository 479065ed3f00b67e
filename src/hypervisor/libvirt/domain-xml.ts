// What ballast reads from a libvirt domain XML: the balloon device (model, stats period, free
// page reporting). Read once per domain by the driver, and by `ballast doctor`.
import { XMLParser } from 'fast-xml-parser';

export interface Memballoon {
  /** '' when the domain has no <memballoon>. */
  model: string;
  /** <stats period='N'/>; 0 when absent. */
  statsPeriod: number;
  freePageReporting: boolean;
}

const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '' });

/** The balloon as a libvirt domain XML describes it. */
export function parseMemballoon(xml: string): Memballoon {
  const doc = parser.parse(xml) as { domain?: { devices?: { memballoon?: unknown } } };
  const raw = doc.domain?.devices?.memballoon;
  const mb = (Array.isArray(raw) ? raw[0] : raw) as { model?: string; freePageReporting?: string; stats?: { period?: string | number } } | undefined;
  if (typeof mb !== 'object' || mb === null) return { model: '', statsPeriod: 0, freePageReporting: false };
  const period = Number(mb.stats?.period ?? 0);
  return { model: mb.model ?? '', statsPeriod: Number.isFinite(period) ? period : 0, freePageReporting: mb.freePageReporting === 'on' };
}
