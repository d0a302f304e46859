/**
 * Every error a client can see, in one registry: a stable code, its HTTP
 * status, and what it means. The HTTP layer maps a TernError to
 * `{"error": {"code", "message"}}` with this status; a test checks each code
 * is documented in the README.
 */
export const ErrorCodes = {
  BAD_REQUEST: { status: 400, doc: 'Malformed request: bad log name, JSON, base64, frames or query.' },
  UNAUTHENTICATED: { status: 401, doc: 'The cluster requires a token (--tokens-file) and the request has none, or one it does not know. Answered with WWW-Authenticate: Bearer.' },
  FORBIDDEN: { status: 403, doc: 'The token is known but lacks the scope the request needs, or its prefixes do not cover the log.' },
  LOG_NOT_FOUND: { status: 404, doc: 'No log of that name exists.' },
  READER_NOT_FOUND: { status: 404, doc: 'The log has no named reader of that name.' },
  NOT_FOUND: { status: 404, doc: 'No such route or method.' },
  PEER_REFUSED: { status: 403, doc: 'Peer API only: a message whose sender is not the replica its TLS client certificate names, or a fence, takeover or replication message whose claim etcd does not show (the sender does not hold that epoch\'s leader key, or a takeover from neither the log\'s leader, the coordinator nor its creator). Nothing changed.' },
  REQUEST_TIMEOUT: { status: 408, doc: 'The request headers or body did not arrive within --headers-timeout-ms or --request-timeout-ms; the connection is closed (not applied).' },
  SEQUENCE_GAP: { status: 409, doc: 'An idempotent producer\'s Tern-Producer-Seq skips ahead of the next one the leader expects (expectedSeq in the body): an earlier append of it is missing. Not applied.' },
  SEQUENCE_STALE: { status: 409, doc: 'An idempotent producer\'s Tern-Producer-Seq is older than the batches the leader remembers (the last 5), or spans two of them: it cannot be answered with one run of ids. Not applied (expectedSeq in the body).' },
  TOO_MANY_LOGS: { status: 409, doc: 'Creating the log would pass --max-logs; delete a log first (retrying does not help).' },
  TIME_BEHIND: { status: 409, doc: 'The append\'s Tern-Time-Ms is lower than the log\'s last timestamp (timestamps never decrease within a log; the message gives the last one). Not applied.' },
  HELD_BY_READER: { status: 409, doc: 'A truncation would pass the position of a named reader that holds retention (the message names it). Move or delete the reader first. Nothing changed.' },
  FENCED: { status: 409, doc: 'A newer epoch took over the log while this request was handled. maybeApplied tells whether its entries may still appear.' },
  TRUNCATED: { status: 410, doc: 'The ids asked for are below the first retained id (truncated); the message names it.' },
  TOO_LARGE: { status: 413, doc: 'An entry, the request body, its headers or its number of entries is over the configured limit.' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, doc: 'Content-Type is none of the documented ones.' },
  NO_QUORUM: { status: 503, doc: 'Fewer than two replicas of the log answer; the append was refused before it got an id (not applied).' },
  ACK_TIMEOUT: { status: 503, doc: 'The append got an id but no quorum acknowledged it in time: its outcome is unknown (maybeApplied: true).' },
  BUFFER_FULL: { status: 503, doc: 'The replica holds its configured maximum of unflushed bytes (each entry counted with a fixed overhead); retry later (not applied).' },
  TOO_MANY: { status: 503, doc: 'The replica serves its configured maximum of connections (--max-connections), held tail reads and streams (--max-tail-reads) or reads (--max-concurrent-reads); retry later (not applied).' },
  NOT_READY: { status: 503, doc: 'The log has no reachable leader right now (creation or leadership change in progress), or the replica is starting or stopping. Not applied, unless maybeApplied is true (a forward to the leader broke after sending).' },
  CORRUPT_OBJECT: { status: 500, doc: 'An object read from object storage failed its checksums: reported, never served as data.' },
  STORE_UNAVAILABLE: { status: 503, doc: 'The entries asked for are in object storage, which does not answer right now.' },
  INTERNAL: { status: 500, doc: 'A bug: the replica logged it.' },
} as const satisfies Record<string, { status: number; doc: string }>;

export type ErrorCode = keyof typeof ErrorCodes;

/** Seconds a client should wait before retrying a 503. */
export const RETRY_AFTER_SECONDS = 1;

export class TernError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: { maybeApplied?: boolean; epoch?: number; expectedSeq?: number; cause?: unknown } = {},
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'TernError';
    this.status = ErrorCodes[code].status;
  }

  /** The JSON body clients get. */
  toBody(): { error: { code: ErrorCode; message: string; maybeApplied?: boolean; epoch?: number; expectedSeq?: number } } {
    const error: { code: ErrorCode; message: string; maybeApplied?: boolean; epoch?: number; expectedSeq?: number } = { code: this.code, message: this.message };
    if (this.details.maybeApplied !== undefined) error.maybeApplied = this.details.maybeApplied;
    if (this.details.epoch !== undefined) error.epoch = this.details.epoch;
    if (this.details.expectedSeq !== undefined) error.expectedSeq = this.details.expectedSeq;
    return { error };
  }
}

/** An idempotent producer's append whose seq skips ahead of `expectedSeq`: not applied. */
export class SequenceGapError extends TernError {
  constructor(log: string, producerId: string, seq: number, expectedSeq: number) {
    super('SEQUENCE_GAP', `log ${log}: producer ${producerId} sent seq ${seq}, expected ${expectedSeq}; not applied`, { maybeApplied: false, expectedSeq });
    this.name = 'SequenceGapError';
  }
}

/** An idempotent producer's append at a seq the leader no longer remembers (or that overlaps a remembered batch): not applied, and no ids to answer. */
export class SequenceStaleError extends TernError {
  constructor(log: string, producerId: string, seq: number, expectedSeq: number) {
    super('SEQUENCE_STALE', `log ${log}: producer ${producerId} sent seq ${seq}, which lies inside no batch it remembers (next expected ${expectedSeq}); not applied`, { maybeApplied: false, expectedSeq });
    this.name = 'SequenceStaleError';
  }
}

/** A request forwarded to a log's leader failed: a refused connection never carried it; any later failure may have lost only the answer. */
export function forwardingFailed(leaderUrl: string, err: unknown): TernError {
  const code = (err as { code?: string }).code;
  const maybeApplied = code !== 'ECONNREFUSED' && code !== 'UND_ERR_CONNECT_TIMEOUT';
  return new TernError('NOT_READY', `forwarding to the leader at ${leaderUrl} failed: ${(err as Error).message}`, { cause: err, maybeApplied });
}
