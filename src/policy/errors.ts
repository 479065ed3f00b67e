// Errors of the policy language. A parse error refuses the whole policy; a runtime error
// carries the position of the form that failed.

/** A policy that cannot be tokenized or parsed. The message is `FILE:LINE:COL: msg`. */
export class PolicyParseError extends Error {
  readonly file: string;
  readonly line: number;
  readonly col: number;
  readonly reason: string;
  constructor(file: string, line: number, col: number, reason: string) {
    super(`${file}:${line}:${col}: ${reason}`);
    this.name = 'PolicyParseError';
    this.file = file;
    this.line = line;
    this.col = col;
    this.reason = reason;
  }
}

/** Where something sits in the source. */
export interface Pos {
  file: string;
  line: number;
  col: number;
}

/**
 * An error raised while evaluating. `fatal` errors (step budget) stop the whole evaluation
 * even inside one guest's part, because continuing with the next guest cannot help.
 */
export class PolicyRuntimeError extends Error {
  readonly pos: Pos | undefined;
  readonly fatal: boolean;
  constructor(message: string, pos?: Pos, fatal = false) {
    super(message);
    this.name = 'PolicyRuntimeError';
    this.pos = pos;
    this.fatal = fatal;
  }
}
