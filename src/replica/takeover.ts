/**
 * Takeover and recovery of a log, as I/O: carries out the effects of the
 * pure control/takeover.ts machine (claims and seals in etcd, fences and
 * fetches over the peer transport, a LeaderLog held until the recovered tail
 * commits) and feeds their results back, one machine per log being taken
 * over. Also the operator's unsafe override.
 */
import type { SegmentMeta } from '../fencing/keys.js';
import { TernError } from '../errors.js';
import { logViewOf, TakeoverMachine, type LogView, type TakeoverEffect, type TakeoverEvent, type TakeoverSettings } from '../control/takeover.js';
import { LeaderLog } from '../quorum/leader.js';
import type { FenceAnswer } from '../quorum/recovery.js';
import { peerPaths } from '../peer/paths.js';
import { decodeEntryRuns } from '../peer/wire.js';
import type { LeaderDriver } from './leader-driver.js';
import type { ReplicaConfig } from './config.js';
import { ticksOf, type LogState, type ReplicaContext, type Waiting } from './log-state.js';
import type { RecoveryReport } from './types.js';

/** A recovery that cannot decide yet (no counted quorum) asks again this often. */
const UNDECIDED_RETRY_MS = 500;
/** A recovering leader waits this many ack timeouts for a quorum to hold the recovered tail. */
const HOLD_ACK_TIMEOUTS = 2;

/** The takeover machine's timing, from the configuration. */
export function takeoverSettingsOf(config: ReplicaConfig): Omit<TakeoverSettings, 'incarnation'> {
  return {
    self: config.id,
    undecidedRetryTicks: ticksOf(config, UNDECIDED_RETRY_MS),
    fenceTimeoutTicks: ticksOf(config, config.ackTimeoutMs),
    holdTicks: ticksOf(config, config.ackTimeoutMs * HOLD_ACK_TIMEOUTS),
  };
}

/** A takeover in progress on this replica: its machine and its caller's promise. */
export interface TakeoverRun {
  readonly machine: TakeoverMachine;
  readonly done: Promise<RecoveryReport>;
  readonly startedAt: number;
  resolve(report: RecoveryReport): void;
  reject(err: TernError): void;
  /** Feeds the new epoch's leader progress to the machine while it holds appends. */
  watchLeader(): void;
}

export class Takeover {
  private readonly settings: Omit<TakeoverSettings, 'incarnation'>;
  /** The takeovers in progress, by log: only they are ticked (an ended one leaves at the next tick). */
  private readonly running = new Map<string, LogState>();


  constructor(
    private readonly ctx: ReplicaContext,
    private readonly driver: LeaderDriver,
  ) {
    this.settings = takeoverSettingsOf(ctx.config);
  }

  /**
   * Takes leadership of `name` from epoch `expectedEpoch`. One takeover per
   * log at a time on this replica: a second request joins the running one
   * (and can only make it unsafe).
   */
  takeOver(name: string, expectedEpoch: number, unsafe = false, replacing?: string): Promise<RecoveryReport> {
    if (this.ctx.draining) return Promise.reject(new TernError('NOT_READY', `replica ${this.ctx.id} is stopping: it takes no leadership`));
    return this.start(name, expectedEpoch, unsafe, replacing);
  }

  /**
   * A draining replica takes over a leaderless log whose unflushed entries it
   * holds, only so as to close it clean before it exits (Handoffs.rescue):
   * the one leadership a draining replica takes.
   */
  rescue(name: string, expectedEpoch: number, replacing: string | undefined): Promise<RecoveryReport> {
    return this.start(name, expectedEpoch, false, replacing);
  }

  private start(name: string, expectedEpoch: number, unsafe: boolean, replacing: string | undefined): Promise<RecoveryReport> {
    const state = this.ctx.logState(name);
    if (state.takeover) {
      if (unsafe) this.feed(name, state, state.takeover, { kind: 'unsafe' });
      return state.takeover.done;
    }
    const incarnation = this.ctx.dir().self.incarnation;
    const machine = new TakeoverMachine({ ...this.settings, incarnation }, state.replica, { expectedEpoch, unsafe, ...(replacing !== undefined ? { replacing } : {}) });
    let resolve!: (report: RecoveryReport) => void;
    let reject!: (err: TernError) => void;
    const done = new Promise<RecoveryReport>((res, rej) => ((resolve = res), (reject = rej)));
    const run: TakeoverRun = { machine, done, startedAt: Date.now(), resolve, reject, watchLeader: () => this.leaderProgress(name, state) };
    state.takeover = run;
    this.running.set(name, state);
    this.pump(name, state, run);
    return done;
  }

  /**
   * Operator override: recover `name` without a counted quorum of fence
   * answers, accepting that acknowledged entries held only by replicas that
   * restarted are lost. Runs on the replica already trying to take it over, or here.
   */
  async forceRecovery(name: string): Promise<RecoveryReport> {
    const record = await this.ctx.requireLog(name);
    const state = this.ctx.logState(name);
    if (state.takeover) return this.takeOver(name, record.epoch, true);
    if (record.leader && record.leader.id !== this.ctx.id) {
      const holder = this.ctx.dir().member(record.leader.id);
      if (holder) return this.ctx.transport.command<RecoveryReport>(holder.peerUrl, peerPaths.takeover(name), { expectedEpoch: record.epoch - 1, unsafe: true, from: this.ctx.id });
    }
    if (this.ctx.localLeader(name)) throw new TernError('BAD_REQUEST', `log ${name} is available on ${this.ctx.id}: nothing to force`);
    return this.takeOver(name, record.epoch, true);
  }

  /** One tick for every takeover in progress (fence timeouts, retries, the hold deadline). */
  tick(): void {
    for (const [name, state] of this.running) {
      if (state.takeover) this.feed(name, state, state.takeover, { kind: 'tick' });
      else this.running.delete(name);
    }
  }

  /** The log's leader made progress: a takeover holding appends may be done. */
  private leaderProgress(name: string, state: LogState): void {
    if (state.takeover) this.feed(name, state, state.takeover, { kind: 'leaderProgress', deposed: state.leader?.isDeposed !== false });
  }

  private feed(name: string, state: LogState, run: TakeoverRun, event: TakeoverEvent): void {
    if (state.takeover !== run) return;
    run.machine.step(event);
    this.pump(name, state, run);
  }

  /** Carries out the machine's effects; results known at once are fed back after the batch, in order. */
  private pump(name: string, state: LogState, run: TakeoverRun): void {
    for (let effects = run.machine.effects(); effects.length > 0; effects = run.machine.effects()) {
      const immediate: TakeoverEvent[] = [];
      for (const effect of effects) {
        const event = this.carryOut(name, state, run, effect);
        if (event) immediate.push(event);
      }
      for (const event of immediate) run.machine.step(event);
    }
  }

  private carryOut(name: string, state: LogState, run: TakeoverRun, effect: TakeoverEffect): TakeoverEvent | undefined {
    const dir = this.ctx.dir();
    const later = (promise: Promise<TakeoverEvent>): undefined =>
      void promise.then(
        (event) => this.feed(name, state, run, event),
        (err: Error) => this.feed(name, state, run, { kind: 'ioFailed', reason: err.message }),
      );
    switch (effect.kind) {
      case 'claim':
        return later(dir.claimLeadership(name, effect.expectedEpoch, effect.replacing).then((epoch) => ({ kind: 'claimed', epoch })));
      case 'read':
        if (!effect.fresh) return { kind: 'read', view: this.logView(name) };
        return later(dir.fetchLog(name).then(() => ({ kind: 'read', view: this.logView(name) })));
      case 'stepDown':
        return void this.driver.stepDown(state);
      case 'fence':
        return this.fence(name, state, run, effect);
      case 'fetch':
        return this.fetch(name, effect, later);
      case 'lead':
        state.producers = undefined;
        state.flushedProducers = undefined;
        state.leaderWatchers.add(run.watchLeader);
        return void this.driver.lead(state, new LeaderLog<Waiting>(state.replica, { ...this.ctx.leaderTicks, self: this.ctx.id, peers: effect.peers, epoch: effect.epoch }));
      case 'seal':
        return later(dir.openSegment(name, effect.epoch, effect.seals as SegmentMeta[], effect.open as SegmentMeta).then((ok) => ({ kind: 'sealed', ok })));
      case 'blocked':
        return void this.ctx.log.warn({ log: name, epoch: run.machine.claimedEpoch, reason: effect.reason }, 'recovery cannot decide safely; the log stays unavailable');
      case 'release':
        return void dir.releaseLeadershipUntilDone(name, effect.epoch);
      case 'done':
        return this.finished(name, state, run, effect);
      case 'failed':
        return this.failed(name, state, run, effect.reason);
    }
  }

  private fence(name: string, state: LogState, run: TakeoverRun, effect: Extract<TakeoverEffect, { kind: 'fence' }>): TakeoverEvent | undefined {
    const member = this.ctx.dir().member(effect.to);
    const failed: TakeoverEvent = { kind: 'fenceFailed', round: effect.round, from: effect.to };
    if (!member) return failed;
    this.ctx.transport.command<FenceAnswer>(member.peerUrl, peerPaths.fence(name), { epoch: effect.epoch, leader: this.ctx.id }).then(
      (answer) => this.feed(name, state, run, { kind: 'fenceAnswer', round: effect.round, answer: { ...answer, replica: effect.to } }),
      (err: Error) => {
        this.ctx.log.warn({ log: name, peer: effect.to, err: err.message }, 'no fence answer');
        this.feed(name, state, run, failed);
      },
    );
    return undefined;
  }

  private fetch(name: string, effect: Extract<TakeoverEffect, { kind: 'fetch' }>, later: (p: Promise<TakeoverEvent>) => undefined): TakeoverEvent | undefined {
    const member = this.ctx.dir().member(effect.from);
    if (!member) return { kind: 'ioFailed', reason: `${effect.from}, which holds the recovered tail, is gone` };
    const fetched = this.ctx.transport.fetchBinary(member.peerUrl, peerPaths.fetch(name), { fromId: effect.fromId, toId: effect.toId });
    return later(fetched.then((body) => ({ kind: 'fetched', runs: decodeEntryRuns(body) })));
  }

  private finished(name: string, state: LogState, run: TakeoverRun, done: Extract<TakeoverEffect, { kind: 'done' }>): undefined {
    this.end(state, run);
    const record = this.ctx.directory?.log(name);
    // Flushes whatever the previous leaders had not, sealed segments included, before anything is released.
    // The idempotent producers' table is loaded first: the flusher's snapshots start from it.
    const leader = state.leader;
    if (leader && record) this.ctx.producers.load(name, state, leader, () => this.ctx.storage.startFlusher(name, record.meta.uid, state, leader));
    this.ctx.metrics.recovered('ok', (Date.now() - run.startedAt) / 1000);
    this.ctx.metrics.leadershipChanged('acquired');
    const sealed = done.sealed.map((seg) => ({ epoch: seg.epoch, lastId: seg.lastId }));
    this.ctx.log.info({ log: name, epoch: done.epoch, recoveredId: done.recoveredId, sealed, ms: Date.now() - run.startedAt, ...(done.warning ? { warning: done.warning } : {}) }, 'leading log');
    run.resolve({ log: name, epoch: done.epoch, recoveredId: done.recoveredId, ...(done.warning ? { warning: done.warning } : {}) });
    return undefined;
  }

  private failed(name: string, state: LogState, run: TakeoverRun, reason: string): undefined {
    this.end(state, run);
    if (run.machine.claimedEpoch !== undefined) this.ctx.metrics.recovered('failed', (Date.now() - run.startedAt) / 1000);
    run.reject(new TernError('NOT_READY', `log ${name}: ${reason}`));
    return undefined;
  }

  private end(state: LogState, run: TakeoverRun): void {
    state.takeover = undefined;
    state.leaderWatchers.delete(run.watchLeader);
  }

  /** The log as the directory shows it, with the live members, for the machine. */
  private logView(name: string): LogView | undefined {
    const dir = this.ctx.dir();
    const record = dir.log(name);
    return record && logViewOf(record, dir.flushedId(name), (id) => dir.incarnationOf(id));
  }
}
