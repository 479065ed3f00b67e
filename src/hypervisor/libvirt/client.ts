// A client of libvirtd's remote protocol over its unix socket: calls matched to replies by
// serial number, asynchronous event messages, keepalive (answering the daemon's PINGs, sending
// our own and declaring the peer dead when nothing comes back). No libvirt library, no virsh.
import { createConnection, type Socket } from 'node:net';
import { FrameDecoder, MessageStatus, MessageType, encodeFrame, type Frame } from './framing.js';
import {
  AuthType,
  CONNECT_RO,
  EventId,
  Feature,
  KEEPALIVE_PROGRAM,
  KEEPALIVE_PROTOCOL_VERSION,
  KeepaliveProc,
  ListFlags,
  Proc,
  QEMU_PROGRAM,
  QEMU_PROTOCOL_VERSION,
  QemuProc,
  REMOTE_PROGRAM,
  REMOTE_PROTOCOL_VERSION,
  REMOTE_STRING_MAX,
  AgentTimeout,
  dec,
  enc,
  readRemoteError,
  uuidFromString,
  type BalloonChangeMsg,
  type DomainInfo,
  type DomainRef,
  type DomainStatsRecord,
  type LifecycleMsg,
  type MemoryStat,
} from './protocol.js';
import { XdrReader } from './xdr.js';
import { LibvirtConnectionError, LibvirtProtocolError, LibvirtTimeoutError, libvirtErrorFrom } from './errors.js';

export const DEFAULT_SOCKET = '/var/run/libvirt/libvirt-sock';
export const DEFAULT_RO_SOCKET = '/var/run/libvirt/libvirt-sock-ro';
export const DEFAULT_URI = 'qemu:///system';

export interface ClientOptions {
  /** Unix socket of libvirtd. Default: libvirt-sock, or libvirt-sock-ro when readOnly. */
  socketPath?: string;
  /** Connection URI passed to CONNECT_OPEN. Default qemu:///system. */
  uri?: string;
  /** Open read-only (the -ro socket allows only this). */
  readOnly?: boolean;
  /** Give up on a call after this long. Default 30 s. */
  callTimeoutMs?: number;
  /** Give up connecting after this long. Default 5 s. */
  connectTimeoutMs?: number;
  /** Send a PING after this much silence; 0 disables our keepalive. Default 5 s (libvirt's). */
  keepaliveIntervalMs?: number;
  /** Declare the peer dead after this many unanswered PINGs. Default 5 (libvirt's). */
  keepaliveCount?: number;
}

const PROC_NAMES: Record<number, string> = Object.fromEntries(Object.entries(Proc).map(([k, v]) => [v, k]));
const QEMU_PROC_NAMES: Record<number, string> = Object.fromEntries(Object.entries(QemuProc).map(([k, v]) => [v, k]));

interface Pending {
  resolve: (payload: Buffer) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
  name: string;
  prog: number;
  proc: number;
}

export type CloseListener = (err: Error | null) => void;
export type LifecycleListener = (msg: LifecycleMsg) => void;
export type BalloonListener = (msg: BalloonChangeMsg) => void;

/** Counters of what went over the wire; tests and the benchmark read them. */
export interface ClientStats {
  callsSent: number;
  repliesMatched: number;
  unmatchedReplies: number;
  eventsReceived: number;
  pingsReceived: number;
  pongsSent: number;
  pingsSent: number;
  pongsReceived: number;
}

export class LibvirtClient {
  readonly socketPath: string;
  readonly uri: string;
  readonly readOnly: boolean;
  readonly stats: ClientStats = {
    callsSent: 0,
    repliesMatched: 0,
    unmatchedReplies: 0,
    eventsReceived: 0,
    pingsReceived: 0,
    pongsSent: 0,
    pingsSent: 0,
    pongsReceived: 0,
  };

  private sock: Socket | null = null;
  private readonly decoder = new FrameDecoder();
  private serial = 0;
  private readonly pending = new Map<number, Pending>();
  private closed = false;
  private closeError: Error | null = null;
  private closeListeners = new Set<CloseListener>();
  private lifecycleListeners = new Set<LifecycleListener>();
  private balloonListeners = new Set<BalloonListener>();
  private readonly callTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly kaInterval: number;
  private readonly kaCount: number;
  private kaTimer: NodeJS.Timeout | null = null;
  private lastRx = Date.now();
  private kaMissed = 0;

  constructor(opts: ClientOptions = {}) {
    this.readOnly = opts.readOnly ?? false;
    this.socketPath = opts.socketPath ?? (this.readOnly ? DEFAULT_RO_SOCKET : DEFAULT_SOCKET);
    this.uri = opts.uri ?? DEFAULT_URI;
    this.callTimeoutMs = opts.callTimeoutMs ?? 30_000;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 5_000;
    this.kaInterval = opts.keepaliveIntervalMs ?? 5_000;
    this.kaCount = opts.keepaliveCount ?? 5;
  }

  /** Connect, authenticate, open the URI and start keepalive: a ready client. */
  static async connect(opts: ClientOptions = {}): Promise<LibvirtClient> {
    const c = new LibvirtClient(opts);
    await c.open();
    return c;
  }

  get isOpen(): boolean {
    return this.sock !== null && !this.closed;
  }

  async open(): Promise<void> {
    if (this.sock) throw new Error('LibvirtClient.open() called twice');
    await this.openSocket();
    try {
      await this.authenticate();
      await this.call(Proc.CONNECT_OPEN, enc.connectOpen(this.uri, this.readOnly ? CONNECT_RO : 0));
      // Asking about the keepalive feature is also what makes libvirtd start its own
      // keepalive towards this client; both sides then notice a dead peer.
      const ka = await this.call(Proc.CONNECT_SUPPORTS_FEATURE, enc.supportsFeature(Feature.PROGRAM_KEEPALIVE), dec.int);
      if (ka && this.kaInterval > 0) this.startKeepalive();
    } catch (err) {
      this.destroy(err as Error);
      throw err;
    }
  }

  private openSocket(): Promise<void> {
    return new Promise((resolve, reject) => {
      const sock = createConnection({ path: this.socketPath });
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new LibvirtConnectionError(`timed out connecting to libvirtd at ${this.socketPath} after ${this.connectTimeoutMs} ms`));
      }, this.connectTimeoutMs);
      const onError = (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(connectError(this.socketPath, err));
      };
      sock.once('error', onError);
      sock.once('connect', () => {
        clearTimeout(timer);
        sock.off('error', onError);
        this.attach(sock);
        resolve();
      });
    });
  }

  private attach(sock: Socket): void {
    this.sock = sock;
    this.lastRx = Date.now();
    sock.setNoDelay?.(true);
    sock.on('data', (chunk: Buffer) => this.onData(chunk));
    sock.on('error', (err: NodeJS.ErrnoException) => this.destroy(new LibvirtConnectionError(`libvirtd connection error: ${err.message}`, err.code)));
    sock.on('close', () => this.destroy(new LibvirtConnectionError('libvirtd closed the connection')));
  }

  private async authenticate(): Promise<void> {
    const types = await this.call(Proc.AUTH_LIST, undefined, dec.authList);
    // An empty list, or "none" among them, needs no more (root or the unix socket's group).
    if (types.length === 0 || types.includes(AuthType.NONE)) return;
    if (types.includes(AuthType.POLKIT)) {
      const complete = await this.call(Proc.AUTH_POLKIT, undefined, dec.int);
      if (complete) return;
      throw new LibvirtConnectionError('libvirtd polkit authentication did not complete');
    }
    const names = types.map((t) => (t === AuthType.SASL ? 'sasl' : `type ${t}`)).join(', ');
    throw new LibvirtConnectionError(
      `libvirtd at ${this.socketPath} requires authentication ballast does not do (${names}); run as root or configure auth_unix_rw = "none"`,
    );
  }

  // ---------- wire ----------

  private onData(chunk: Buffer): void {
    this.lastRx = Date.now();
    this.kaMissed = 0;
    let frames: Frame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.destroy(new LibvirtProtocolError(`garbage from ${this.socketPath}: ${(err as Error).message}`));
      return;
    }
    for (const f of frames) this.onFrame(f);
  }

  private onFrame(f: Frame): void {
    const h = f.header;
    if (h.type === MessageType.REPLY || h.type === MessageType.REPLY_WITH_FDS) {
      const p = this.pending.get(h.serial);
      if (!p) {
        // A reply to a call that already timed out, or nonsense: not fatal.
        this.stats.unmatchedReplies++;
        return;
      }
      this.pending.delete(h.serial);
      clearTimeout(p.timer);
      this.stats.repliesMatched++;
      if (h.prog !== p.prog || h.proc !== p.proc) {
        p.reject(new LibvirtProtocolError(`${p.name}: reply with serial ${h.serial} is for program ${h.prog.toString(16)} procedure ${h.proc}`));
        return;
      }
      if (h.status === MessageStatus.OK) {
        p.resolve(f.payload);
        return;
      }
      try {
        const r = new XdrReader(f.payload);
        p.reject(libvirtErrorFrom(readRemoteError(r), p.name));
      } catch (err) {
        p.reject(new LibvirtProtocolError(`${p.name}: undecodable error reply: ${(err as Error).message}`));
      }
      return;
    }
    if (h.type === MessageType.MESSAGE) {
      if (h.prog === KEEPALIVE_PROGRAM) return this.onKeepalive(h.proc);
      if (h.prog === REMOTE_PROGRAM) return this.onEvent(h.proc, f.payload);
    }
    // Streams and events of programs we never subscribed to: ignored.
  }

  private onKeepalive(proc: number): void {
    if (proc === KeepaliveProc.PING) {
      this.stats.pingsReceived++;
      this.sendMessage(KEEPALIVE_PROGRAM, KEEPALIVE_PROTOCOL_VERSION, KeepaliveProc.PONG);
      this.stats.pongsSent++;
    } else if (proc === KeepaliveProc.PONG) {
      this.stats.pongsReceived++;
    }
  }

  private onEvent(proc: number, payload: Buffer): void {
    this.stats.eventsReceived++;
    try {
      if (proc === Proc.DOMAIN_EVENT_CALLBACK_LIFECYCLE) {
        const msg = decodeExact(payload, dec.lifecycleMsg, 'lifecycle event');
        for (const l of this.lifecycleListeners) l(msg);
      } else if (proc === Proc.DOMAIN_EVENT_CALLBACK_BALLOON_CHANGE) {
        const msg = decodeExact(payload, dec.balloonChangeMsg, 'balloon change event');
        for (const l of this.balloonListeners) l(msg);
      }
    } catch (err) {
      // A malformed event must not kill the connection or the listener loop.
      process.emitWarning(`libvirt: dropped malformed event ${proc}: ${(err as Error).message}`);
    }
  }

  private sendMessage(prog: number, vers: number, proc: number): void {
    this.sock?.write(encodeFrame({ prog, vers, proc, type: MessageType.MESSAGE, serial: 0, status: MessageStatus.OK }));
  }

  private startKeepalive(): void {
    const tick = () => {
      if (!this.isOpen) return;
      if (Date.now() - this.lastRx < this.kaInterval) return;
      if (this.kaMissed >= this.kaCount) {
        this.destroy(
          new LibvirtConnectionError(
            `libvirtd did not answer ${this.kaCount} keepalive pings in ${(this.kaCount * this.kaInterval) / 1000} s: connection declared dead`,
          ),
        );
        return;
      }
      this.kaMissed++;
      this.stats.pingsSent++;
      this.sendMessage(KEEPALIVE_PROGRAM, KEEPALIVE_PROTOCOL_VERSION, KeepaliveProc.PING);
    };
    this.kaTimer = setInterval(tick, this.kaInterval);
    this.kaTimer.unref();
  }

  /**
   * One RPC: send the call, resolve with the decoded reply. The reply must fill its payload
   * exactly; libvirtd's errors reject with LibvirtError (DomainNotFoundError for code 42).
   */
  call(proc: number, args?: Buffer): Promise<void>;
  call<T>(proc: number, args: Buffer | undefined, decode: (r: XdrReader) => T, prog?: number): Promise<T>;
  // biome-ignore lint/suspicious/noConfusingVoidType: a call without a decoder resolves to nothing
  async call<T>(proc: number, args?: Buffer, decode?: (r: XdrReader) => T, prog = REMOTE_PROGRAM): Promise<T | void> {
    const name = prog === QEMU_PROGRAM ? `QEMU_${QEMU_PROC_NAMES[proc] ?? proc}` : (PROC_NAMES[proc] ?? `PROC_${proc}`);
    const payload = await this.rawCall(prog, proc, args, name);
    if (!decode) {
      if (payload.length) throw new LibvirtProtocolError(`${name}: expected an empty reply, got ${payload.length} bytes`);
      return;
    }
    try {
      return decodeExact(payload, decode, name);
    } catch (err) {
      throw new LibvirtProtocolError(`${name}: malformed reply: ${(err as Error).message}`);
    }
  }

  private rawCall(prog: number, proc: number, args: Buffer | undefined, name: string): Promise<Buffer> {
    if (!this.sock || this.closed) {
      return Promise.reject(this.closeError ?? new LibvirtConnectionError('not connected to libvirtd'));
    }
    const serial = (this.serial = (this.serial + 1) >>> 0);
    const vers = prog === QEMU_PROGRAM ? QEMU_PROTOCOL_VERSION : REMOTE_PROTOCOL_VERSION;
    const frame = encodeFrame({ prog, vers, proc, type: MessageType.CALL, serial, status: MessageStatus.OK }, args);
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(serial);
        reject(new LibvirtTimeoutError(`${name}: no reply from libvirtd in ${this.callTimeoutMs} ms`));
      }, this.callTimeoutMs);
      this.pending.set(serial, { resolve, reject, timer, name, prog, proc });
      this.stats.callsSent++;
      this.sock!.write(frame);
    });
  }

  // ---------- lifecycle of the connection ----------

  onClose(l: CloseListener): () => void {
    this.closeListeners.add(l);
    return () => this.closeListeners.delete(l);
  }

  onLifecycle(l: LifecycleListener): () => void {
    this.lifecycleListeners.add(l);
    return () => this.lifecycleListeners.delete(l);
  }

  onBalloonChange(l: BalloonListener): () => void {
    this.balloonListeners.add(l);
    return () => this.balloonListeners.delete(l);
  }

  /** Polite close: CONNECT_CLOSE, then the socket. */
  async close(): Promise<void> {
    if (this.closed || !this.sock) return;
    try {
      await Promise.race([this.call(Proc.CONNECT_CLOSE), new Promise((r) => setTimeout(r, 1000).unref())]);
    } catch {
      // closing anyway
    }
    this.destroy(null);
  }

  /** Drops the connection now; pending calls reject with `err` (or a "closed" error). */
  destroy(err: Error | null): void {
    if (this.closed) return;
    this.closed = true;
    this.closeError = err ?? new LibvirtConnectionError('connection to libvirtd closed');
    if (this.kaTimer) clearInterval(this.kaTimer);
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(err ?? new LibvirtConnectionError(`${p.name}: connection to libvirtd closed`));
    }
    this.pending.clear();
    this.sock?.destroy();
    for (const l of this.closeListeners) l(err);
  }

  // ---------- the calls ballast needs ----------

  getLibVersion(): Promise<bigint> {
    return this.call(Proc.CONNECT_GET_LIB_VERSION, undefined, dec.uhyper);
  }

  getUri(): Promise<string> {
    return this.call(Proc.CONNECT_GET_URI, undefined, dec.string);
  }

  /** Default: running and paused domains (ACTIVE). */
  listAllDomains(flags: number = ListFlags.ACTIVE): Promise<DomainRef[]> {
    return this.call(Proc.CONNECT_LIST_ALL_DOMAINS, enc.listAllDomains(flags), dec.listAllDomains);
  }

  lookupByName(name: string): Promise<DomainRef> {
    return this.call(Proc.DOMAIN_LOOKUP_BY_NAME, enc.lookupByName(name), dec.domain);
  }

  lookupByUuid(uuid: string | Buffer): Promise<DomainRef> {
    const bytes = typeof uuid === 'string' ? uuidFromString(uuid) : uuid;
    return this.call(Proc.DOMAIN_LOOKUP_BY_UUID, enc.lookupByUuid(bytes), dec.domain);
  }

  /** The live domain XML (flags 0: no secrets, which a read-only connection may not see). */
  getXmlDesc(dom: DomainRef, flags = 0): Promise<string> {
    return this.call(Proc.DOMAIN_GET_XML_DESC, enc.getXmlDesc(dom, flags), (r) => r.string(REMOTE_STRING_MAX));
  }

  getInfo(dom: DomainRef): Promise<DomainInfo> {
    return this.call(Proc.DOMAIN_GET_INFO, enc.domainOnly(dom), dec.domainInfo);
  }

  getState(dom: DomainRef): Promise<{ state: number; reason: number }> {
    return this.call(Proc.DOMAIN_GET_STATE, enc.getState(dom), dec.getState);
  }

  /** The balloon driver's statistics (virsh dommemstat): tag -> value, KiB except faults. */
  memoryStats(dom: DomainRef, maxStats = 16): Promise<MemoryStat[]> {
    return this.call(Proc.DOMAIN_MEMORY_STATS, enc.memoryStats(dom, maxStats), dec.memoryStats);
  }

  setMemoryStatsPeriod(dom: DomainRef, seconds: number, flags: number): Promise<void> {
    return this.call(Proc.DOMAIN_SET_MEMORY_STATS_PERIOD, enc.setMemoryStatsPeriod(dom, seconds, flags));
  }

  /** Balloon target in KiB (flags: Affect.LIVE to change the running guest). */
  setMemoryFlags(dom: DomainRef, kib: number, flags: number): Promise<void> {
    return this.call(Proc.DOMAIN_SET_MEMORY_FLAGS, enc.setMemoryFlags(dom, Math.round(kib), flags));
  }

  destroyDomain(dom: DomainRef): Promise<void> {
    return this.call(Proc.DOMAIN_DESTROY, enc.domainOnly(dom));
  }

  /** connect-get-all-domain-stats: one call for every matching domain. doms=[] means all. */
  getAllDomainStats(stats: number, flags: number, doms: readonly DomainRef[] = []): Promise<DomainStatsRecord[]> {
    return this.call(Proc.CONNECT_GET_ALL_DOMAIN_STATS, enc.getAllDomainStats(doms, stats, flags), dec.allDomainStats);
  }

  /** Registers for an event of all domains (dom null) or one; returns libvirtd's callback id. */
  registerEvent(eventId: number = EventId.LIFECYCLE, dom: DomainRef | null = null): Promise<number> {
    return this.call(Proc.CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY, enc.eventCallbackRegisterAny(eventId, dom), dec.int);
  }

  deregisterEvent(callbackId: number): Promise<void> {
    return this.call(Proc.CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY, enc.eventCallbackDeregisterAny(callbackId));
  }

  /** qemu guest agent passthrough: a JSON command in, the agent's JSON reply out. */
  agentCommand(dom: DomainRef, cmd: string | object, timeoutSec: number = AgentTimeout.DEFAULT): Promise<string | null> {
    const text = typeof cmd === 'string' ? cmd : JSON.stringify(cmd);
    return this.call(QemuProc.DOMAIN_AGENT_COMMAND, enc.agentCommand(dom, text, timeoutSec), dec.agentCommand, QEMU_PROGRAM);
  }
}

function decodeExact<T>(payload: Buffer, decode: (r: XdrReader) => T, what: string): T {
  const r = new XdrReader(payload);
  const v = decode(r);
  r.done(what);
  return v;
}

function connectError(path: string, err: NodeJS.ErrnoException): LibvirtConnectionError {
  const why: Record<string, string> = {
    ENOENT: 'no such socket; is libvirtd running?',
    ECONNREFUSED: 'connection refused; libvirtd is not listening (stale socket?)',
    EACCES: 'permission denied; run as root or join the libvirt group',
    ENOTSOCK: 'not a socket',
  };
  const hint = err.code && why[err.code] ? ` (${why[err.code]})` : '';
  return new LibvirtConnectionError(`cannot connect to libvirtd at ${path}: ${err.code ?? err.message}${hint}`, err.code);
}
