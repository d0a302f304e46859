/**
 * The follower's side of the peer protocol, as I/O around the pure rules of
 * control/follower.ts: replication messages (feeding failure detection and
 * waking tail readers), fences (recovery's question) and fetches of what a
 * recovering leader lacks.
 */
import { performance } from 'node:perf_hooks';
import { receiveAppend, receiveFence } from '../control/follower.js';
import { fenceAnswerOf } from '../control/takeover.js';
import { TernError } from '../errors.js';
import type { AppendReply, AppendRequest } from '../quorum/messages.js';
import type { FenceAnswer } from '../quorum/recovery.js';
import { encodeEntryRuns } from '../peer/wire.js';
import type { LeaderDriver } from './leader-driver.js';
import type { ReplicaContext } from './log-state.js';
import type { TailReaders } from './tail-readers.js';

export class Follower {
  /** This process's incarnation as replication replies carry it, once registered (computed once: every reply sends it). */
  incarnationTag: number | undefined;

  constructor(
    private readonly ctx: ReplicaContext,
    private readonly driver: LeaderDriver,
    private readonly tailReaders: TailReaders,
  ) {}

  handleAppend(req: AppendRequest): AppendReply {
    this.driver.peerContact.set(req.leader, performance.now());
    this.ctx.failover.heard(req.log, req.leader, req.epoch);
    const state = this.ctx.logState(req.log);
    const before = state.replica.commitId;
    const { reply, stepDown } = receiveAppend(state.replica, state.leader, req, this.incarnationTag);
    if (stepDown) this.driver.stepDown(state);
    if (state.replica.commitId > before) this.tailReaders.wake(req.log, state.replica.commitId);
    return reply;
  }

  /** Raises the fence for `name` to `epoch` and reports what this replica holds (recovery's question). */
  fence(name: string, epoch: number, leader: string): FenceAnswer {
    const state = this.ctx.logState(name);
    const outcome = receiveFence(state.replica, state.leader, epoch, leader);
    if (outcome.refusedAt !== undefined) throw new TernError('FENCED', `log ${name} is fenced at epoch ${outcome.refusedAt}`, { epoch: outcome.refusedAt });
    if (outcome.stepDown) this.driver.stepDown(state);
    if (outcome.raised) this.ctx.log.info({ log: name, epoch, leader, lastId: state.replica.buffer.lastId }, 'fenced for a new leader');
    return fenceAnswerOf(this.ctx.id, this.ctx.dir().self.incarnation, state.replica);
  }

  /** Entries a recovering leader lacks, with the epochs that wrote them (encoded runs). */
  fetchRuns(name: string, fromId: number, toId: number): Buffer {
    const state = this.ctx.logState(name);
    return encodeEntryRuns(name, state.replica.runsBetween(fromId, toId, this.ctx.config.maxBatchBytes));
  }
}
