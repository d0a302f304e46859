/**
 * Owns the follower's sending side of forwarded appends. Appends a replica
 * takes for a log another replica leads travel to that leader in batches
 * over the peer listener, where a request per append would cost the leader
 * (whose event loop bounds the whole log's throughput) and this replica one
 * more HTTP exchange per append. Group commit, as the leader's replication
 * rounds do it: with no batch in flight to a leader, what arrived in this
 * event-loop turn goes at once (no wait at low load); while one is in flight,
 * new appends gather and go when it is answered, or as soon as they fill a
 * batch. Each append in a batch stays its own: its own ids, its own
 * atomicity, its own answer; the leader proposes them in batch order.
 *
 * The follower parses and checks the client's body first (bad input is
 * answered where it arrived and never crosses the network) and forwards the
 * entries; the leader checks them again against its own limits. The format
 * is forwarded-appends.ts.
 */
import { Pool, type Dispatcher } from 'undici';
import { TernError, forwardingFailed } from '../errors.js';
import { decodeForwardedAnswers, encodeForwardedAppend, type ClientAppend, type ForwardedAnswer } from './forwarded-appends.js';
import { FORWARDED_APPENDS_CONTENT_TYPE, FORWARDED_APPENDS_PATH } from './paths.js';
import type { OutgoingTls } from './tls.js';

/**
 * Connections to one leader, so batches in flight to it: a batch holds its
 * connection until its appends are acknowledged. Group commit keeps this
 * near one at low load; the bound only matters when batches fill faster than
 * the leader answers them.
 */
const CONNECTIONS_PER_LEADER = 32;
/** An idle connection to a leader is kept this long: appends to a log come steadily or not at all, and a new connection costs a round trip. */
const KEEP_ALIVE_MS = 60_000;

interface Queued {
  chunks: Buffer[];
  bytes: number;
  resolve(answer: ForwardedAnswer): void;
  reject(err: TernError): void;
}

interface Batch {
  items: Queued[];
  bytes: number;
}

interface LeaderLink {
  url: string;
  pool: Pool;
  /** Appends not sent yet. */
  gathering: Batch;
  /** Batches sent and not yet answered. */
  inflight: number;
}

/** The follower's side: gathers appends per leader and sends them in batches. */
export class AppendForwarder {
  private readonly links = new Map<string, LeaderLink>();
  /** Links with appends to send at the end of this turn. */
  private readonly due = new Set<LeaderLink>();
  private flushScheduled = false;

  constructor(
    /** A batch is sent at once when it reaches either bound. */
    private readonly limits: { maxAppends: number; maxBytes: number },
    /** A batch unanswered this long fails (the leader's own ack timeout comes first). */
    private readonly timeoutMs: number,
    /** TLS to the leaders' peer listeners (tls.ts); undefined: plain HTTP. */
    private readonly tls?: OutgoingTls,
  ) {}

  forward(leaderPeerUrl: string, log: string, append: ClientAppend): Promise<ForwardedAnswer> {
    return new Promise((resolve, reject) => {
      const { chunks, bytes } = encodeForwardedAppend(log, append);
      const link = this.link(leaderPeerUrl);
      const batch = link.gathering;
      batch.items.push({ chunks, bytes, resolve, reject });
      batch.bytes += bytes;
      if (batch.items.length >= this.limits.maxAppends || batch.bytes >= this.limits.maxBytes) this.send(link);
      else if (link.inflight === 0) this.sendAtEndOfTurn(link);
    });
  }

  async close(): Promise<void> {
    for (const link of this.links.values()) if (link.gathering.items.length > 0) this.send(link);
    await Promise.all([...this.links.values()].map((l) => l.pool.close()));
    this.links.clear();
  }

  private sendAtEndOfTurn(link: LeaderLink): void {
    this.due.add(link);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      for (const l of this.due) if (l.gathering.items.length > 0) this.send(l);
      this.due.clear();
    });
  }

  private send(link: LeaderLink): void {
    const batch = link.gathering;
    link.gathering = { items: [], bytes: 0 };
    link.inflight++;
    const body = Buffer.concat(
      batch.items.flatMap((i) => i.chunks),
      batch.bytes,
    );
    postBuffer(link.pool, FORWARDED_APPENDS_PATH, FORWARDED_APPENDS_CONTENT_TYPE, body)
      .then(({ status, body: payload }) => {
        if (status !== 200) {
          // The leader refused the batch as a whole (it never got to the appends): each gets that answer.
          const answer = { status, json: payload.toString('utf8') };
          for (const item of batch.items) item.resolve(answer);
          return;
        }
        const answers = decodeForwardedAnswers(payload);
        if (answers.length !== batch.items.length) throw new Error(`the leader answered ${answers.length} of ${batch.items.length} forwarded appends`);
        batch.items.forEach((item, i) => item.resolve(answers[i]!));
      })
      .catch((err: unknown) => {
        const failure = forwardingFailed(link.url, err);
        for (const item of batch.items) item.reject(failure);
        // What gathered behind it would meet the same unreachable or stalled leader: fail it now,
        // never sent, so its clients retry elsewhere instead of waiting out another timeout.
        const behind = link.gathering;
        link.gathering = { items: [], bytes: 0 };
        const notSent = new TernError('NOT_READY', `not forwarded: the leader at ${link.url} did not answer the appends before them (${failure.message})`, { maybeApplied: false });
        for (const item of behind.items) item.reject(notSent);
      })
      .finally(() => {
        link.inflight--;
        if (link.inflight === 0 && link.gathering.items.length > 0) this.sendAtEndOfTurn(link);
      });
  }

  private link(url: string): LeaderLink {
    let link = this.links.get(url);
    if (!link) {
      // A batch holds its connection until its appends are acknowledged: one connection per batch in flight.
      const pool = new Pool(url, { connections: CONNECTIONS_PER_LEADER, pipelining: 1, headersTimeout: this.timeoutMs, bodyTimeout: this.timeoutMs, connectTimeout: this.timeoutMs, keepAliveTimeout: KEEP_ALIVE_MS, connect: this.tls });
      this.links.set(url, (link = { url, pool, gathering: { items: [], bytes: 0 }, inflight: 0 }));
    }
    return link;
  }
}

/**
 * POSTs one buffer and collects the answer through undici's dispatch handler:
 * forwarding exchanges many small answers, and `request()` wraps each in a
 * stream and promises that cost more than the answer itself.
 */
function postBuffer(dispatcher: Dispatcher, path: string, contentType: string, body: Buffer): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    let status = 0;
    const chunks: Buffer[] = [];
    dispatcher.dispatch(
      { path, method: 'POST', headers: { 'content-type': contentType }, body },
      {
        // Its presence tells undici this handler speaks the controller API.
        onRequestStart() {},
        onResponseStart(_controller, statusCode) {
          status = statusCode;
        },
        onResponseData(_controller, chunk) {
          chunks.push(chunk);
        },
        onResponseEnd() {
          resolve({ status, body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks) });
        },
        onResponseError(_controller, err) {
          reject(err);
        },
      },
    );
  });
}
