/**
 * Takeover and recovery of a log (BookKeeper-style), as I/O around the pure
 * decision in quorum/recovery.ts: claim the next epoch in etcd, fence the
 * replicas, decide the end of the old segment from the answers that count
 * (none for a segment closed clean), fetch what this replica lacks, make a
 * quorum hold it in the new epoch, then seal and open segments in etcd and
 * start flushing. Also the operator's unsafe override.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { LogRecord, SegmentMeta } from '../fencing/keys.js';
import { TernError } from '../errors.js';
import { LeaderLog } from '../quorum/leader.js';
import { decideRecovery, isClosedClean, validLastId, type FenceAnswer } from '../quorum/recovery.js';
import { peerPaths } from '../peer/paths.js';
import { decodeEntryRuns } from '../peer/wire.js';
import type { LeaderDriver } from './leader-driver.js';
import type { LogState, ReplicaContext, Waiting } from './log-state.js';
import type { TailReaders } from './tail-readers.js';
import { withTimeout } from '../with-timeout.js';
import type { RecoveryReport } from './types.js';

/** A recovery that cannot decide yet (no counted quorum) asks again this often. */
const UNDECIDED_RETRY_MS = 500;
/** A recovering leader waits this many ack timeouts for a quorum to hold the recovered tail. */
const HOLD_ACK_TIMEOUTS = 2;
/** How long one wait for the recovered tail's commit lasts before the deadline is looked at again. */
const HOLD_POLL_MS = 50;

export class Takeover {
  constructor(
    private readonly ctx: ReplicaContext,
    private readonly driver: LeaderDriver,
    private readonly tailReaders: TailReaders,
  ) {}

  /**
   * Takes leadership of `name` from epoch `expectedEpoch` (BookKeeper-style
   * recovery): raise the epoch in etcd, fence the replicas, decide the end of
   * the old segment from the counted answers, make a quorum hold it in the new
   * epoch, seal it and open this epoch's segment in etcd, and only then take
   * appends. One takeover per log at a time on this replica.
   */
  takeOver(name: string, expectedEpoch: number, unsafe = false, replacing?: string): Promise<RecoveryReport> {
    if (this.ctx.draining) return Promise.reject(new TernError('NOT_READY', `replica ${this.ctx.id} is stopping: it takes no leadership`));
    const state = this.ctx.logState(name);
    if (unsafe) state.unsafeRecovery = true;
    if (!state.takeover) {
      state.takeover = this.recover(name, state, expectedEpoch, replacing).finally(() => {
        state.takeover = undefined;
        state.blockedBy = undefined;
        state.unsafeRecovery = false;
      });
    }
    return state.takeover!;
  }

  /**
   * Operator override: recover `name` without a counted quorum of fence
   * answers, accepting that acknowledged entries held only by replicas that
   * restarted are lost. Runs on the replica already trying to take it over, or here.
   */
  async forceRecovery(name: string): Promise<RecoveryReport> {
    const record = await this.ctx.requireLog(name);
    const state = this.ctx.logState(name);
    if (state.takeover) {
      state.unsafeRecovery = true;
      return state.takeover;
    }
    if (record.leader && record.leader.id !== this.ctx.id) {
      const holder = this.ctx.dir().member(record.leader.id);
      if (holder) return this.ctx.transport.command<RecoveryReport>(holder.peerUrl, peerPaths.takeover(name), { expectedEpoch: record.epoch - 1, unsafe: true });
    }
    if (this.ctx.localLeader(name)) throw new TernError('BAD_REQUEST', `log ${name} is available on ${this.ctx.id}: nothing to force`);
    return this.takeOver(name, record.epoch, true);
  }

  private async recover(name: string, state: LogState, expectedEpoch: number, replacing?: string): Promise<RecoveryReport> {
    const started = Date.now();
    const seconds = () => (Date.now() - started) / 1000;
    const dir = this.ctx.dir();
    const epoch = await dir.claimLeadership(name, expectedEpoch, replacing);
    if (epoch === undefined) throw new TernError('NOT_READY', `log ${name}: epoch ${expectedEpoch} is no longer current or another replica leads it`);
    try {
      this.driver.stepDown(state);
      state.replica.observeEpoch(epoch, this.ctx.id);
      state.replica.releaseThrough(dir.flushedId(name));
      const { endId, warning } = await this.decideEnd(name, state, epoch);
      await this.holdThrough(name, state, epoch, endId);
      const record = await this.ctx.requireLog(name);
      const seals: SegmentMeta[] = record.segments.filter((seg) => seg.lastId === null).map((seg) => ({ ...seg, lastId: endId }));
      const open: SegmentMeta = { epoch, firstId: endId + 1, lastId: null, replicas: this.ctx.incarnationsOf(record.meta.replicas) };
      if (!(await dir.openSegment(name, epoch, seals, open))) throw new TernError('NOT_READY', `log ${name}: lost epoch ${epoch} before sealing`);
      // Flushes whatever the previous leaders had not, sealed segments included, before anything is released.
      if (state.leader) this.ctx.storage.startFlusher(name, record.meta.uid, state, state.leader);
      this.ctx.metrics.recovered('ok', seconds());
      this.ctx.metrics.leadershipChanged('acquired');
      this.ctx.log.info({ log: name, epoch, recoveredId: endId, sealed: seals.map((seg) => ({ epoch: seg.epoch, lastId: seg.lastId })), ms: Date.now() - started, ...(warning ? { warning } : {}) }, 'leading log');
      return { log: name, epoch, recoveredId: endId, ...(warning ? { warning } : {}) };
    } catch (err) {
      this.ctx.metrics.recovered('failed', seconds());
      this.driver.stepDown(state);
      // Free the key (retried while etcd fails) so the coordinator can give the log to a replica that can finish.
      void dir.releaseLeadershipUntilDone(name, epoch);
      throw err;
    }
  }

  /** Fences the replicas until the answers that count can decide the end of the open segment. */
  private async decideEnd(name: string, state: LogState, epoch: number): Promise<{ endId: number; warning?: string }> {
    for (;;) {
      const record = await this.ctx.requireLog(name);
      if (record.segments.length === 0) return { endId: -1 };
      if (isClosedClean(record.segments.at(-1))) return this.endOfCleanClose(name, state, record);
      const answers = await this.collectFenceAnswers(name, state, record, epoch);
      const unsafe = state.unsafeRecovery;
      const decision = decideRecovery(record.segments, answers, record.meta.replicas.length, unsafe);
      if (decision.kind === 'recover') {
        const mine = validLastId(this.fenceAnswer(state), record.segments);
        state.replica.discardAfter(mine);
        if (mine < decision.endId) await this.fetchInto(name, state, decision.source, mine + 1, decision.endId);
        state.replica.discardAfter(decision.endId);
        const warning = unsafe
          ? `recovered without a counted quorum from ${decision.counted.join(', ')}: acknowledged entries after id ${decision.endId} held only by replicas that restarted are lost`
          : undefined;
        return { endId: decision.endId, ...(warning ? { warning } : {}) };
      }
      state.blockedBy = decision.reason;
      this.ctx.log.warn({ log: name, epoch, reason: decision.reason }, 'recovery cannot decide safely; the log stays unavailable');
      await sleep(UNDECIDED_RETRY_MS);
      const now = this.ctx.dir().log(name);
      if (!now || now.epoch !== epoch || now.leader?.id !== this.ctx.id) throw new TernError('NOT_READY', `log ${name}: epoch ${epoch} moved on during recovery`);
    }
  }

  /** A segment closed clean ends at its recorded lastId, all of it in object storage: no fence answers needed. */
  private async endOfCleanClose(name: string, state: LogState, record: LogRecord): Promise<{ endId: number }> {
    const endId = record.segments.at(-1)!.lastId!;
    // The manifest is written before the seal; a watch that shows the seal but lags on the manifest is read again.
    if (this.ctx.dir().flushedId(name) < endId) await this.ctx.dir().fetchLog(name);
    const flushedId = this.ctx.dir().flushedId(name);
    if (flushedId < endId) throw new TernError('NOT_READY', `log ${name}: segment closed clean at ${endId} but object storage holds only through ${flushedId}`);
    state.replica.discardAfter(validLastId(this.fenceAnswer(state), record.segments));
    state.replica.releaseThrough(flushedId);
    return { endId };
  }

  /**
   * This replica's answer and the peers'. Returns as soon as the answers that
   * count can decide (a quorum of them: any two include one of the two
   * replicas that acknowledged an entry, so their highest is safe), or once
   * every peer has answered or timed out: a peer that is cut off no longer
   * holds a recovery for the whole ack timeout. The unsafe override waits for
   * every answer, to lose as little as it can.
   */
  private collectFenceAnswers(name: string, state: LogState, record: LogRecord, epoch: number): Promise<FenceAnswer[]> {
    const answers: FenceAnswer[] = [this.fenceAnswer(state)];
    const peers = record.meta.replicas.filter((id) => id !== this.ctx.id && this.ctx.dir().member(id));
    return new Promise((resolve) => {
      let pending = peers.length;
      const settle = () => {
        const decided = !state.unsafeRecovery && decideRecovery(record.segments, answers, record.meta.replicas.length).kind === 'recover';
        if (pending === 0 || decided) resolve([...answers]);
      };
      for (const id of peers) {
        const member = this.ctx.dir().member(id)!;
        withTimeout(this.ctx.transport.command<FenceAnswer>(member.peerUrl, peerPaths.fence(name), { epoch, leader: this.ctx.id }), this.ctx.config.ackTimeoutMs)
          .then(
            (answer) => void answers.push(answer),
            (err: Error) => this.ctx.log.warn({ log: name, peer: id, err: err.message }, 'no fence answer'),
          )
          .finally(() => {
            pending--;
            settle();
          });
      }
      settle();
    });
  }

  private async fetchInto(name: string, state: LogState, source: string, fromId: number, toId: number): Promise<void> {
    const member = this.ctx.dir().member(source);
    if (!member) throw new TernError('NOT_READY', `log ${name}: ${source}, which holds the recovered tail, is gone`);
    for (let next = fromId; next <= toId; ) {
      const runs = decodeEntryRuns(await this.ctx.transport.fetchBinary(member.peerUrl, peerPaths.fetch(name), { fromId: next, toId }));
      if (runs.length === 0) throw new TernError('NOT_READY', `log ${name}: ${source} no longer holds id ${next}`);
      for (const run of runs) {
        state.replica.adopt(run.firstId, run.epoch, run.entries);
        next = run.firstId + run.entries.length;
      }
    }
  }

  /** Leads in `epoch` with appends held back until a quorum holds everything up to endId. */
  private async holdThrough(name: string, state: LogState, epoch: number, endId: number): Promise<void> {
    const record = await this.ctx.requireLog(name);
    state.leader = new LeaderLog<Waiting>(state.replica, { ...this.ctx.leaderTicks, self: this.ctx.id, peers: record.meta.replicas.filter((r) => r !== this.ctx.id), epoch });
    this.driver.schedule(state);
    const deadline = Date.now() + this.ctx.config.ackTimeoutMs * HOLD_ACK_TIMEOUTS;
    while (state.replica.commitId < endId) {
      if (state.leader?.isDeposed !== false || Date.now() > deadline) throw new TernError('NOT_READY', `log ${name}: no quorum took the recovered tail up to ${endId}`);
      await this.tailReaders.wait(name, endId, HOLD_POLL_MS);
    }
  }

  fenceAnswer(state: LogState): FenceAnswer {
    const buffer = state.replica.buffer;
    return { replica: this.ctx.id, incarnation: this.ctx.dir().self.incarnation, startId: buffer.startId, lastId: buffer.lastId, runs: buffer.epochRuns() };
  }
}
