// Program, procedure numbers and the argument/return structs ballast uses, as defined in
// libvirt's src/remote/remote_protocol.x, src/remote/qemu_protocol.x and
// src/rpc/virkeepaliveprotocol.x, plus the public constants of libvirt-domain.h they carry.
import { type XdrReader, XdrWriter, toNumber } from './xdr.js';

export const REMOTE_PROGRAM = 0x20008086;
export const REMOTE_PROTOCOL_VERSION = 1;
export const QEMU_PROGRAM = 0x20008087;
export const QEMU_PROTOCOL_VERSION = 1;
export const KEEPALIVE_PROGRAM = 0x6b656570;
export const KEEPALIVE_PROTOCOL_VERSION = 1;

/** remote_procedure (only those used here). */
export const Proc = {
  CONNECT_OPEN: 1,
  CONNECT_CLOSE: 2,
  DOMAIN_DESTROY: 12,
  DOMAIN_GET_XML_DESC: 14,
  DOMAIN_GET_INFO: 16,
  DOMAIN_LOOKUP_BY_NAME: 23,
  DOMAIN_LOOKUP_BY_UUID: 24,
  CONNECT_SUPPORTS_FEATURE: 60,
  AUTH_LIST: 66,
  AUTH_POLKIT: 70,
  CONNECT_GET_URI: 110,
  CONNECT_GET_LIB_VERSION: 157,
  DOMAIN_MEMORY_STATS: 159,
  DOMAIN_SET_MEMORY_FLAGS: 204,
  DOMAIN_GET_STATE: 212,
  CONNECT_LIST_ALL_DOMAINS: 273,
  DOMAIN_SET_MEMORY_STATS_PERIOD: 308,
  CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY: 316,
  CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY: 317,
  DOMAIN_EVENT_CALLBACK_LIFECYCLE: 318,
  DOMAIN_EVENT_CALLBACK_BALLOON_CHANGE: 331,
  CONNECT_GET_ALL_DOMAIN_STATS: 344,
} as const;

export const QemuProc = {
  DOMAIN_AGENT_COMMAND: 3,
} as const;

export const KeepaliveProc = {
  PING: 1,
  PONG: 2,
} as const;

/** remote_auth_type */
export const AuthType = { NONE: 0, SASL: 1, POLKIT: 2 } as const;

/** virDrvFeature values that matter here. */
export const Feature = { PROGRAM_KEEPALIVE: 10, REMOTE_EVENT_CALLBACK: 14 } as const;

/** virConnectFlags */
export const CONNECT_RO = 1;

/** virConnectListAllDomainsFlags / virConnectGetAllDomainStatsFlags share these bits. */
export const ListFlags = { ACTIVE: 1, INACTIVE: 2, PERSISTENT: 4, TRANSIENT: 8, RUNNING: 16, PAUSED: 32, SHUTOFF: 64, OTHER: 128 } as const;

/** virDomainStatsTypes */
export const StatsTypes = { STATE: 1, CPU_TOTAL: 2, BALLOON: 4, VCPU: 8, INTERFACE: 16, BLOCK: 32 } as const;

/** virDomainModificationImpact (virDomainMemoryModFlags) */
export const Affect = { CURRENT: 0, LIVE: 1, CONFIG: 2 } as const;

/** virDomainEventID */
export const EventId = { LIFECYCLE: 0, BALLOON_CHANGE: 13 } as const;

/** virDomainEventType (lifecycle) */
export const LifecycleEventType = {
  DEFINED: 0,
  UNDEFINED: 1,
  STARTED: 2,
  SUSPENDED: 3,
  RESUMED: 4,
  STOPPED: 5,
  SHUTDOWN: 6,
  PMSUSPENDED: 7,
  CRASHED: 8,
} as const;

/** virDomainEventStoppedDetailType */
export const StoppedDetail = { SHUTDOWN: 0, DESTROYED: 1, CRASHED: 2, MIGRATED: 3, SAVED: 4, FAILED: 5, FROM_SNAPSHOT: 6 } as const;

/** virDomainState */
export const DomainState = {
  NOSTATE: 0,
  RUNNING: 1,
  BLOCKED: 2,
  PAUSED: 3,
  SHUTDOWN: 4,
  SHUTOFF: 5,
  CRASHED: 6,
  PMSUSPENDED: 7,
} as const;

/** virDomainMemoryStatTags */
export const MemoryStatTag = {
  SWAP_IN: 0,
  SWAP_OUT: 1,
  MAJOR_FAULT: 2,
  MINOR_FAULT: 3,
  UNUSED: 4,
  AVAILABLE: 5,
  ACTUAL_BALLOON: 6,
  RSS: 7,
  USABLE: 8,
  LAST_UPDATE: 9,
  DISK_CACHES: 10,
  HUGETLB_PGALLOC: 11,
  HUGETLB_PGFAIL: 12,
} as const;

/** virErrorNumber values the driver reacts to. */
export const ErrorCode = {
  NO_SUPPORT: 3,
  RPC: 39,
  NO_DOMAIN: 42,
  AUTH_FAILED: 45,
  OPERATION_INVALID: 55,
  AGENT_UNRESPONSIVE: 86,
} as const;

/** virTypedParameterType */
export const TypedParamType = { INT: 1, UINT: 2, LLONG: 3, ULLONG: 4, DOUBLE: 5, BOOLEAN: 6, STRING: 7 } as const;

/** qemu agent command timeouts (virDomainQemuAgentCommandTimeoutValues) */
export const AgentTimeout = { BLOCK: -2, DEFAULT: -1, NOWAIT: 0 } as const;

// Limits from remote_protocol.x (decoder sanity bounds).
export const REMOTE_STRING_MAX = 4194304;
export const REMOTE_DOMAIN_LIST_MAX = 16384;
export const REMOTE_AUTH_TYPE_LIST_MAX = 20;
export const REMOTE_DOMAIN_MEMORY_STATS_MAX = 1024;
export const REMOTE_CONNECT_GET_ALL_DOMAIN_STATS_MAX = 4096;
export const VIR_UUID_BUFLEN = 16;

// ---------- shared types ----------

/** remote_nonnull_domain */
export interface DomainRef {
  name: string;
  uuid: Buffer;
  /** -1 when not running */
  id: number;
}

export function uuidToString(uuid: Uint8Array): string {
  const h = Buffer.from(uuid).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export function uuidFromString(s: string): Buffer {
  const hex = s.replace(/-/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new Error(`not a UUID: ${JSON.stringify(s)}`);
  return Buffer.from(hex, 'hex');
}

export function writeDomain(w: XdrWriter, d: DomainRef): void {
  w.string(d.name, REMOTE_STRING_MAX).fixedOpaque(d.uuid, VIR_UUID_BUFLEN).int(d.id);
}

export function readDomain(r: XdrReader): DomainRef {
  return { name: r.string(REMOTE_STRING_MAX), uuid: r.fixedOpaque(VIR_UUID_BUFLEN), id: r.int() };
}

const readOptString = (r: XdrReader) => r.optional((x) => x.string(REMOTE_STRING_MAX));

/** remote_error */
export interface RemoteError {
  code: number;
  domain: number;
  message: string | null;
  level: number;
  dom: DomainRef | null;
  str1: string | null;
  str2: string | null;
  str3: string | null;
  int1: number;
  int2: number;
}

export function readRemoteError(r: XdrReader): RemoteError {
  const code = r.int();
  const domain = r.int();
  const message = readOptString(r);
  const level = r.int();
  const dom = r.optional(readDomain);
  const str1 = readOptString(r);
  const str2 = readOptString(r);
  const str3 = readOptString(r);
  const int1 = r.int();
  const int2 = r.int();
  // remote_network net: unused by libvirt, but it is on the wire.
  r.optional((x) => ({ name: x.string(REMOTE_STRING_MAX), uuid: x.fixedOpaque(VIR_UUID_BUFLEN) }));
  return { code, domain, message, level, dom, str1, str2, str3, int1, int2 };
}

export function writeRemoteError(w: XdrWriter, e: RemoteError): void {
  const optStr = (s: string | null) => w.optional(s, (x, v) => x.string(v));
  w.int(e.code).int(e.domain);
  optStr(e.message);
  w.int(e.level);
  w.optional(e.dom, writeDomain);
  optStr(e.str1);
  optStr(e.str2);
  optStr(e.str3);
  w.int(e.int1).int(e.int2);
  w.bool(false);
}

// ---------- typed parameters ----------

export type TypedValue = number | bigint | boolean | string;

export interface TypedParam {
  field: string;
  type: number;
  value: TypedValue;
}

export function readTypedParam(r: XdrReader): TypedParam {
  const field = r.string(REMOTE_STRING_MAX);
  const type = r.int();
  let value: TypedValue;
  switch (type) {
    case TypedParamType.INT:
      value = r.int();
      break;
    case TypedParamType.UINT:
      value = r.uint();
      break;
    case TypedParamType.LLONG:
      value = r.hyperNarrow();
      break;
    case TypedParamType.ULLONG:
      value = r.uhyperNarrow();
      break;
    case TypedParamType.DOUBLE:
      value = r.double();
      break;
    case TypedParamType.BOOLEAN:
      value = r.int() !== 0;
      break;
    case TypedParamType.STRING:
      value = r.string(REMOTE_STRING_MAX);
      break;
    default:
      throw new Error(`typed parameter ${JSON.stringify(field)} has unknown type ${type}`);
  }
  return { field, type, value };
}

export function writeTypedParam(w: XdrWriter, p: TypedParam): void {
  w.string(p.field).int(p.type);
  switch (p.type) {
    case TypedParamType.INT:
      w.int(Number(p.value));
      break;
    case TypedParamType.UINT:
      w.uint(Number(p.value));
      break;
    case TypedParamType.LLONG:
      w.hyper(BigInt(p.value as number | bigint));
      break;
    case TypedParamType.ULLONG:
      w.uhyper(BigInt(p.value as number | bigint));
      break;
    case TypedParamType.DOUBLE:
      w.double(Number(p.value));
      break;
    case TypedParamType.BOOLEAN:
      w.int(p.value ? 1 : 0);
      break;
    case TypedParamType.STRING:
      w.string(String(p.value));
      break;
    default:
      throw new Error(`unknown typed parameter type ${p.type}`);
  }
}

/** Typed parameters as a plain field -> value map. */
export function paramsToRecord(params: readonly TypedParam[]): Record<string, TypedValue> {
  const out: Record<string, TypedValue> = {};
  for (const p of params) out[p.field] = p.value;
  return out;
}

// ---------- procedure args / rets ----------

export const enc = {
  connectOpen(uri: string | null, flags: number): Buffer {
    return new XdrWriter()
      .optional(uri, (w, v) => w.string(v, REMOTE_STRING_MAX))
      .uint(flags)
      .toBuffer();
  },
  supportsFeature(feature: number): Buffer {
    return new XdrWriter().int(feature).toBuffer();
  },
  domainOnly(dom: DomainRef): Buffer {
    const w = new XdrWriter();
    writeDomain(w, dom);
    return w.toBuffer();
  },
  lookupByName(name: string): Buffer {
    return new XdrWriter().string(name, REMOTE_STRING_MAX).toBuffer();
  },
  lookupByUuid(uuid: Buffer): Buffer {
    return new XdrWriter().fixedOpaque(uuid, VIR_UUID_BUFLEN).toBuffer();
  },
  listAllDomains(flags: number): Buffer {
    // need_results = 1: we want the list, not only the count.
    return new XdrWriter().int(1).uint(flags).toBuffer();
  },
  memoryStats(dom: DomainRef, maxStats: number, flags = 0): Buffer {
    const w = new XdrWriter();
    writeDomain(w, dom);
    return w.uint(maxStats).uint(flags).toBuffer();
  },
  setMemoryStatsPeriod(dom: DomainRef, period: number, flags: number): Buffer {
    const w = new XdrWriter();
    writeDomain(w, dom);
    return w.int(period).uint(flags).toBuffer();
  },
  setMemoryFlags(dom: DomainRef, kib: number | bigint, flags: number): Buffer {
    const w = new XdrWriter();
    writeDomain(w, dom);
    return w.uhyper(kib).uint(flags).toBuffer();
  },
  getXmlDesc(dom: DomainRef, flags = 0): Buffer {
    const w = new XdrWriter();
    writeDomain(w, dom);
    return w.uint(flags).toBuffer();
  },
  getState(dom: DomainRef, flags = 0): Buffer {
    const w = new XdrWriter();
    writeDomain(w, dom);
    return w.uint(flags).toBuffer();
  },
  getAllDomainStats(doms: readonly DomainRef[], stats: number, flags: number): Buffer {
    return new XdrWriter().array(doms, writeDomain, REMOTE_DOMAIN_LIST_MAX).uint(stats).uint(flags).toBuffer();
  },
  eventCallbackRegisterAny(eventId: number, dom: DomainRef | null): Buffer {
    return new XdrWriter().int(eventId).optional(dom, writeDomain).toBuffer();
  },
  eventCallbackDeregisterAny(callbackId: number): Buffer {
    return new XdrWriter().int(callbackId).toBuffer();
  },
  agentCommand(dom: DomainRef, cmd: string, timeout: number, flags = 0): Buffer {
    const w = new XdrWriter();
    writeDomain(w, dom);
    return w.string(cmd, REMOTE_STRING_MAX).int(timeout).uint(flags).toBuffer();
  },
};

export interface DomainInfo {
  state: number;
  /** KiB */
  maxMem: number;
  /** KiB */
  memory: number;
  nrVirtCpu: number;
  /** nanoseconds */
  cpuTime: bigint;
}

export interface MemoryStat {
  tag: number;
  val: number;
}

export interface DomainStatsRecord {
  dom: DomainRef;
  params: TypedParam[];
}

export interface LifecycleMsg {
  callbackId: number;
  dom: DomainRef;
  event: number;
  detail: number;
}

export interface BalloonChangeMsg {
  callbackId: number;
  dom: DomainRef;
  /** KiB */
  actual: number;
}

/** Decoders of return structs; each checks that the payload is consumed exactly. */
export const dec = {
  authList(r: XdrReader): number[] {
    return r.array((x) => x.int(), REMOTE_AUTH_TYPE_LIST_MAX);
  },
  int(r: XdrReader): number {
    return r.int();
  },
  uhyper(r: XdrReader): bigint {
    return r.uhyper();
  },
  string(r: XdrReader): string {
    return r.string(REMOTE_STRING_MAX);
  },
  domain(r: XdrReader): DomainRef {
    return readDomain(r);
  },
  listAllDomains(r: XdrReader): DomainRef[] {
    const doms = r.array(readDomain, REMOTE_DOMAIN_LIST_MAX);
    r.uint(); // ret: the count, same as doms.length
    return doms;
  },
  domainInfo(r: XdrReader): DomainInfo {
    return {
      state: r.uint(),
      maxMem: toNumber(r.uhyper()),
      memory: toNumber(r.uhyper()),
      nrVirtCpu: r.uint(),
      cpuTime: r.uhyper(),
    };
  },
  memoryStats(r: XdrReader): MemoryStat[] {
    return r.array((x) => ({ tag: x.int(), val: toNumber(x.uhyper()) }), REMOTE_DOMAIN_MEMORY_STATS_MAX);
  },
  getState(r: XdrReader): { state: number; reason: number } {
    return { state: r.int(), reason: r.int() };
  },
  allDomainStats(r: XdrReader): DomainStatsRecord[] {
    return r.array((x) => ({ dom: readDomain(x), params: x.array(readTypedParam, REMOTE_CONNECT_GET_ALL_DOMAIN_STATS_MAX) }), REMOTE_DOMAIN_LIST_MAX);
  },
  lifecycleMsg(r: XdrReader): LifecycleMsg {
    return { callbackId: r.int(), dom: readDomain(r), event: r.int(), detail: r.int() };
  },
  balloonChangeMsg(r: XdrReader): BalloonChangeMsg {
    return { callbackId: r.int(), dom: readDomain(r), actual: toNumber(r.uhyper()) };
  },
  agentCommand(r: XdrReader): string | null {
    return r.optional((x) => x.string(REMOTE_STRING_MAX));
  },
};

/** Encoders of the server's side of the structs above, for tests and the fake daemon. */
export const encRet = {
  authList(types: number[]): Buffer {
    return new XdrWriter().array(types, (w, v) => w.int(v)).toBuffer();
  },
  domain(d: DomainRef): Buffer {
    const w = new XdrWriter();
    writeDomain(w, d);
    return w.toBuffer();
  },
  listAllDomains(doms: DomainRef[]): Buffer {
    return new XdrWriter().array(doms, writeDomain).uint(doms.length).toBuffer();
  },
  domainInfo(i: DomainInfo): Buffer {
    return new XdrWriter().uint(i.state).uhyper(i.maxMem).uhyper(i.memory).uint(i.nrVirtCpu).uhyper(i.cpuTime).toBuffer();
  },
  memoryStats(stats: MemoryStat[]): Buffer {
    return new XdrWriter().array(stats, (w, s) => w.int(s.tag).uhyper(s.val)).toBuffer();
  },
  allDomainStats(recs: DomainStatsRecord[]): Buffer {
    return new XdrWriter()
      .array(recs, (w, rec) => {
        writeDomain(w, rec.dom);
        w.array(rec.params, writeTypedParam);
      })
      .toBuffer();
  },
  lifecycleMsg(m: LifecycleMsg): Buffer {
    const w = new XdrWriter().int(m.callbackId);
    writeDomain(w, m.dom);
    return w.int(m.event).int(m.detail).toBuffer();
  },
  int(v: number): Buffer {
    return new XdrWriter().int(v).toBuffer();
  },
  error(e: RemoteError): Buffer {
    const w = new XdrWriter();
    writeRemoteError(w, e);
    return w.toBuffer();
  },
  agentCommand(result: string | null): Buffer {
    return new XdrWriter().optional(result, (w, v) => w.string(v)).toBuffer();
  },
};
