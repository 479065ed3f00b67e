// Errors of the libvirt client. libvirtd's own errors keep its code and message, so a caller can
// tell "domain not found" (the guest vanished; expected) from a real failure.
import type { FailureKind } from '../../errors.js';
import { ErrorCode, type RemoteError } from './protocol.js';

/** virErrorNumber values and the failure kinds they are (src/errors.ts). */
const KIND_OF_CODE: Record<number, FailureKind> = {
  [ErrorCode.NO_SUPPORT]: 'unsupported',
  84: 'unsupported',
  67: 'unsupported', // OPERATION_UNSUPPORTED, CONFIG_UNSUPPORTED
  [ErrorCode.NO_DOMAIN]: 'gone',
  [ErrorCode.OPERATION_INVALID]: 'gone', // "domain is not running"
  6: 'denied',
  88: 'denied',
  [ErrorCode.AUTH_FAILED]: 'denied', // OPERATION_DENIED, ACCESS_DENIED
  [ErrorCode.AGENT_UNRESPONSIVE]: 'unavailable',
  [ErrorCode.RPC]: 'unavailable',
};

/** An error returned by libvirtd (remote_error), with libvirt's message and virErrorNumber. */
export class LibvirtError extends Error {
  override name = 'LibvirtError';
  readonly code: number;
  /** virErrorDomain: the libvirt subsystem that raised it */
  readonly domain: number;
  readonly level: number;
  /** The procedure that failed, e.g. "DOMAIN_LOOKUP_BY_NAME". */
  readonly procedure: string;
  readonly remote: RemoteError;

  constructor(remote: RemoteError, procedure: string) {
    super(remote.message ?? `libvirt error code ${remote.code} (no message)`);
    this.code = remote.code;
    this.domain = remote.domain;
    this.level = remote.level;
    this.procedure = procedure;
    this.remote = remote;
  }

  get kind(): FailureKind {
    return KIND_OF_CODE[this.code] ?? 'failed';
  }
}

/** VIR_ERR_NO_DOMAIN: the domain does not exist (any more). */
export class DomainNotFoundError extends LibvirtError {
  override name = 'DomainNotFoundError';
}

export function libvirtErrorFrom(remote: RemoteError, procedure: string): LibvirtError {
  return remote.code === ErrorCode.NO_DOMAIN ? new DomainNotFoundError(remote, procedure) : new LibvirtError(remote, procedure);
}

/** The connection to libvirtd could not be made, or was lost (socket error, keepalive timeout, close). */
export class LibvirtConnectionError extends Error {
  override name = 'LibvirtConnectionError';
  readonly kind: FailureKind = 'unavailable';
  constructor(
    message: string,
    readonly syscallCode?: string,
  ) {
    super(message);
  }
}

/** libvirtd (or whatever is on the socket) sent something that is not valid protocol. */
export class LibvirtProtocolError extends Error {
  override name = 'LibvirtProtocolError';
  readonly kind: FailureKind = 'unavailable';
}

/** A call got no reply in time. The connection may still be alive. */
export class LibvirtTimeoutError extends Error {
  override name = 'LibvirtTimeoutError';
  readonly kind: FailureKind = 'unavailable';
}
