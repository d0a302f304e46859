/**
 * The leader's side of the replication protocol for one log, as a pure state
 * machine in the manner of etcd-io/raft's RawNode: inputs are `propose`,
 * `handleReply`, `peerUnreachable`, `tick` and `stepDown`; their consequences
 * pile up until the caller takes them with `ready()` and carries them out.
 * No I/O, no clocks, no randomness: time is the number of `tick()` calls.
 */
import { majorityOf, quorumMatchId } from './majority.js';
import { LogReplica } from './log-replica.js';
import { ReplyStatus, type AppendReply, type AppendRequest } from './messages.js';
import type { ProducerMark } from './producers.js';
import { PeerProgress } from './progress.js';

/** Acknowledged proposals are compacted away once at least this many (and half the queue) are done: below it, copying costs more than the slots. */
const MIN_COMPACT_ACKED = 1024;

export interface LeaderConfig {
  /** This replica's id. */
  self: string;
  /** The other replicas of the log. */
  peers: readonly string[];
  /** The epoch this replica won in etcd for the log. */
  epoch: number;
  /** Messages in flight per follower once it keeps up. */
  maxInflight: number;
  /** Entries and bytes per replication message (group commit bounds). */
  maxBatchEntries: number;
  maxBatchBytes: number;
  /**
   * A follower with a message already in flight is sent another only once a
   * full batch (maxBatchEntries) or this many bytes wait; until then new
   * entries gather for the next round. Each message costs both replicas a
   * request, so on a small machine many tiny pipelined rounds are slower than
   * fewer full ones; big entries still pipeline. 0 pipelines every entry.
   */
  pipelineMinBytes: number;
  /** A proposal not held by a quorum after this many ticks fails with ACK_TIMEOUT. */
  ackTimeoutTicks: number;
  /** A message unanswered this long is presumed lost: the follower goes back to probing. */
  retransmitTicks: number;
  /** An idle follower still hears from the leader this often (commit point, liveness). */
  heartbeatTicks: number;
  /** Pause before probing a follower again after a transport error. */
  backoffTicks: number;
  /**
   * Check-quorum (etcd-io/raft's CheckQuorum): once no quorum of followers
   * has answered for ackTimeoutTicks, and enough of the silent ones may still
   * be alive to make another leader, step down and say so in `Ready` so the
   * caller gives up the leadership. A leader cut off from its peers but not
   * from etcd then no longer holds the log for the whole partition.
   */
  checkQuorum: boolean;
}

/** Why a proposal failed after it got ids: it may or may not become committed later. */
export type UnknownOutcome = 'ACK_TIMEOUT' | 'FENCED';
/** Why a proposal was refused before getting ids: it was certainly not applied. TIME_BEHIND: its own time is below the log's last. */
export type Refusal = 'NO_QUORUM' | 'FENCED' | 'TIME_BEHIND';

export type ProposeResult = { ok: true; firstId: number; lastId: number; timeMs: number } | { ok: false; reason: Refusal; lastTimeMs?: number };

/**
 * The clock of a proposal, read by the caller (the core reads none): the
 * leader's wall clock, and the time the append asked for, if it brought one.
 */
export interface ProposalClock {
  nowMs: number;
  givenMs?: number;
}

export interface Outgoing {
  to: string;
  req: AppendRequest;
}

export interface Acked<T> {
  token: T;
  firstId: number;
  lastId: number;
}

export interface Failed<T> extends Acked<T> {
  reason: UnknownOutcome;
}

/**
 * What the caller must do, in this order: send `messages` (order per follower
 * is kept so the pipeline flows, but correctness does not depend on it), then
 * release `acked` (every id in them is held in memory by a quorum, the leader
 * included) and `failed` to their clients. Nothing needs persisting: the
 * protocol's durability is the quorum's memory, then object storage.
 */
export interface Ready<T> {
  messages: Outgoing[];
  acked: Acked<T>[];
  failed: Failed<T>[];
  commitId: number;
  /**
   * Set once, in the Ready that follows a check-quorum step-down: the leader
   * is deposed (its waiting proposals are in `failed`), and the caller must
   * give up the leadership (the leader key) so that a replica that reaches a
   * quorum can take the log. Nothing it did is undone: the next leader's
   * fencing and recovery decide what was committed, as after any failure.
   */
  quorumLost: boolean;
}

interface Proposal<T> extends Acked<T> {
  tick: number;
}

export class LeaderLog<T> {
  private now = 0;
  private seq = 0;
  private readonly progress: PeerProgress[];
  private proposals: Proposal<T>[] = [];
  private proposalHead = 0;
  /** Tokens waiting for ids proposed earlier to commit (awaitCommit), in no particular order. */
  private commitWaiters: Proposal<T>[] = [];
  private outbox: Outgoing[] = [];
  private acked: Acked<T>[] = [];
  private failed: Failed<T>[] = [];
  private deposed = false;
  /** Check-quorum stepped down and the caller has not been told yet. */
  private quorumLostToTell = false;
  private readonly quorum: number;
  /** Tick at which the commit point last moved. */
  private commitTick = 0;
  /** The leader and one follower are a quorum: followers commit what they take (LogReplica's pair rule). */
  private readonly followersCommitThemselves: boolean;

  constructor(
    readonly replica: LogReplica,
    private readonly config: LeaderConfig,
  ) {
    if (replica.epoch > config.epoch) throw new Error(`log ${replica.log}: cannot lead epoch ${config.epoch} below fence ${replica.epoch}`);
    replica.observeEpoch(config.epoch, config.self);
    const next = replica.buffer.lastId + 1;
    this.progress = config.peers.map((peer) => new PeerProgress(peer, next, 0));
    this.quorum = majorityOf(config.peers.length + 1);
    this.followersCommitThemselves = this.quorum <= 2;
  }

  get epoch(): number {
    return this.config.epoch;
  }

  /** True once a higher epoch was seen or the leader stepped down: it will never ack again. */
  get isDeposed(): boolean {
    return this.deposed || this.replica.epoch > this.config.epoch;
  }

  /**
   * Highest id `peer` provably holds in this leader's version (-1 none); with
   * `incarnation`, only what that incarnation of it has answered (a follower
   * that restarted must not count for what its previous process held).
   */
  matchIdOf(peer: string, incarnation?: number): number {
    const p = this.progress.find((x) => x.peer === peer);
    if (!p || (incarnation !== undefined && p.incarnation !== incarnation)) return -1;
    return p.matchId;
  }

  /**
   * Whether `peer` takes this leader's entries as they come: replicating (not
   * probing, not paused after an error) and sent everything but at most one
   * batch. A follower that forwarded an append can then be answered with its
   * ids at once and commit them itself when they arrive (LogReplica's pair
   * rule), sooner than the leader's commit could reach it.
   */
  keepsUp(peer: string): boolean {
    const p = this.progress.find((x) => x.peer === peer);
    return p !== undefined && !this.isDeposed && p.state === 'replicate' && this.now >= p.pausedUntilTick && this.replica.buffer.lastId + 1 - p.nextId <= this.config.maxBatchEntries;
  }

  /** Proposals given ids and not yet acked or failed. */
  get pendingCount(): number {
    return this.proposals.length - this.proposalHead + this.commitWaiters.length;
  }

  /**
   * Assigns consecutive ids to `entries` (all or none) and starts replicating
   * them; `producer` makes them a producer batch whose mark (producers.ts)
   * travels with them. On success the mark is in `mark`. The entries share one
   * timestamp: the time `clock` gives (the append's own, else the leader's
   * clock), raised to the log's last time so times never decrease; an
   * append's own time below the last is refused (TIME_BEHIND) instead. Without
   * a clock they take the log's last time.
   */
  propose(entries: Buffer[], token: T, producer?: Omit<ProducerMark, 'firstId' | 'count'>, clock?: ProposalClock): ProposeResult & { mark?: ProducerMark } {
    if (this.isDeposed) return { ok: false, reason: 'FENCED' };
    if (!this.quorumReachable()) return { ok: false, reason: 'NO_QUORUM' };
    const buffer = this.replica.buffer;
    const lastTimeMs = buffer.lastTimeMs;
    if (clock?.givenMs !== undefined && clock.givenMs < lastTimeMs) return { ok: false, reason: 'TIME_BEHIND', lastTimeMs };
    const timeMs = Math.max(clock?.givenMs ?? clock?.nowMs ?? lastTimeMs, lastTimeMs);
    const firstId = buffer.lastId + 1;
    // Built field by field, not by spread: marks ride every replication message and the flushed snapshot.
    const mark: ProducerMark | undefined = producer && entries.length > 0 ? { producerId: producer.producerId, firstSeq: producer.firstSeq, firstId, count: entries.length, timeMs: producer.timeMs } : undefined;
    buffer.append(this.config.epoch, entries, mark && [mark], [{ firstId, timeMs }]);
    const lastId = firstId + entries.length - 1;
    this.proposals.push({ token, firstId, lastId, tick: this.now });
    return mark ? { ok: true, firstId, lastId, timeMs, mark } : { ok: true, firstId, lastId, timeMs };
  }

  /**
   * Acks `token` (with ids firstId..lastId) once the commit point reaches
   * lastId, at once when it already has: a retry of a producer batch still
   * in flight waits for the original. Fails as a proposal would: ACK_TIMEOUT
   * after the ack timeout, FENCED when the leader steps down.
   */
  awaitCommit(firstId: number, lastId: number, token: T): void {
    if (lastId <= this.replica.commitId) this.acked.push({ token, firstId, lastId });
    else if (this.isDeposed) this.failed.push({ token, firstId, lastId, reason: 'FENCED' });
    else this.commitWaiters.push({ token, firstId, lastId, tick: this.now });
  }

  handleReply(from: string, reply: AppendReply): void {
    const p = this.progress.find((x) => x.peer === from);
    if (!p || this.isDeposed) return;
    if (reply.epoch > this.config.epoch) {
      this.replica.observeEpoch(reply.epoch);
      this.stepDown();
      return;
    }
    p.lastReplyTick = this.now;
    p.refused = false;
    p.following = reply.following === true;
    if (reply.incarnation !== undefined && reply.incarnation !== p.incarnation) {
      // A new process answers: whatever the old one held is gone (amnesia), so progress starts over.
      if (p.incarnation !== undefined) {
        p.matchId = -1;
        p.resetToProbe(this.now);
      }
      p.incarnation = reply.incarnation;
    }
    const sent = p.takeInflight(reply.seq);
    if (reply.status === ReplyStatus.Ok) {
      if (reply.lastId > p.matchId) p.matchId = Math.min(reply.lastId, this.replica.buffer.lastId);
      if (p.nextId <= p.matchId) p.nextId = p.matchId + 1;
      if (sent && p.state === 'probe') p.state = 'replicate';
      this.advanceCommit();
    } else if (reply.status === ReplyStatus.Gap && sent) {
      // The follower holds less than we thought (it lost a message, or restarted empty:
      // then what it held before no longer counts).
      if (reply.lastId < p.matchId) p.matchId = reply.lastId;
      p.resetToProbe(this.now);
      p.nextId = Math.max(reply.lastId + 1, this.replica.buffer.startId);
    } else if (reply.status === ReplyStatus.Full && sent) {
      // Nothing new was taken, so nothing counts towards the commit point: resend from what it
      // provably holds once the backoff has passed (resending at once would spin while it is full).
      p.resetToProbe(this.now + this.config.backoffTicks);
    }
  }

  /**
   * The transport could not deliver message `seq` (connection refused, reset,
   * timeout). `refused`: the follower's host refused the connection, so no
   * process listens there (it died); anything else may be a cut-off network.
   */
  peerUnreachable(from: string, seq: number, refused = false): void {
    const p = this.progress.find((x) => x.peer === from);
    if (!p || !p.takeInflight(seq)) return;
    p.refused = refused;
    p.resetToProbe(this.now + this.config.backoffTicks);
  }

  tick(): void {
    this.now++;
    for (const p of this.progress) {
      const oldest = p.inflight[0];
      if (oldest && this.now - oldest.sentTick >= this.config.retransmitTicks) p.resetToProbe(this.now);
    }
    while (this.proposalHead < this.proposals.length) {
      const head = this.proposals[this.proposalHead]!;
      if (this.now - head.tick < this.config.ackTimeoutTicks) break;
      this.failed.push({ token: head.token, firstId: head.firstId, lastId: head.lastId, reason: 'ACK_TIMEOUT' });
      this.proposalHead++;
    }
    this.compactProposals();
    if (this.commitWaiters.length > 0) {
      this.commitWaiters = this.commitWaiters.filter((w) => {
        if (this.now - w.tick < this.config.ackTimeoutTicks) return true;
        this.failed.push({ token: w.token, firstId: w.firstId, lastId: w.lastId, reason: 'ACK_TIMEOUT' });
        return false;
      });
    }
    if (this.config.checkQuorum && this.quorumLost()) {
      // Proposals still waiting were made less than ackTimeoutTicks ago: no quorum took them yet.
      this.stepDown('ACK_TIMEOUT');
      this.quorumLostToTell = true;
    }
  }

  /**
   * Stops leading at once: every waiting proposal fails (with `reason`: their
   * outcome is unknown either way), nothing more is sent or acked.
   */
  stepDown(reason: UnknownOutcome = 'FENCED'): void {
    if (this.deposed) return;
    this.deposed = true;
    this.outbox = [];
    for (let i = this.proposalHead; i < this.proposals.length; i++) {
      const p = this.proposals[i]!;
      this.failed.push({ token: p.token, firstId: p.firstId, lastId: p.lastId, reason });
    }
    this.proposals = [];
    this.proposalHead = 0;
    for (const w of this.commitWaiters) this.failed.push({ token: w.token, firstId: w.firstId, lastId: w.lastId, reason });
    this.commitWaiters = [];
  }

  /** True when there is something for `ready()` to return. */
  hasReady(): boolean {
    return this.outbox.length > 0 || this.acked.length > 0 || this.failed.length > 0 || this.quorumLostToTell || this.wantsToSend();
  }

  ready(): Ready<T> {
    if (!this.isDeposed) {
      for (const p of this.progress) this.fillPipeline(p);
    } else if (!this.deposed) {
      this.stepDown();
    }
    const ready: Ready<T> = { messages: this.outbox, acked: this.acked, failed: this.failed, commitId: this.replica.commitId, quorumLost: this.quorumLostToTell };
    this.quorumLostToTell = false;
    this.outbox = [];
    this.acked = [];
    this.failed = [];
    return ready;
  }

  private wantsToSend(): boolean {
    if (this.isDeposed) return false;
    const lastId = this.replica.buffer.lastId;
    return this.progress.some((p) => this.now >= p.pausedUntilTick && p.inflight.length < this.inflightLimit(p) && (p.nextId <= lastId || this.heartbeatDue(p)));
  }

  private inflightLimit(p: PeerProgress): number {
    return p.state === 'probe' ? 1 : this.config.maxInflight;
  }

  /**
   * An idle follower learns a new commit point (for its readers) at the next
   * tick, unless the next entries carry it first. Telling it at once would cost
   * a message each way per commit: at one append at a time, twice the requests
   * on every replica for nothing the quorum needs. A follower that asked for it
   * (`following`: it has tail readers) is told at once all the same: its readers
   * would otherwise wait up to a tick for every entry. Followers of a 3-replica
   * log are not told at the next tick: each commits what it holds the moment
   * it takes it (LogReplica's pair rule), which is all a commit point could
   * tell it; they never ask either. One that asks predates the rule (a
   * rolling update) and is told at once as before.
   */
  private heartbeatDue(p: PeerProgress): boolean {
    const commitToTell = p.inflight.length === 0 && p.sentCommitId < this.replica.commitId && (p.following || (!this.followersCommitThemselves && this.now > this.commitTick));
    return commitToTell || this.now - p.lastSentTick >= this.config.heartbeatTicks;
  }

  private fillPipeline(p: PeerProgress): void {
    if (this.now < p.pausedUntilTick) return;
    const buffer = this.replica.buffer;
    const limit = this.inflightLimit(p);
    let sent = false;
    // Entries below the buffer were released once object storage held them: a follower that
    // far behind fast-forwards past them (it learns the flushed point from the manifest) and
    // is sent what follows. Stopping here instead would strand it, heartbeats and all.
    if (p.nextId < buffer.startId) p.nextId = buffer.startId;
    while (p.inflight.length < limit && p.nextId <= buffer.lastId) {
      // A message carries entries of one epoch: recovered entries keep the epoch that wrote them.
      const count = Math.min(this.config.maxBatchEntries, buffer.runLastId(p.nextId) - p.nextId + 1);
      const entries = buffer.slice(p.nextId, count, this.config.maxBatchBytes);
      if (p.inflight.length > 0 && !this.fullEnough(entries)) break;
      this.send(p, entries);
      sent = true;
    }
    if (!sent && p.inflight.length < limit && this.heartbeatDue(p)) this.send(p, []);
  }

  private fullEnough(entries: readonly Buffer[]): boolean {
    if (entries.length >= this.config.maxBatchEntries) return true;
    let bytes = 0;
    for (const e of entries) if ((bytes += e.length) >= this.config.pipelineMinBytes) return true;
    return this.config.pipelineMinBytes === 0;
  }

  private send(p: PeerProgress, entries: Buffer[]): void {
    const firstId = p.nextId;
    // seq travels as a u32 (wire.ts) and comes back in the reply: wrap it the same way here,
    // or after 2^32 messages no reply would match its message.
    const seq = (this.seq = (this.seq + 1) >>> 0);
    const req: AppendRequest = {
      log: this.replica.log,
      epoch: this.config.epoch,
      leader: this.config.self,
      seq,
      firstId,
      prevEpoch: this.replica.buffer.epochOf(firstId - 1) ?? -1,
      entryEpoch: entries.length > 0 ? this.replica.buffer.epochOf(firstId)! : this.config.epoch,
      commitId: this.replica.commitId,
      entries,
    };
    if (entries.length > 0) {
      const marks = this.replica.buffer.marksBetween(firstId, firstId + entries.length - 1);
      if (marks.length > 0) req.marks = marks;
      const times = this.replica.buffer.timeRunsBetween(firstId, firstId + entries.length - 1);
      if (times.length > 0) req.times = times;
    }
    p.inflight.push({ seq, lastId: firstId + entries.length - 1, sentTick: this.now });
    p.nextId += entries.length;
    p.lastSentTick = this.now;
    p.sentCommitId = this.replica.commitId;
    this.outbox.push({ to: p.peer, req });
  }

  private quorumReachable(): boolean {
    let live = 1;
    for (const p of this.progress) if (this.now - p.lastReplyTick < this.config.ackTimeoutTicks) live++;
    return live >= this.quorum;
  }

  /**
   * Check-quorum's rule: no quorum answered for ackTimeoutTicks, and the
   * silent followers not known dead (their connections refused) are enough to
   * make a quorum without this leader. When they are not (the followers died),
   * stepping down would give the log to nobody: the leader stays, refusing
   * appends with NO_QUORUM, and takes them again once the followers are back.
   */
  private quorumLost(): boolean {
    if (this.isDeposed || this.quorumReachable()) return false;
    let mayLead = 0;
    for (const p of this.progress) if (this.now - p.lastReplyTick >= this.config.ackTimeoutTicks && !p.refused) mayLead++;
    return mayLead >= this.quorum;
  }

  private advanceCommit(): void {
    const matchIds = [this.replica.buffer.lastId, ...this.progress.map((p) => p.matchId)];
    const commit = quorumMatchId(matchIds, this.quorum);
    if (commit <= this.replica.commitId) return;
    this.replica.commitId = commit;
    this.commitTick = this.now;
    while (this.proposalHead < this.proposals.length) {
      const head = this.proposals[this.proposalHead]!;
      if (head.lastId > commit) break;
      this.acked.push({ token: head.token, firstId: head.firstId, lastId: head.lastId });
      this.proposalHead++;
    }
    this.compactProposals();
    if (this.commitWaiters.length > 0) {
      this.commitWaiters = this.commitWaiters.filter((w) => {
        if (w.lastId > commit) return true;
        this.acked.push({ token: w.token, firstId: w.firstId, lastId: w.lastId });
        return false;
      });
    }
  }

  private compactProposals(): void {
    if (this.proposalHead > MIN_COMPACT_ACKED && this.proposalHead * 2 > this.proposals.length) {
      this.proposals = this.proposals.slice(this.proposalHead);
      this.proposalHead = 0;
    }
  }
}
