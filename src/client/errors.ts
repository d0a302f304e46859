/**
 * The client's errors, one class per kind of failure a caller handles
 * differently. Every error says whether the operation may still have taken
 * effect (`maybeApplied`): false when it certainly did not, true when the
 * outcome is unknown (a timeout, a broken connection, or the server said so).
 */

/** Codes of failures the client itself detects (the server's codes are in the README's Errors table). */
export const ClientErrorCodes = {
  /** No replica answered before the deadline; `cause` is the last failure. */
  UNAVAILABLE: 'UNAVAILABLE',
  /** The connection failed or broke (refused, reset, timed out). */
  CONNECTION: 'CONNECTION',
  /** The client (or the producer) was closed before the operation ended. */
  CLOSED: 'CLOSED',
  /** The operation was aborted by its AbortSignal. */
  ABORTED: 'ABORTED',
  /** An answer the client cannot read (not Tern, or a broken body). */
  BAD_ANSWER: 'BAD_ANSWER',
  /** Bad arguments or options given to the client. */
  BAD_ARGUMENT: 'BAD_ARGUMENT',
} as const;

export type ClientErrorCode = keyof typeof ClientErrorCodes;

export interface TernClientErrorDetails {
  /** HTTP status of the server's answer, when there was one. */
  status?: number;
  /** Whether the operation may have taken effect; undefined when it does not apply (reads). */
  maybeApplied?: boolean;
  cause?: unknown;
}

/** The base of every error the client throws. `code` is the server's code (LOG_NOT_FOUND, ...) or one of ClientErrorCodes. */
export class TernClientError extends Error {
  readonly code: string;
  readonly status: number | undefined;
  readonly maybeApplied: boolean | undefined;
  constructor(code: string, message: string, details: TernClientErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'TernClientError';
    this.code = code;
    this.status = details.status;
    this.maybeApplied = details.maybeApplied;
  }
}

/** The server answered with an error: `{"error": {"code", "message", "maybeApplied"?}}`. */
export class TernServerError extends TernClientError {
  /** The server's Retry-After, in milliseconds (503 answers carry it). */
  readonly retryAfterMs: number | undefined;
  constructor(code: string, message: string, details: TernClientErrorDetails & { status: number; retryAfterMs?: number }) {
    super(code, message, details);
    this.name = 'TernServerError';
    this.retryAfterMs = details.retryAfterMs;
  }
}

/** 404 LOG_NOT_FOUND. */
export class LogNotFoundError extends TernServerError {
  override name = 'LogNotFoundError';
}

/** 404 READER_NOT_FOUND: the log has no named reader of that name. */
export class ReaderNotFoundError extends TernServerError {
  override name = 'ReaderNotFoundError';
}

/** 401 UNAUTHENTICATED or 403 FORBIDDEN: no token, an unknown one, or one without the scope. */
export class AuthError extends TernServerError {
  override name = 'AuthError';
}

/**
 * An idempotent producer's sequence was refused: 409 SEQUENCE_GAP (the server
 * expected `expectedSeq`) or SEQUENCE_STALE (older than the server keeps).
 * Nothing of the batch was applied.
 */
export class SequenceError extends TernServerError {
  override name = 'SequenceError';
  readonly expectedSeq: number | undefined;
  constructor(code: string, message: string, details: TernClientErrorDetails & { status: number; expectedSeq?: number }) {
    super(code, message, details);
    this.expectedSeq = details.expectedSeq;
  }
}

/**
 * 409 TIME_BEHIND: the append's own time (`timeMs`) is below the log's last
 * time (times never decrease within a log; the message gives the last one).
 * Not applied, and a retry with the same time can only fail the same way:
 * the client never retries it.
 */
export class TimeBehindError extends TernServerError {
  override name = 'TimeBehindError';
  constructor(code: string, message: string, details: TernClientErrorDetails & { status: number }) {
    super(code, message, { ...details, maybeApplied: false });
  }
}

/** The connection to a replica failed. `maybeApplied` is false only when the request was certainly never sent (refused). */
export class ConnectionError extends TernClientError {
  override name = 'ConnectionError';
  constructor(
    message: string,
    readonly url: string,
    details: TernClientErrorDetails,
  ) {
    super('CONNECTION', message, details);
  }
}

/** Retries ran out of time: no replica gave a final answer before the deadline. `cause` is the last failure. */
export class UnavailableError extends TernClientError {
  override name = 'UnavailableError';
  constructor(message: string, details: TernClientErrorDetails) {
    super('UNAVAILABLE', message, details);
  }
}

/** The client or producer was closed, or the caller aborted. */
export class ClosedError extends TernClientError {
  override name = 'ClosedError';
  constructor(message: string, code: 'CLOSED' | 'ABORTED' = 'CLOSED', maybeApplied?: boolean) {
    super(code, message, maybeApplied === undefined ? {} : { maybeApplied });
  }
}

interface ErrorBody {
  error?: { code?: unknown; message?: unknown; maybeApplied?: unknown; expectedSeq?: unknown };
}

/** The typed error for a server's error answer (status, parsed JSON body or undefined, Retry-After header). */
export function errorFromAnswer(status: number, body: unknown, retryAfter: string | undefined): TernServerError {
  const e = (body as ErrorBody | undefined)?.error;
  const code = typeof e?.code === 'string' ? e.code : `HTTP_${status}`;
  const message = typeof e?.message === 'string' ? e.message : `HTTP ${status}`;
  const details = {
    status,
    ...(typeof e?.maybeApplied === 'boolean' ? { maybeApplied: e.maybeApplied } : {}),
    ...(retryAfter !== undefined && Number.isFinite(Number(retryAfter)) ? { retryAfterMs: Number(retryAfter) * 1000 } : {}),
  };
  if (code === 'LOG_NOT_FOUND') return new LogNotFoundError(code, message, details);
  if (code === 'READER_NOT_FOUND') return new ReaderNotFoundError(code, message, details);
  if (code === 'TIME_BEHIND') return new TimeBehindError(code, message, details);
  if (status === 401 || status === 403) return new AuthError(code, message, details);
  if (code === 'SEQUENCE_GAP' || code === 'SEQUENCE_STALE') {
    return new SequenceError(code, message, { ...details, ...(typeof e?.expectedSeq === 'number' ? { expectedSeq: e.expectedSeq } : {}) });
  }
  return new TernServerError(code, message, details);
}

/** undici and Node codes of connection failures that happen before any byte of the request left: never applied. */
const NOT_SENT_CODES = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);

/** Wraps a transport failure; a refused connection never carried the request. */
export function connectionError(url: string, err: unknown): ConnectionError {
  const code = (err as { code?: string }).code ?? '';
  const notSent = NOT_SENT_CODES.has(code) || NOT_SENT_CODES.has((err as { cause?: { code?: string } }).cause?.code ?? '');
  return new ConnectionError(`${url}: ${(err as Error).message}${code ? ` (${code})` : ''}`, url, { maybeApplied: !notSent, cause: err });
}
