/**
 * Owns a log's appends on this replica: where one must go (here, or the
 * replica leading the log), carrying one out as the leader, and, for an
 * append this replica forwarded and got a held answer for, waiting until it
 * holds the entries itself.
 *
 * Held answers are how an append sent to a follower costs no more round
 * trips than one sent to the leader. A 3-replica log commits an entry once
 * the leader and one follower hold it, and a follower that takes an entry
 * from the leader of its fence knows both do (LogReplica's pair rule). So
 * the leader answers a forwarded append with its ids as soon as it proposes
 * it, when the forwarding follower keeps up (LeaderLog.keepsUp), and the
 * follower answers its client once it holds those ids in that epoch: the
 * answer and the entries travel at once, leader to follower, instead of the
 * entries out, the follower's reply back and the answer out again.
 */
import { performance } from 'node:perf_hooks';
import type { LeaderInfo, MemberInfo } from '../fencing/keys.js';
import { TernError } from '../errors.js';
import { exceedsBound, type MemoryAccount } from '../quorum/entry-buffer.js';
import type { ClientAppend, HeldIds } from '../peer/forwarded-appends.js';
import { refusalError, type LeaderDriver } from './leader-driver.js';
import type { ReplicaContext, Waiting } from './log-state.js';
import type { Quiescence } from './quiescence.js';
import type { TailReaders } from './tail-readers.js';
import type { AppendResult } from './types.js';

/** An append as Appends.append takes it: its entries, its producer and its own time. */
export type AppendOf = Pick<ClientAppend, 'entries' | 'producer' | 'timeMs'>;

/** A token for a proposal whose client was answered already (held): the leader's ack or failure has no one to tell. */
const answeredAlready = { resolve: () => undefined, reject: () => undefined };

export class Appends {
  constructor(
    private readonly ctx: ReplicaContext,
    private readonly memory: MemoryAccount,
    private readonly driver: LeaderDriver,
    private readonly quiescence: Quiescence,
    private readonly tailReaders: TailReaders,
  ) {}

  /**
   * Where an append for `name` must go: undefined when this replica leads the
   * log, else the leading replica (its client and peer URLs). NOT_READY when
   * there is none.
   */
  async leaderElsewhere(name: string): Promise<MemberInfo | undefined> {
    await this.wakeIfQuiesced(name);
    if (this.ctx.localLeader(name)) return undefined;
    const state = this.ctx.logs.get(name);
    if (state?.takeover) {
      throw new TernError('NOT_READY', `log ${name} is recovering on ${this.ctx.id}` + (state.takeover.machine.blockedBy ? `: ${state.takeover.machine.blockedBy}` : ''), { maybeApplied: false });
    }
    const dir = this.ctx.dir();
    const liveLeader = (leader: LeaderInfo | undefined) => (leader && leader.id !== this.ctx.id ? dir.member(leader.id) : undefined);
    // The common case builds no record: the view names a live leader.
    const known = liveLeader(dir.leaderOf(name));
    if (known) return known;
    const record = await this.ctx.requireLog(name);
    // The watched view can lag a leadership change: ask etcd before saying there is none.
    const leader = liveLeader(record.leader) ?? liveLeader(((await dir.fetchLog(name)) ?? record).leader);
    if (!leader) throw new TernError('NOT_READY', `log ${name} has no reachable leader right now (epoch ${record.epoch})`);
    return leader;
  }

  /**
   * Appends entries as one atomic batch on this replica, which must lead the
   * log. Resolves once a quorum holds them. With `producer`, a retry of a
   * batch the producer already appended resolves with its original ids
   * (`duplicate`), once they are committed. With `heldBy`, the follower that
   * forwarded the append: if it keeps up, the ids are answered at once
   * (`held`), for it to wait for (awaitHeld).
   */
  async append(name: string, append: AppendOf, heldBy?: string): Promise<AppendResult> {
    const { entries, producer, timeMs } = append;
    await this.wakeIfQuiesced(name);
    // Nothing awaited from here to the proposal: a seal for quiescence cannot start in between.
    const state = this.ctx.logs.get(name);
    const leader = state && this.ctx.localLeader(name);
    if (!state || !leader) throw new TernError('NOT_READY', `replica ${this.ctx.id} does not lead log ${name}`);
    if (state.handingOff) throw new TernError('NOT_READY', `log ${name} is being handed off`, { maybeApplied: false });
    if (state.takeover) throw new TernError('NOT_READY', `log ${name} is recovering on ${this.ctx.id}`, { maybeApplied: false });
    const nowMs = Date.now();
    const { maxFutureTimeMs } = this.ctx.config;
    if (timeMs !== undefined && timeMs > nowMs + maxFutureTimeMs) {
      throw new TernError('BAD_REQUEST', `log ${name}: Tern-Time-Ms ${timeMs} is more than --max-future-time-ms (${maxFutureTimeMs}) ahead of the leader's clock (${nowMs}); not applied`, { maybeApplied: false });
    }
    const verdict = producer && this.ctx.producers.judge(name, state, producer, entries.length);
    if (verdict?.kind === 'duplicate') {
      return new Promise<AppendResult>((resolve, reject) => {
        leader.awaitCommit(verdict.firstId, verdict.lastId, { resolve: (r) => resolve({ ...r, duplicate: true }), reject, takenAt: performance.now() });
        this.driver.schedule(state);
      });
    }
    if (exceedsBound(this.memory, entries)) {
      throw new TernError('BUFFER_FULL', `replica ${this.ctx.id} holds ${this.memory.bytes} bytes of unflushed entries (limit ${this.ctx.config.maxBufferBytes})`);
    }
    // One clock reading serves the quorum latency and quiescence's idle time: this runs for every append.
    const takenAt = performance.now();
    state.lastAppendAt = takenAt;
    const held = heldBy !== undefined && leader.keepsUp(heldBy);
    return new Promise<AppendResult>((resolve, reject) => {
      const mark = producer && verdict ? { producerId: producer.id, firstSeq: producer.seq, timeMs: verdict.timeMs } : undefined;
      const waiting: Waiting = held ? { ...answeredAlready, takenAt } : { resolve, reject, takenAt };
      const result = leader.propose(entries, waiting, mark, { nowMs, givenMs: timeMs });
      if (!result.ok) return reject(refusalError(name, result.reason, leader.epoch, result.lastTimeMs));
      if (result.mark) state.producers?.record(result.mark);
      this.driver.schedule(state);
      if (held) resolve({ firstId: result.firstId, lastId: result.lastId, epoch: leader.epoch, timeMs: result.timeMs, held: true });
    });
  }

  /**
   * Resolves once this replica holds the ids of a held answer in the epoch
   * that gave them, which commits them (the pair rule). Their outcome is
   * unknown when the log moved to a newer epoch first (FENCED) or the ack
   * timeout passed (ACK_TIMEOUT): the leader may still have committed them
   * with the other follower.
   */
  async awaitHeld(name: string, held: HeldIds): Promise<void> {
    const deadline = performance.now() + this.ctx.config.ackTimeoutMs;
    for (;;) {
      const replica = this.ctx.logs.get(name)?.replica;
      if (replica && replica.epoch > held.epoch) {
        throw new TernError('FENCED', `log ${name}: a newer epoch took over before id ${held.lastId} of epoch ${held.epoch} reached ${this.ctx.id}; outcome unknown`, { maybeApplied: true });
      }
      if (replica && replica.epoch === held.epoch && replica.commitId >= held.lastId) return;
      const left = deadline - performance.now();
      if (left <= 0) throw new TernError('ACK_TIMEOUT', `log ${name}: id ${held.lastId} of epoch ${held.epoch} did not reach ${this.ctx.id} in time; outcome unknown`, { maybeApplied: true });
      await this.tailReaders.waitForAppend(name, held.lastId, left);
    }
  }

  /** A quiesced log (or one being sealed here) is reopened here before an append is routed; see Quiescence.wake. Also throws LOG_NOT_FOUND: every append passes here first. */
  private async wakeIfQuiesced(name: string): Promise<void> {
    // The record is built only when the view lacks the log (requireLog then asks etcd): this runs twice per append.
    const dir = this.ctx.dir();
    if (!dir.hasLog(name)) await this.ctx.requireLog(name);
    if (this.ctx.logs.get(name)?.quiescing || dir.isQuiesced(name)) await this.quiescence.wake(name);
  }
}
