// Structured logging: one record per event, each with a level, an event name and fields.
// JSON lines for machines (journald, log shippers), short human text when a person watches a
// terminal. Every action ballast takes is logged through here with its reason.
import type { Writable } from 'node:stream';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFormat = 'json' | 'text' | 'auto';
export type LogFields = Record<string, unknown>;

export interface LogRecord extends LogFields {
  ts: string;
  level: LogLevel;
  event: string;
}

export interface Logger {
  log(level: LogLevel, event: string, fields?: LogFields): void;
  debug(event: string, fields?: LogFields): void;
  info(event: string, fields?: LogFields): void;
  warn(event: string, fields?: LogFields): void;
  error(event: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every record. */
  child(fields: LogFields): Logger;
  /** Change the level at run time (the API's log-level, MOM's setVerbosity); children follow. */
  setLevel?(level: LogLevel): void;
}

const LEVEL_RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export function isLogLevel(s: string): s is LogLevel {
  return s in LEVEL_RANK;
}

/** Where records go; a sink sees only records at or above the logger's level. */
type Sink = (rec: LogRecord) => void;

/** Shared by a logger and its children, so that a level change reaches all of them. */
interface LevelRef {
  rank: number;
}

class SinkLogger implements Logger {
  constructor(
    private readonly sink: Sink,
    private readonly level: LevelRef,
    private readonly base: LogFields,
    private readonly clock: () => Date,
  ) {}

  setLevel(level: LogLevel): void {
    this.level.rank = LEVEL_RANK[level];
  }

  log(level: LogLevel, event: string, fields?: LogFields): void {
    if (LEVEL_RANK[level] < this.level.rank) return;
    const rec: LogRecord = { ts: this.clock().toISOString(), level, event, ...this.base, ...fields };
    this.sink(rec);
  }
  debug(event: string, fields?: LogFields): void {
    this.log('debug', event, fields);
  }
  info(event: string, fields?: LogFields): void {
    this.log('info', event, fields);
  }
  warn(event: string, fields?: LogFields): void {
    this.log('warn', event, fields);
  }
  error(event: string, fields?: LogFields): void {
    this.log('error', event, fields);
  }
  child(fields: LogFields): Logger {
    return new SinkLogger(this.sink, this.level, { ...this.base, ...fields }, this.clock);
  }
}

/** Errors are not JSON-serializable by default; keep their message (and code if any). */
function jsonReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    return code === undefined ? value.message : `${value.message} (${String(code)})`;
  }
  if (typeof value === 'bigint') return value.toString();
  return value;
}

export function formatJson(rec: LogRecord): string {
  return JSON.stringify(rec, jsonReplacer);
}

function textValue(v: unknown): string {
  if (v instanceof Error) return JSON.stringify(v.message);
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v, jsonReplacer) ?? String(v);
}

/** `HH:MM:SS LEVEL event key=value ...`, the reason last so it reads as a sentence. */
export function formatText(rec: LogRecord): string {
  const { ts, level, event, reason, ...rest } = rec;
  const time = ts.slice(11, 19);
  const parts = [time, level.toUpperCase().padEnd(5), event];
  for (const [k, v] of Object.entries(rest)) if (v !== undefined) parts.push(`${k}=${textValue(v)}`);
  if (reason !== undefined) parts.push(`(${Array.isArray(reason) ? reason.join('; ') : String(reason)})`);
  return parts.join(' ');
}

export interface LoggerOptions {
  format?: LogFormat;
  level?: LogLevel;
  /** Default: process.stderr. */
  stream?: Writable & { isTTY?: boolean };
  clock?: () => Date;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const stream = opts.stream ?? process.stderr;
  const format = opts.format === 'auto' || opts.format === undefined ? (stream.isTTY ? 'text' : 'json') : opts.format;
  const fmt = format === 'json' ? formatJson : formatText;
  const sink: Sink = (rec) => {
    stream.write(fmt(rec) + '\n');
  };
  return new SinkLogger(sink, { rank: LEVEL_RANK[opts.level ?? 'info'] }, {}, opts.clock ?? (() => new Date()));
}

/** A logger that keeps its records in memory: for tests and for views that show recent events. */
export interface MemoryLogger extends Logger {
  readonly records: LogRecord[];
}

export function memoryLogger(level: LogLevel = 'debug'): MemoryLogger {
  const records: LogRecord[] = [];
  const logger = new SinkLogger(
    (rec) => records.push(rec),
    { rank: LEVEL_RANK[level] },
    {},
    () => new Date(),
  );
  return Object.assign(logger, { records }) as MemoryLogger;
}

/** A logger that drops everything (benchmarks). */
export const nullLogger: Logger = Object.assign(
  new SinkLogger(
    () => {},
    { rank: Infinity },
    {},
    () => new Date(),
  ),
  {
    // Shared by everyone: a level change must not make it format records for nothing.
    setLevel: () => {},
  },
);

/** Fan records out to several loggers (e.g. the terminal and the demo's event pane). */
export function teeLogger(...loggers: Logger[]): Logger {
  const tee: Logger = {
    log: (level, event, fields) => {
      for (const l of loggers) l.log(level, event, fields);
    },
    debug: (e, f) => tee.log('debug', e, f),
    info: (e, f) => tee.log('info', e, f),
    warn: (e, f) => tee.log('warn', e, f),
    error: (e, f) => tee.log('error', e, f),
    child: (fields) => teeLogger(...loggers.map((l) => l.child(fields))),
    setLevel: (level) => {
      for (const l of loggers) l.setLevel?.(level);
    },
  };
  return tee;
}
