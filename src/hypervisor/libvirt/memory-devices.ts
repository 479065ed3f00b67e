// virtio-mem devices through libvirt: read from the domain's live XML (each
// `<memory model='virtio-mem'>` with its `<target>` sizes and `<alias>`), resized with
// virDomainUpdateDeviceFlags given that device's own XML with a new `<requested>`. libvirt
// finds the device by its alias and address and refuses any other change, so the XML sent is
// the one it reported, with only `<requested>` replaced.
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import type { MemoryDevice, MemoryDeviceCapability } from '../../types.js';
import { checkResize } from '../virtio-mem.js';
import type { LibvirtClient } from './client.js';
import { Affect, REMOTE_STRING_MAX, writeDomain, type DomainRef } from './protocol.js';
import { XdrWriter } from './xdr.js';

/** remote_procedure REMOTE_PROC_DOMAIN_UPDATE_DEVICE_FLAGS (remote_protocol.x). */
export const PROC_DOMAIN_UPDATE_DEVICE_FLAGS = 174;

/** LibvirtHypervisor.withDomain: the connection and the domain of a guest id (its UUID). */
export type WithDomain = <T>(id: string, what: string, fn: (client: LibvirtClient, dom: DomainRef) => Promise<T>) => Promise<T>;

export interface LibvirtVirtioMem extends MemoryDevice {
  /** The device's element as libvirt wrote it: what virDomainUpdateDeviceFlags is given back. */
  xml: string;
}

// A domain has a few memory slots (libvirt allows 255 hotplug slots); more is not libvirt talking.
const MAX_DEVICES = 256;

// libvirt's memory units (virScaleInteger); a number without a unit is KiB.
const UNIT_BYTES: Record<string, number> = {
  b: 1,
  bytes: 1,
  kb: 1e3,
  k: 1024,
  kib: 1024,
  mb: 1e6,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  gb: 1e9,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  tb: 1e12,
  t: 1024 ** 4,
  tib: 1024 ** 4,
};

const parser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '', parseTagValue: false, parseAttributeValue: false });

type Node = Record<string, unknown>;

function kibOf(el: unknown, what: string, where: string): number | null {
  if (el === undefined) return null;
  const node: Node = typeof el === 'object' && el !== null ? (el as Node) : { '#text': el };
  const text = String(node['#text'] ?? '').trim();
  const unit = String(node.unit ?? 'KiB').toLowerCase();
  const factor = UNIT_BYTES[unit];
  if (!/^\d{1,20}$/.test(text) || factor === undefined)
    throw new Error(`${where}: <${what}> is not a size (${JSON.stringify(text)} ${JSON.stringify(node.unit ?? '')})`);
  const kib = Math.floor((Number(text) * factor) / 1024);
  if (!Number.isSafeInteger(kib)) throw new Error(`${where}: <${what}> ${text} ${unit} is too large`);
  return kib;
}

/** The `<memory>` elements inside `<devices>`, as libvirt wrote them, at most `limit`. One pass
 *  (no backtracking regex): a hostile daemon's XML full of `<memory/>` costs linear time. */
function memoryElements(xml: string, limit: number): string[] {
  const open = xml.search(/<devices\s*>/);
  const close = xml.lastIndexOf('</devices>');
  const out: string[] = [];
  let at = open;
  while (open >= 0 && out.length < limit) {
    const start = xml.indexOf('<memory', at);
    if (start < 0 || start >= close) break;
    const tagEnd = xml.indexOf('>', start);
    if (tagEnd < 0) break;
    at = tagEnd + 1;
    // `<memoryBacking>` and the like, or an empty `<memory/>`: not a device element.
    if (!/[\s>/]/.test(xml[start + 7] ?? '') || xml[tagEnd - 1] === '/') continue;
    const end = xml.indexOf('</memory>', at);
    if (end < 0 || end > close) break;
    out.push(xml.slice(start, end + 9));
    at = end + 9;
  }
  return out;
}

/** The virtio-mem devices of a live domain XML. Devices without an alias (a domain that is not
 *  running) cannot be named and are left out. Malformed XML or a device without its sizes throws. */
export function parseVirtioMem(xml: string, guest = 'domain'): LibvirtVirtioMem[] {
  const valid = XMLValidator.validate(xml);
  if (valid !== true) throw new Error(`libvirt XML of ${guest} is not well-formed: ${valid.err.msg} (line ${valid.err.line})`);
  const out: LibvirtVirtioMem[] = [];
  const elements = memoryElements(xml, MAX_DEVICES + 1);
  if (elements.length > MAX_DEVICES) throw new Error(`libvirt XML of ${guest} has more than ${MAX_DEVICES} memory devices`);
  for (const el of elements) {
    let mem: Node | undefined;
    try {
      mem = (parser.parse(el) as { memory?: Node }).memory;
    } catch (err) {
      // The parser's own limits (e.g. nesting depth) on what the validator let through.
      throw new Error(`libvirt XML of ${guest}: a <memory> element cannot be read (${(err as Error).message})`);
    }
    if (mem?.model !== 'virtio-mem') continue;
    const alias = (mem.alias as Node | undefined)?.name;
    if (typeof alias !== 'string' || alias === '') continue;
    const where = `virtio-mem ${alias} of ${guest}`;
    const t = mem.target as Node | undefined;
    if (typeof t !== 'object' || t === null) throw new Error(`${where}: no <target>`);
    const max = kibOf(t.size, 'size', where);
    const block = kibOf(t.block, 'block', where);
    const requested = kibOf(t.requested, 'requested', where);
    const current = kibOf(t.current, 'current', where);
    if (max === null || block === null || requested === null) throw new Error(`${where}: <target> lacks <size>, <block> or <requested>`);
    if (block === 0) throw new Error(`${where}: block size 0`);
    // libvirt reports <current> from 7.9 on; without it the plugged size is unknown.
    if (current === null) throw new Error(`${where}: no <current> in the live XML (libvirt older than 7.9 does not report it)`);
    out.push({ id: alias, size: current, requested, block, max, xml: el });
  }
  return out;
}

/** A device element with its `<requested>` set to `kib` KiB, everything else as libvirt wrote it. */
export function withRequested(deviceXml: string, kib: number): string {
  const re = /<requested\b[^>]*>[^<]*<\/requested>/;
  if (!re.test(deviceXml)) throw new Error('virtio-mem device XML has no <requested> element');
  return deviceXml.replace(re, `<requested unit='KiB'>${kib}</requested>`);
}

export function encodeUpdateDeviceFlags(dom: DomainRef, xml: string, flags: number): Buffer {
  const w = new XdrWriter();
  writeDomain(w, dom);
  return w.string(xml, REMOTE_STRING_MAX).uint(flags).toBuffer();
}

export class LibvirtMemoryDevices implements MemoryDeviceCapability {
  constructor(private readonly withDomain: WithDomain) {}

  private read(guestId: string): Promise<LibvirtVirtioMem[]> {
    return this.withDomain(guestId, 'virtio-mem devices not read', async (c, dom) => parseVirtioMem(await c.getXmlDesc(dom, 0), dom.name));
  }

  async list(guestId: string): Promise<MemoryDevice[]> {
    return (await this.read(guestId)).map(({ xml: _xml, ...d }) => d);
  }

  async resize(guestId: string, deviceId: string, requestedKiB: number): Promise<void> {
    const devs = await this.read(guestId);
    const dev = checkResize(guestId, devs, deviceId, requestedKiB) as LibvirtVirtioMem;
    const xml = withRequested(dev.xml, requestedKiB);
    await this.withDomain(guestId, 'virtio-mem not resized', (c, dom) =>
      c.call(PROC_DOMAIN_UPDATE_DEVICE_FLAGS, encodeUpdateDeviceFlags(dom, xml, Affect.LIVE)),
    );
  }
}
