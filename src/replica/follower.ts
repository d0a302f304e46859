/**
 * The follower's side of the peer protocol, as I/O around the pure rules of
 * control/follower.ts: replication messages (feeding failure detection and
 * waking tail readers), fences (recovery's question), fetches of what a
 * recovering leader lacks, and takeover commands. Every one of them is first
 * checked against etcd (the watched view, else etcd itself): a log etcd does
 * not know gets no state here, and a claim of leadership etcd does not show
 * is refused (PEER_REFUSED) before it can raise a fence or write an entry.
 *
 * The sender's identity is one parameter, `peer`: for now the id the message
 * itself names (its leader, or a takeover's `from`); with mutual TLS the peer
 * listener fills it from the client certificate instead, and nothing here changes.
 */
import { performance } from 'node:perf_hooks';
import { judgeLeaderClaim, receiveAppend, receiveFence, takeoverRefusal, type ClaimVerdict, type LeaderClaim, type TakeoverAuthority } from '../control/follower.js';
import { fenceAnswerOf } from '../control/takeover.js';
import { TernError } from '../errors.js';
import type { ClusterDirectory } from '../fencing/directory.js';
import { leaderKeyValue, type LogRecord } from '../fencing/keys.js';
import { ReplyStatus, type AppendReply, type AppendRequest } from '../quorum/messages.js';
import type { FenceAnswer } from '../quorum/recovery.js';
import { encodeEntryRuns } from '../peer/wire.js';
import type { PeerTakeover } from './api.js';
import type { LeaderDriver } from './leader-driver.js';
import type { LogState, ReplicaContext } from './log-state.js';
import type { TailReaders } from './tail-readers.js';
import type { RecoveryReport } from './types.js';

export class Follower {
  /** This process's incarnation as replication replies carry it, once registered (computed once: every reply sends it). */
  incarnationTag: number | undefined;
  /**
   * Per log, the replication messages waiting on an etcd read, in arrival
   * order: the ones behind a message being checked wait for it, since a
   * leader's messages must be applied in the order it pipelined them.
   */
  private readonly checking = new Map<string, Promise<unknown>>();
  /** Logs whose commit point moved this turn: their readers are woken after the replies (wakeAfterReply). */
  private readonly toWake = new Set<string>();

  constructor(
    private readonly ctx: ReplicaContext,
    private readonly driver: LeaderDriver,
    private readonly tailReaders: TailReaders,
  ) {}

  /** Answers at once when the watched view settles the message (nearly always), else once etcd has. */
  handleAppend(req: AppendRequest): AppendReply | Promise<AppendReply> {
    const queued = this.checking.get(req.log);
    const now = queued ? undefined : this.appendIfSettled(req, false);
    if (now) return now;
    const answer = (queued ?? Promise.resolve()).then(async () => this.appendIfSettled(req, false) ?? (await this.fetchLog(req.log), this.appendIfSettled(req, true)!));
    const done = answer.catch(() => undefined);
    this.checking.set(req.log, done);
    void done.then(() => this.checking.get(req.log) === done && this.checking.delete(req.log));
    return answer;
  }

  /**
   * Wakes the log's readers (and forwarded appends waiting for held ids) once
   * this turn's replies are on their way: the leader's commit, and so every
   * client's ack, waits for the reply, the readers do not have to. Writing a
   * tail stream first put it on the leader's critical path. One wake per log
   * per turn, at the commit point it reached.
   */
  private wakeAfterReply(name: string): void {
    if (this.toWake.size === 0) setImmediate(() => this.wakeReaders());
    this.toWake.add(name);
  }

  private wakeReaders(): void {
    for (const name of this.toWake) {
      const replica = this.ctx.logs.get(name)?.replica;
      if (replica) this.tailReaders.wake(name, replica.commitId);
    }
    this.toWake.clear();
  }

  /** Raises the fence for `name` to `epoch` for `peer`, once etcd shows it leads that epoch, and reports what this replica holds (recovery's question). */
  async fence(name: string, epoch: number, peer: string | undefined): Promise<FenceAnswer> {
    const leader = await this.provenLeader(name, { epoch, leader: peer ?? '' });
    const state = this.ctx.logState(name);
    const outcome = receiveFence(state.replica, state.leader, epoch, leader);
    if (outcome.refusedAt !== undefined) throw fencedAt(name, outcome.refusedAt);
    if (outcome.stepDown) this.driver.stepDown(state);
    if (outcome.raised) this.ctx.log.info({ log: name, epoch, leader, lastId: state.replica.buffer.lastId }, 'fenced for a new leader');
    return fenceAnswerOf(this.ctx.id, this.ctx.dir().self.incarnation, state.replica);
  }

  /** Entries a recovering leader lacks, with the epochs that wrote them (encoded runs); none when this replica holds nothing of the log. */
  async fetchRuns(name: string, fromId: number, toId: number): Promise<Buffer> {
    const replica = this.ctx.logs.get(name)?.replica;
    if (!replica) await this.ctx.requireLog(name);
    return encodeEntryRuns(name, replica?.runsBetween(fromId, toId, this.ctx.config.maxBatchBytes) ?? []);
  }

  /** A peer's takeover command, carried out only when etcd shows `peer` may give it (control/follower.ts takeoverRefusal). */
  async takeOver(name: string, request: PeerTakeover, peer: string | undefined): Promise<RecoveryReport> {
    await this.ctx.requireLog(name);
    const dir = this.ctx.dir();
    let refusal = takeoverRefusal(this.takeoverAuthority(name, dir, peer), peer, request);
    if (refusal !== undefined) {
      await Promise.all([dir.fetchLog(name), dir.fetchCoordinator()]);
      refusal = takeoverRefusal(this.takeoverAuthority(name, dir, peer), peer, request);
    }
    if (refusal !== undefined) throw new TernError('PEER_REFUSED', `log ${name}: takeover refused: ${refusal}`);
    return this.ctx.takeOver(name, request.expectedEpoch, request.unsafe, request.replacing);
  }

  /**
   * Applies the message if the watched view (or, `fresh`, etcd just read)
   * settles it; undefined when only etcd itself can. Throws LOG_NOT_FOUND for
   * a log etcd does not know and PEER_REFUSED for a leader it does not show.
   */
  private appendIfSettled(req: AppendRequest, fresh: boolean): AppendReply | undefined {
    const record = this.directory().log(req.log);
    if (!record) {
      if (fresh) throw new TernError('LOG_NOT_FOUND', `log ${req.log} does not exist`);
      return undefined;
    }
    const verdict = judgeLeaderClaim(this.ctx.id, this.fenceOf(req.log), record, req);
    if (verdict === 'stale') return { status: ReplyStatus.Fenced, epoch: record.epoch, seq: req.seq, lastId: this.ctx.logs.get(req.log)?.replica.buffer.lastId ?? -1, ...this.incarnation() };
    if (verdict === 'unproven' && !fresh) return undefined;
    if (verdict === 'unproven' || verdict === 'forged') throw notLeader(req.log, req, record);
    return this.append(this.ctx.logState(req.log), req);
  }

  private append(state: LogState, req: AppendRequest): AppendReply {
    const before = state.replica.commitId;
    const { reply, stepDown } = receiveAppend(state.replica, state.leader, req, this.incarnationTag);
    // Only a leader of the current epoch counts as heard from: a refused one proves nothing about it.
    if (reply.status !== ReplyStatus.Fenced) {
      this.driver.peerContact.set(req.leader, performance.now());
      this.ctx.failover.heard(req.log, req.leader, req.epoch);
    }
    if (stepDown) this.driver.stepDown(state);
    if (state.replica.commitId > before) this.wakeAfterReply(req.log);
    // Readers here wait for the commit point: unless this replica commits what it takes (the pair rule),
    // ask the leader for each one at once (README, streaming tail).
    if (!state.replica.pairIsQuorum && this.tailReaders.hasReaders(req.log)) reply.following = true;
    return reply;
  }

  /** The claimant, once etcd (the view, else etcd itself) shows it leads the claimed epoch; FENCED or PEER_REFUSED otherwise. */
  private async provenLeader(name: string, claim: LeaderClaim): Promise<string> {
    const judge = (record: LogRecord): ClaimVerdict => judgeLeaderClaim(this.ctx.id, this.fenceOf(name), record, claim);
    let record = await this.ctx.requireLog(name);
    let verdict = judge(record);
    if (verdict === 'unproven') verdict = judge((record = await this.fetchLog(name)));
    if (verdict === 'stale') throw fencedAt(name, record.epoch);
    if (verdict === 'unproven' || verdict === 'forged') throw notLeader(name, claim, record);
    return claim.leader;
  }

  /** This replica's fence of the log and the leader it accepted for it; a log it holds nothing of is fenced nowhere. */
  private fenceOf(name: string): { epoch: number; leader: string | undefined } {
    return this.ctx.logs.get(name)?.replica ?? { epoch: 0, leader: undefined };
  }

  private takeoverAuthority(name: string, dir: ClusterDirectory, peer: string | undefined): TakeoverAuthority {
    const record = dir.log(name);
    const leader = record?.leader;
    return {
      leaderKey: leader && { id: leader.id, value: leaderKeyValue(leader) },
      coordinator: dir.coordinator,
      neverLed: record !== undefined && record.segments.length === 0 && leader === undefined,
      senderIsMember: peer !== undefined && dir.member(peer) !== undefined,
      takingOver: this.ctx.logs.get(name)?.takeover !== undefined,
    };
  }

  private async fetchLog(name: string): Promise<LogRecord> {
    const record = await this.directory().fetchLog(name);
    if (!record) throw new TernError('LOG_NOT_FOUND', `log ${name} does not exist`);
    return record;
  }

  /** The directory, also while stopping: a follower answers its leader to the end. */
  private directory(): ClusterDirectory {
    const dir = this.ctx.directory;
    if (!dir) throw new TernError('NOT_READY', `replica ${this.ctx.id} is starting`);
    return dir;
  }

  private incarnation(): { incarnation?: number } {
    return this.incarnationTag === undefined ? {} : { incarnation: this.incarnationTag };
  }
}

function fencedAt(name: string, epoch: number): TernError {
  return new TernError('FENCED', `log ${name} is fenced at epoch ${epoch}`, { epoch });
}

function notLeader(name: string, claim: LeaderClaim, record: LogRecord): TernError {
  const holder = record.leader ? `${record.leader.id} at epoch ${record.leader.epoch}` : 'nobody';
  return new TernError('PEER_REFUSED', `log ${name}: etcd does not show ${claim.leader || 'an unnamed sender'} leading epoch ${claim.epoch} (its leader key: ${holder})`);
}
