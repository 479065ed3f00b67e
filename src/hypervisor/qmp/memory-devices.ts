// virtio-mem devices through QMP: `query-memory-devices` lists them (bytes), `qom-set` of the
// device's `requested-size` asks the guest to plug or unplug. QEMU answers qom-set at once and
// the guest driver moves `size` towards `requested-size` over the next seconds.
import type { MemoryDevice, MemoryDeviceCapability } from '../../types.js';
import { checkResize } from '../virtio-mem.js';

/** Runs one QMP command on a guest (QmpHypervisor.execute). */
export type QmpExec = (guestId: string, command: string, args?: Record<string, unknown>) => Promise<unknown>;

/** One virtio-mem entry of query-memory-devices, in KiB; `qomId` null for a device without an id. */
export interface QmpVirtioMem {
  qomId: string | null;
  memdev: string;
  size: number;
  requested: number;
  block: number;
  max: number;
}

// A guest has a handful of memory devices; a reply listing thousands is not QEMU's.
const MAX_DEVICES = 256;
const ANON_PARENT = '/machine/peripheral-anon';

function bytes(entry: Record<string, unknown>, key: string, where: string): number {
  const v = entry[key];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new Error(`QMP query-memory-devices: ${where} has no valid "${key}" (got ${JSON.stringify(v) ?? 'nothing'})`);
  }
  return v;
}

/** The virtio-mem devices in a query-memory-devices reply; other kinds (dimm, nvdimm,
 *  virtio-pmem, ...) are left out. A reply of the wrong shape throws, saying what was wrong. */
export function parseMemoryDevices(reply: unknown): QmpVirtioMem[] {
  if (!Array.isArray(reply)) throw new Error(`QMP query-memory-devices: expected a list, got ${typeof reply}`);
  if (reply.length > MAX_DEVICES) throw new Error(`QMP query-memory-devices: ${reply.length} devices, more than the ${MAX_DEVICES} a guest can have`);
  const out: QmpVirtioMem[] = [];
  reply.forEach((item: unknown, i) => {
    if (typeof item !== 'object' || item === null) throw new Error(`QMP query-memory-devices: entry ${i} is not an object`);
    const { type, data } = item as { type?: unknown; data?: unknown };
    if (type !== 'virtio-mem') return;
    if (typeof data !== 'object' || data === null) throw new Error(`QMP query-memory-devices: virtio-mem entry ${i} has no data`);
    const d = data as Record<string, unknown>;
    const where = `virtio-mem entry ${i}`;
    const block = bytes(d, 'block-size', where);
    if (block === 0) throw new Error(`QMP query-memory-devices: ${where} has a block size of 0`);
    if (d.id !== undefined && (typeof d.id !== 'string' || d.id === '')) throw new Error(`QMP query-memory-devices: ${where} has an invalid "id"`);
    if (typeof d.memdev !== 'string' || d.memdev === '') throw new Error(`QMP query-memory-devices: ${where} has no "memdev"`);
    out.push({
      qomId: (d.id as string | undefined) ?? null,
      memdev: d.memdev,
      size: Math.floor(bytes(d, 'size', where) / 1024),
      requested: Math.floor(bytes(d, 'requested-size', where) / 1024),
      block: Math.floor(block / 1024),
      max: Math.floor(bytes(d, 'max-size', where) / 1024),
    });
  });
  return out;
}

/** The QOM path qom-set needs for a device id as list() gives it. */
export function devicePath(deviceId: string): string {
  return deviceId.startsWith('/') ? deviceId : `/machine/peripheral/${deviceId}`;
}

export class QmpMemoryDevices implements MemoryDeviceCapability {
  constructor(private readonly exec: QmpExec) {}

  async list(guestId: string): Promise<MemoryDevice[]> {
    const devs = parseMemoryDevices(await this.exec(guestId, 'query-memory-devices'));
    const anon = devs.some((d) => d.qomId === null) ? await this.anonymousPaths(guestId) : new Map<string, string>();
    const out: MemoryDevice[] = [];
    for (const d of devs) {
      // A device started without an id can only be named by its QOM path, found by its backend.
      const id = d.qomId ?? anon.get(d.memdev);
      if (id === undefined) continue;
      out.push({ id, size: d.size, requested: d.requested, block: d.block, max: d.max });
    }
    return out;
  }

  async resize(guestId: string, deviceId: string, requestedKiB: number): Promise<void> {
    checkResize(guestId, await this.list(guestId), deviceId, requestedKiB);
    await this.exec(guestId, 'qom-set', { path: devicePath(deviceId), property: 'requested-size', value: requestedKiB * 1024 });
  }

  /** memdev path -> QOM path of the id-less virtio-mem devices. */
  private async anonymousPaths(guestId: string): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    const items = await this.exec(guestId, 'qom-list', { path: ANON_PARENT });
    if (!Array.isArray(items)) return out;
    for (const it of items.slice(0, MAX_DEVICES * 4) as { name?: unknown; type?: unknown }[]) {
      if (typeof it?.name !== 'string' || typeof it.type !== 'string' || !/^child<virtio-mem-/.test(it.type)) continue;
      const path = `${ANON_PARENT}/${it.name}`;
      const memdev = await this.exec(guestId, 'qom-get', { path, property: 'memdev' });
      if (typeof memdev === 'string') out.set(memdev, path);
    }
    return out;
  }
}
