// A small in-process stand-in for libvirtd, speaking the real wire format (built with the
// protocol module's server-side encoders) on a unix socket, for unit tests of the client and
// driver: out-of-order replies, byte-by-byte or coalesced writes, errors, events, keepalive,
// a daemon that dies or goes silent. The real daemon is exercised by test/lab/libvirt*.test.ts.
import { createServer, type Server, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FrameDecoder, MessageStatus, MessageType, encodeFrame, type Frame } from '../../../src/hypervisor/libvirt/framing.js';
import { XdrReader, XdrWriter } from '../../../src/hypervisor/libvirt/xdr.js';

import {
  KEEPALIVE_PROGRAM,
  KeepaliveProc,
  Proc,
  QEMU_PROGRAM,
  QemuProc,
  REMOTE_PROGRAM,
  TypedParamType,
  encRet,
  readDomain,
  uuidFromString,
  uuidToString,
  type DomainRef,
  type TypedParam,
} from '../../../src/hypervisor/libvirt/protocol.js';

export interface FakeGuest {
  name: string;
  uuid: string;
  id: number;
  currentKiB: number;
  maxKiB: number;
  /** guest-side balloon stats present (driver loaded) */
  guestStats: boolean;
  unusedKiB?: number;
  availableKiB?: number;
  cachesKiB?: number;
  vcpus?: number;
  /** /proc/meminfo text served through the fake guest agent; undefined = no agent */
  agentMeminfo?: string;
  /** What the agent reads for /proc/pressure/memory (undefined: the file does not exist). */
  agentPsi?: string;
  /** The path the agent last opened (the fake has one handle per guest). */
  agentOpen?: string;
  /** The guest's memory.reclaim: absent (undefined), taking every write ('ok'), or finding
   *  less than asked ('short': EAGAIN at the close, where qemu-ga's buffered write lands). */
  agentReclaim?: 'ok' | 'short';
  /** What was written through the agent, as "path: text". */
  agentWrites?: string[];
  /** Live domain XML served by DOMAIN_GET_XML_DESC; undefined: the call is refused. */
  domainXml?: string;
}

/** REMOTE_PROC_DOMAIN_UPDATE_DEVICE_FLAGS, from remote_protocol.x (not from the driver, so a wrong number there fails). */
const UPDATE_DEVICE_FLAGS = 174;

export type WriteMode = 'normal' | 'byte-by-byte' | 'coalesce';

export class FakeLibvirtd {
  readonly dir = mkdtempSync(join(tmpdir(), 'fake-libvirtd-'));
  readonly path = join(this.dir, 'sock');
  guests: FakeGuest[] = [];
  writeMode: WriteMode = 'normal';
  /** Replies are held and released in reverse order in batches of this size (1 = in order). */
  reorderBatch = 1;
  /** Do not answer keepalive PINGs nor calls (a hung daemon). */
  silent = false;
  /** Send our own PING to clients right after they open. */
  pingOnOpen = false;
  readonly calls: { proc: number; prog: number }[] = [];
  readonly periods = new Map<string, number>();
  readonly setMemory: { name: string; kib: number; flags: number }[] = [];
  pongsReceived = 0;
  readonly statsGroupsAsked: number[] = [];
  readonly opens: { uri: string | null; flags: number }[] = [];
  /** DOMAIN_UPDATE_DEVICE_FLAGS calls received. */
  readonly deviceUpdates: { name: string; xml: string; flags: number }[] = [];
  /** Answers a call itself when it returns true (tests of odd replies). */
  intercept: ((sock: Socket, f: Frame) => boolean) | null = null;
  private server: Server | null = null;
  private readonly socks = new Set<Socket>();
  private held: { sock: Socket; buf: Buffer }[] = [];
  private callbackIds = new Map<Socket, number[]>();
  private nextCallback = 1;

  async start(): Promise<void> {
    this.server = createServer((s) => this.onConn(s));
    await new Promise<void>((res, rej) => {
      this.server!.once('error', rej);
      this.server!.listen(this.path, () => res());
    });
  }

  /** Closes every client connection and stops listening (libvirtd killed). */
  async kill(): Promise<void> {
    for (const s of this.socks) s.destroy();
    this.socks.clear();
    await new Promise<void>((res) => (this.server ? this.server.close(() => res()) : res()));
    this.server = null;
  }

  async dispose(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }

  get connections(): number {
    return this.socks.size;
  }

  /** Writes raw bytes to every client (garbage tests). */
  sendRaw(buf: Buffer): void {
    for (const s of this.socks) s.write(buf);
  }

  /** A lifecycle event to every client that registered for it. */
  emitLifecycle(guest: FakeGuest, event: number, detail: number): void {
    for (const [sock, ids] of this.callbackIds) {
      for (const cb of ids) {
        const payload = encRet.lifecycleMsg({ callbackId: cb, dom: this.ref(guest), event, detail });
        this.write(
          sock,
          encodeFrame({ prog: REMOTE_PROGRAM, vers: 1, proc: Proc.DOMAIN_EVENT_CALLBACK_LIFECYCLE, type: MessageType.MESSAGE, serial: 0, status: 0 }, payload),
        );
      }
    }
  }

  private ref(g: FakeGuest): DomainRef {
    return { name: g.name, uuid: uuidFromString(g.uuid), id: g.id };
  }

  private onConn(s: Socket): void {
    this.socks.add(s);
    const dec = new FrameDecoder();
    s.on('data', (chunk) => {
      for (const f of dec.push(chunk)) this.onFrame(s, f);
    });
    s.on('close', () => {
      this.socks.delete(s);
      this.callbackIds.delete(s);
    });
    s.on('error', () => undefined);
  }

  private write(s: Socket, buf: Buffer): void {
    if (this.writeMode === 'byte-by-byte') {
      for (let i = 0; i < buf.length; i++) s.write(buf.subarray(i, i + 1));
    } else {
      s.write(buf);
    }
  }

  private reply(s: Socket, f: Frame, payload: Buffer, status: number = MessageStatus.OK): void {
    const h = f.header;
    const buf = encodeFrame({ prog: h.prog, vers: h.vers, proc: h.proc, type: MessageType.REPLY, serial: h.serial, status }, payload);
    if (this.reorderBatch > 1) {
      this.held.push({ sock: s, buf });
      if (this.held.length >= this.reorderBatch) {
        const batch = this.held.reverse();
        this.held = [];
        if (this.writeMode === 'coalesce') s.write(Buffer.concat(batch.map((b) => b.buf)));
        else for (const b of batch) this.write(b.sock, b.buf);
      }
      return;
    }
    this.write(s, buf);
  }

  private error(s: Socket, f: Frame, code: number, message: string): void {
    this.reply(
      s,
      f,
      encRet.error({ code, domain: 10, message, level: 2, dom: null, str1: null, str2: null, str3: null, int1: 0, int2: 0 }),
      MessageStatus.ERROR,
    );
  }

  private findByRef(r: XdrReader): FakeGuest | undefined {
    const d = readDomain(r);
    return this.guests.find((g) => g.uuid === uuidToString(d.uuid) && g.id === d.id && g.id > 0);
  }

  private onFrame(s: Socket, f: Frame): void {
    const h = f.header;
    if (h.prog === KEEPALIVE_PROGRAM) {
      if (h.proc === KeepaliveProc.PONG) this.pongsReceived++;
      if (h.proc === KeepaliveProc.PING && !this.silent) {
        this.write(s, encodeFrame({ prog: KEEPALIVE_PROGRAM, vers: 1, proc: KeepaliveProc.PONG, type: MessageType.MESSAGE, serial: 0, status: 0 }));
      }
      return;
    }
    if (h.type !== MessageType.CALL) return;
    this.calls.push({ proc: h.proc, prog: h.prog });
    if (this.silent) return;
    if (this.intercept?.(s, f)) return;
    const r = new XdrReader(f.payload);
    if (h.prog === QEMU_PROGRAM && h.proc === QemuProc.DOMAIN_AGENT_COMMAND) return this.agent(s, f, r);
    switch (h.proc) {
      case Proc.AUTH_LIST:
        return this.reply(s, f, encRet.authList([0]));
      case Proc.CONNECT_OPEN:
        this.opens.push({ uri: r.optional((x) => x.string()), flags: r.uint() });
        if (this.pingOnOpen) {
          this.write(s, encodeFrame({ prog: KEEPALIVE_PROGRAM, vers: 1, proc: KeepaliveProc.PING, type: MessageType.MESSAGE, serial: 0, status: 0 }));
        }
        return this.reply(s, f, Buffer.alloc(0));
      case Proc.CONNECT_CLOSE:
        return this.reply(s, f, Buffer.alloc(0));
      case Proc.CONNECT_SUPPORTS_FEATURE:
        return this.reply(s, f, encRet.int(1));
      case Proc.CONNECT_LIST_ALL_DOMAINS:
        return this.reply(s, f, encRet.listAllDomains(this.guests.filter((g) => g.id > 0).map((g) => this.ref(g))));
      case Proc.DOMAIN_LOOKUP_BY_NAME: {
        const name = r.string();
        const g = this.guests.find((x) => x.name === name);
        return g ? this.reply(s, f, encRet.domain(this.ref(g))) : this.error(s, f, 42, `Domain not found: no domain with matching name '${name}'`);
      }
      case Proc.DOMAIN_LOOKUP_BY_UUID: {
        const uuid = uuidToString(r.fixedOpaque(16));
        const g = this.guests.find((x) => x.uuid === uuid);
        return g ? this.reply(s, f, encRet.domain(this.ref(g))) : this.error(s, f, 42, `Domain not found: no domain with matching uuid '${uuid}'`);
      }
      case Proc.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY: {
        const id = this.nextCallback++;
        this.callbackIds.set(s, [...(this.callbackIds.get(s) ?? []), id]);
        return this.reply(s, f, encRet.int(id));
      }
      case Proc.DOMAIN_SET_MEMORY_STATS_PERIOD: {
        const g = this.findByRef(r);
        if (!g) return this.error(s, f, 42, 'Domain not found');
        this.periods.set(g.name, r.int());
        return this.reply(s, f, Buffer.alloc(0));
      }
      case Proc.DOMAIN_SET_MEMORY_FLAGS: {
        const g = this.findByRef(r);
        if (!g) return this.error(s, f, 42, 'Domain not found: no domain with matching uuid');
        const kib = Number(r.uhyper());
        const flags = r.uint();
        if (kib > g.maxKiB) return this.error(s, f, 8, 'invalid argument: cannot set memory higher than max memory');
        g.currentKiB = kib;
        this.setMemory.push({ name: g.name, kib, flags });
        return this.reply(s, f, Buffer.alloc(0));
      }
      case Proc.DOMAIN_GET_XML_DESC: {
        const g = this.findByRef(r);
        if (!g) return this.error(s, f, 42, 'Domain not found');
        if (g.domainXml === undefined) return this.error(s, f, 3, 'this function is not supported by the fake: domain XML');
        return this.reply(s, f, new XdrWriter().string(g.domainXml).toBuffer());
      }
      case UPDATE_DEVICE_FLAGS: {
        const g = this.findByRef(r);
        if (!g) return this.error(s, f, 42, 'Domain not found');
        const xml = r.string();
        const flags = r.uint();
        this.deviceUpdates.push({ name: g.name, xml, flags });
        return this.updateMemoryDevice(s, f, g, xml);
      }
      case Proc.CONNECT_GET_ALL_DOMAIN_STATS: {
        const want = r.array((x) => readDomain(x));
        const groups = r.uint();
        const flags = r.uint();
        if (want.length && flags & 0xff) return this.error(s, f, 8, 'invalid argument: filtering flags are not supported with a domain list');
        let gs = this.guests.filter((g) => g.id > 0);
        if (want.length) {
          gs = want.map((d) => gs.find((g) => g.uuid === uuidToString(d.uuid) && g.id === d.id)).filter((g): g is FakeGuest => !!g);
          if (gs.length !== want.length) return this.error(s, f, 42, 'Domain not found');
        }
        this.statsGroupsAsked.push(groups);
        return this.reply(s, f, encRet.allDomainStats(gs.map((g) => ({ dom: this.ref(g), params: statsParams(g, groups) }))));
      }
      default:
        return this.error(s, f, 3, `this function is not supported by the fake: proc ${h.proc}`);
    }
  }

  /** As libvirt's QEMU driver: the device is found by its alias and address, only its
   *  <requested> may change, and it must be a multiple of the block. */
  private updateMemoryDevice(s: Socket, f: Frame, g: FakeGuest, xml: string): void {
    const alias = /<alias name='([^']+)'\/>/.exec(xml)?.[1];
    const requested = /<requested unit='KiB'>(\d+)<\/requested>/.exec(xml)?.[1];
    const strip = (x: string) => x.replace(/<requested\b[^>]*>[^<]*<\/requested>/, '');
    const current = (g.domainXml?.match(/<memory model='virtio-mem'>[\s\S]*?<\/memory>/g) ?? []).find((el) => strip(el) === strip(xml));
    if (!alias || !current) return this.error(s, f, 67, `unsupported configuration: memory '${alias ?? ''}' not found`);
    const block = Number(/<block unit='KiB'>(\d+)<\/block>/.exec(current)?.[1]);
    if (requested === undefined || Number(requested) % block !== 0) return this.error(s, f, 1, 'requested size must be an integer multiple of block size');
    g.domainXml = g.domainXml!.replace(current, xml);
    return this.reply(s, f, Buffer.alloc(0));
  }

  private agent(s: Socket, f: Frame, r: XdrReader): void {
    const g = this.findByRef(r);
    const cmd = JSON.parse(r.string()) as { execute: string; arguments?: Record<string, unknown> };
    if (!g) return this.error(s, f, 42, 'Domain not found');
    if (g.agentMeminfo === undefined) return this.error(s, f, 67, 'argument unsupported: QEMU guest agent is not configured');
    const ret = (v: unknown) => this.reply(s, f, encRet.agentCommand(JSON.stringify({ return: v })));
    switch (cmd.execute) {
      case 'guest-file-open': {
        const path = String(cmd.arguments?.path);
        if ((path === '/proc/pressure/memory' && g.agentPsi === undefined) || (path === '/sys/fs/cgroup/memory.reclaim' && g.agentReclaim === undefined))
          return this.error(s, f, 1, `guest-file-open: failed to open file '${path}': No such file or directory`);
        g.agentOpen = path;
        return ret(1000);
      }
      case 'guest-file-read': {
        const text = g.agentOpen === '/proc/pressure/memory' ? g.agentPsi! : g.agentMeminfo;
        return ret({ count: text.length, 'buf-b64': Buffer.from(text).toString('base64'), eof: true });
      }
      case 'guest-file-write': {
        const text = Buffer.from(String(cmd.arguments?.['buf-b64']), 'base64').toString();
        (g.agentWrites ??= []).push(`${g.agentOpen}: ${text}`);
        return ret({ count: text.length, eof: false });
      }
      case 'guest-file-close':
        if (g.agentOpen === '/sys/fs/cgroup/memory.reclaim' && g.agentReclaim === 'short')
          return this.error(
            s,
            f,
            1,
            "internal error: unable to execute QEMU agent command 'guest-file-close': failed to close handle: Resource temporarily unavailable",
          );
        return ret({});
      default:
        return this.error(s, f, 1, `unknown agent command ${cmd.execute}`);
    }
  }
}

function statsParams(g: FakeGuest, groups: number): TypedParam[] {
  const U = TypedParamType.ULLONG;
  const p: TypedParam[] = [];
  if (groups & 1) p.push({ field: 'state.state', type: TypedParamType.INT, value: 1 }, { field: 'state.reason', type: TypedParamType.INT, value: 1 });
  if (groups & 4) p.push({ field: 'balloon.current', type: U, value: g.currentKiB }, { field: 'balloon.maximum', type: U, value: g.maxKiB });
  if (groups & 4 && g.guestStats) {
    p.push(
      { field: 'balloon.swap_in', type: U, value: 0 },
      { field: 'balloon.swap_out', type: U, value: 0 },
      { field: 'balloon.major_fault', type: U, value: 11 },
      { field: 'balloon.minor_fault', type: U, value: 2222 },
      { field: 'balloon.unused', type: U, value: g.unusedKiB ?? 0 },
      { field: 'balloon.available', type: U, value: g.availableKiB ?? g.currentKiB },
      { field: 'balloon.usable', type: U, value: g.unusedKiB ?? 0 },
      { field: 'balloon.last-update', type: U, value: 1700000000 },
      { field: 'balloon.disk_caches', type: U, value: g.cachesKiB ?? 0 },
      { field: 'balloon.rss', type: U, value: g.currentKiB + 10000 },
    );
  }
  if (groups & 8)
    p.push({ field: 'vcpu.current', type: TypedParamType.UINT, value: g.vcpus ?? 1 }, { field: 'vcpu.maximum', type: TypedParamType.UINT, value: 4 });
  return p;
}

export function guest(n: number, over: Partial<FakeGuest> = {}): FakeGuest {
  return {
    name: `g${n}`,
    uuid: `00000000-0000-0000-0000-${String(n).padStart(12, '0')}`,
    id: n,
    currentKiB: 262144,
    maxKiB: 524288,
    guestStats: true,
    unusedKiB: 100000,
    availableKiB: 250000,
    cachesKiB: 20000,
    ...over,
  };
}
