/**
 * The leader's side of every log this replica leads, as I/O: ticks the pure
 * LeaderLog, and once per event-loop turn carries out each dirty log's Ready
 * (messages sent over the peer transport, clients answered, tail readers
 * woken). Appends that arrive in the same turn, or while a round is in
 * flight, share the next round (group commit).
 */
import { performance } from 'node:perf_hooks';
import { TernError } from '../errors.js';
import type { LeaderLog, Ready, Refusal, UnknownOutcome } from '../quorum/leader.js';
import { ReplyStatus, type AppendRequest } from '../quorum/messages.js';
import type { LogState, ReplicaContext, Waiting } from './log-state.js';
import type { TailReaders } from './tail-readers.js';

/** A reply's status as the replication metrics count it (a gap is an ordinary answer). */
const REPLY_RESULTS = { [ReplyStatus.Ok]: 'ok', [ReplyStatus.Gap]: 'ok', [ReplyStatus.Fenced]: 'fenced', [ReplyStatus.Full]: 'full' } as const;

export class LeaderDriver {
  private readonly dirty = new Set<LogState>();
  /** The logs this replica leads (or is taking over, holding appends): only they are ticked. */
  readonly led = new Set<LogState>();
  private flushScheduled = false;
  /** When a replication exchange with each peer last succeeded (either direction), by performance.now(). */
  readonly peerContact = new Map<string, number>();

  constructor(
    private readonly ctx: ReplicaContext,
    private readonly tailReaders: TailReaders,
  ) {}

  stepDown(state: LogState): void {
    if (!state.leader) return;
    // A leader still recovering never counted as acquired.
    if (!state.leader.isDeposed && !state.takeover) this.ctx.metrics.leadershipChanged('lost');
    state.leader.stepDown();
    this.schedule(state);
  }

  /** From now on `leader` leads the log: ticked, and its Ready carried out. */
  lead(state: LogState, leader: LeaderLog<Waiting>): void {
    // What etcd records of flushed and sealed entries: their times may be newer than anything held here.
    const recorded = this.ctx.directory?.lastTimeMs(state.replica.log);
    if (recorded !== undefined) state.replica.buffer.raiseTimeFloor(recorded);
    state.leader = leader;
    state.lastAppendAt = performance.now();
    this.led.add(state);
    this.schedule(state);
  }

  /** One protocol tick for every log this replica leads; the logs it does not lead cost nothing here. */
  tick(): void {
    for (const state of this.led) {
      const leader = state.leader;
      if (!leader) {
        this.led.delete(state);
        continue;
      }
      leader.tick();
      if (leader.hasReady()) this.schedule(state);
    }
  }

  schedule(state: LogState): void {
    this.dirty.add(state);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  flush(): void {
    this.flushScheduled = false;
    for (const state of this.dirty) {
      this.dirty.delete(state);
      const leader = state.leader;
      if (!leader) continue;
      const ready = leader.ready();
      this.carryOut(state, leader, ready);
      for (const watch of state.leaderWatchers) watch();
      if (leader.isDeposed && leader.pendingCount === 0) {
        state.leader = undefined;
        this.led.delete(state);
        // Only a leader judges producers; the next one loads the table afresh.
        state.producers = undefined;
        state.flushedProducers = undefined;
      }
    }
  }

  private carryOut(state: LogState, leader: LeaderLog<Waiting>, ready: Ready<Waiting>): void {
    for (const { to, req } of ready.messages) this.sendToPeer(state, leader, to, req);
    const now = ready.acked.length > 0 ? performance.now() : 0;
    for (const a of ready.acked) {
      this.ctx.metrics.quorumReached((now - a.token.takenAt) / 1000);
      a.token.resolve({ firstId: a.firstId, lastId: a.lastId, epoch: leader.epoch, timeMs: state.replica.buffer.timeOf(a.firstId) });
    }
    for (const f of ready.failed) f.token.reject(unknownOutcomeError(state.replica.log, f.reason, f.firstId, f.lastId));
    if (ready.quorumLost) this.giveUpForLostQuorum(state, leader);
    if (ready.commitId > state.wokenCommitId) {
      state.wokenCommitId = ready.commitId;
      this.tailReaders.wake(state.replica.log, ready.commitId);
    }
  }

  /**
   * Check-quorum deposed the leader (no follower answered for the ack timeout): give up the leader key so
   * that the coordinator, or the followers, give the log to a replica that reaches a quorum.
   */
  private giveUpForLostQuorum(state: LogState, leader: LeaderLog<Waiting>): void {
    const name = state.replica.log;
    if (!state.takeover) this.ctx.metrics.leadershipChanged('lost');
    this.ctx.failover.gaveUpForLostQuorum(name);
    this.ctx.log.warn({ log: name, epoch: leader.epoch, ackTimeoutMs: this.ctx.config.ackTimeoutMs }, 'no follower answered within the ack timeout: stepping down and giving up the leader key');
    // Retried while etcd fails: the coordinator only assigns logs without a leader key.
    if (this.ctx.directory) void this.ctx.directory.releaseLeadershipUntilDone(name, leader.epoch);
  }

  private sendToPeer(state: LogState, leader: LeaderLog<Waiting>, to: string, req: AppendRequest): void {
    const member = this.ctx.directory?.member(to);
    const unreachable = (refused = false) => {
      leader.peerUnreachable(to, req.seq, refused);
      this.schedule(state);
    };
    if (!member) {
      // Its lease lapsed: as gone as a refused connection.
      queueMicrotask(() => unreachable(true));
      return;
    }
    let bytes = 0;
    for (const e of req.entries) bytes += e.length;
    this.ctx.metrics.replicationSent(to, bytes);
    const sentAt = performance.now();
    this.ctx.transport.sendAppend(member.peerUrl, req).then(
      (reply) => {
        const now = performance.now();
        this.peerContact.set(to, now);
        this.ctx.metrics.replicationAnswered(to, REPLY_RESULTS[reply.status], (now - sentAt) / 1000);
        leader.handleReply(to, reply);
        this.schedule(state);
      },
      (err: NodeJS.ErrnoException) => {
        this.ctx.metrics.replicationAnswered(to, 'error');
        unreachable(err.code === 'ECONNREFUSED');
      },
    );
  }
}

export function refusalError(log: string, reason: Refusal, epoch: number, lastTimeMs?: number): TernError {
  if (reason === 'TIME_BEHIND') return new TernError('TIME_BEHIND', `log ${log}: Tern-Time-Ms is below the log's last time ${lastTimeMs}; times never decrease within a log; not applied`, { maybeApplied: false });
  if (reason === 'NO_QUORUM') return new TernError('NO_QUORUM', `log ${log}: fewer than two replicas answer; append not applied`, { maybeApplied: false });
  return new TernError('FENCED', `log ${log}: epoch ${epoch} was fenced by a newer leader; append not applied`, { maybeApplied: false });
}

function unknownOutcomeError(log: string, reason: UnknownOutcome, firstId: number, lastId: number): TernError {
  const ids = firstId === lastId ? `id ${firstId}` : `ids ${firstId}-${lastId}`;
  if (reason === 'ACK_TIMEOUT') return new TernError('ACK_TIMEOUT', `log ${log}: ${ids} not acknowledged by a quorum in time; outcome unknown`, { maybeApplied: true });
  return new TernError('FENCED', `log ${log}: leader fenced before ${ids} were acknowledged; outcome unknown`, { maybeApplied: true });
}
