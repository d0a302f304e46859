/**
 * Owns the follower's sending side of forwarded appends. Appends a replica
 * takes for a log another replica leads travel to that leader in batches
 * over the peer listener, where a request per append would cost the leader
 * (whose event loop bounds the whole log's throughput) and this replica one
 * more HTTP exchange per append. Group commit, as the leader's replication
 * rounds do it: while fewer than maxInFlight batches are in flight to a
 * leader, what arrived in this event-loop turn goes at once (no wait at low
 * load); once that many are, new appends gather and go when one is answered,
 * or as soon as they fill a batch. Each append in a batch stays its own: its own ids, its own
 * atomicity, its own answer; the leader proposes them in batch order.
 *
 * The follower parses and checks the client's body first (bad input is
 * answered where it arrived and never crosses the network) and forwards the
 * entries; the leader checks them again against its own limits. The format
 * is forwarded-appends.ts.
 *
 * Batches travel on one PeerLink per leader (link.ts), not undici: written
 * as the appends' own buffers in one writev (no copy into a request body),
 * answers parsed in a few lines. Several batches in flight are pipelined on
 * it and answered in order; a batch waiting for a slow append delays the
 * answers behind it by at most the leader's ack timeout, which bounds every
 * answer anyway. On the 2-core VM undici took 6-8 % of each follower's
 * samples when appends were spread over the replicas (bench/results,
 * 2026-12-03 profiles).
 */
import { TernError, forwardingFailed } from '../errors.js';
import { decodeForwardedAnswers, encodeForwardedAppend, forwardedAppendsType, type ClientAppend, type ForwardedAnswer } from './forwarded-appends.js';
import { PeerLink } from './link.js';
import { FORWARDED_APPENDS_PATH } from './paths.js';
import type { OutgoingTls } from './tls.js';

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
  link: PeerLink;
  /** Appends not sent yet. */
  gathering: Batch;
  /** Batches sent and not yet answered. */
  inflight: number;
  /** Called when `inflight` next drops to 0 (close waits for it). */
  drained?: () => void;
}

/** The follower's side: gathers appends per leader and sends them in batches. */
export class AppendForwarder {
  private readonly links = new Map<string, LeaderLink>();
  /** Links with appends to send at the end of this turn. */
  private readonly due = new Set<LeaderLink>();
  private flushScheduled = false;
  private readonly contentType: string;

  constructor(
    /** This replica's id: its batches ask for held answers (forwarded-appends.ts). */
    self: string,
    /**
     * A batch is sent at once when it reaches either bound. Below them, what arrived in a turn goes at
     * the end of it while fewer than `maxInFlight` batches are in flight to that leader, and
     * otherwise gathers until one is answered.
     */
    private readonly limits: { maxAppends: number; maxBytes: number; maxInFlight: number },
    /** A batch unanswered this long fails (the leader's own ack timeout comes first). */
    private readonly timeoutMs: number,
    /** TLS to the leaders' peer listeners (tls.ts); undefined: plain HTTP. */
    private readonly tls?: OutgoingTls,
    /** A link idle this long gets a new connection (the leaders' keep-alive timeout is longer). */
    private readonly idleMs?: number,
  ) {
    this.contentType = forwardedAppendsType(self);
  }

  forward(leaderPeerUrl: string, log: string, append: ClientAppend): Promise<ForwardedAnswer> {
    return new Promise((resolve, reject) => {
      const { chunks, bytes } = encodeForwardedAppend(log, append);
      const link = this.link(leaderPeerUrl);
      const batch = link.gathering;
      batch.items.push({ chunks, bytes, resolve, reject });
      batch.bytes += bytes;
      if (batch.items.length >= this.limits.maxAppends || batch.bytes >= this.limits.maxBytes) this.send(link);
      else if (link.inflight < this.limits.maxInFlight) this.sendAtEndOfTurn(link);
    });
  }

  /** Sends what gathered and waits for every batch's answer (each is answered within the timeout), then closes the links. */
  async close(): Promise<void> {
    for (const link of this.links.values()) if (link.gathering.items.length > 0) this.send(link);
    await Promise.all(
      [...this.links.values()].map(async (l) => {
        if (l.inflight > 0) await new Promise<void>((resolve) => (l.drained = resolve));
        l.link.close();
      }),
    );
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
    link.link
      .post(
        FORWARDED_APPENDS_PATH,
        this.contentType,
        batch.items.flatMap((i) => i.chunks),
        batch.bytes,
      )
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
        if (link.inflight < this.limits.maxInFlight && link.gathering.items.length > 0) this.sendAtEndOfTurn(link);
        if (link.inflight === 0) link.drained?.();
      });
  }

  private link(url: string): LeaderLink {
    let link = this.links.get(url);
    if (!link) this.links.set(url, (link = { url, link: new PeerLink(new URL(url), this.timeoutMs, this.tls, this.idleMs), gathering: { items: [], bytes: 0 }, inflight: 0 }));
    return link;
  }
}
