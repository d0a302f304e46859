/**
 * Quiescence as I/O around control/quiescence.ts: the leader seals the logs
 * it leads once they go idle; an append to a quiesced log, at any replica of
 * it, reopens it here with one etcd transaction; and every replica drops its
 * state of a log etcd shows quiesced, so an idle log costs no timer, no
 * message and no memory beyond its metadata in the cluster view.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { leadershipLost } from '../control/follower.js';
import { mayQuiesce, reopenedSegment } from '../control/quiescence.js';
import { TernError } from '../errors.js';
import type { SegmentMeta } from '../fencing/keys.js';
import { LeaderLog } from '../quorum/leader.js';
import type { LeaderDriver } from './leader-driver.js';
import { ticksOf, type LogState, type ReplicaContext, type Waiting } from './log-state.js';

/** The led logs are looked over this many times per --quiesce-after-ms (a log quiesces at most a quarter of that late)... */
const PASSES_PER_QUIESCE_AFTER = 4;
/** ...but no more often than this: a pass walks every led log. */
const MIN_PASS_MS = 250;
/** A seal whose answer was lost: etcd is read again after this, then twice as long each time, up to the max. */
const UNKNOWN_SEAL_FIRST_RETRY_MS = 100;
const UNKNOWN_SEAL_MAX_RETRY_MS = 2000;

export class Quiescence {
  private ticks = 0;
  private readonly passTicks: number;
  /** Reopens under way here, by log: appends that arrive meanwhile wait for the same one. */
  private readonly reopening = new Map<string, Promise<void>>();

  constructor(
    private readonly ctx: ReplicaContext,
    private readonly driver: LeaderDriver,
  ) {
    this.passTicks = ticksOf(ctx.config, Math.max(MIN_PASS_MS, ctx.config.quiesceAfterMs / PASSES_PER_QUIESCE_AFTER));
  }

  /** One replica tick: every pass, seals the led logs that went idle. */
  tick(): void {
    if (this.ctx.config.quiesceAfterMs === 0 || ++this.ticks % this.passTicks !== 0) return;
    const dir = this.ctx.directory;
    if (!dir || this.ctx.draining || this.ctx.stopping || !this.ctx.store) return;
    const now = performance.now();
    for (const state of this.driver.led) {
      const leader = state.leader;
      if (!leader || state.quiescing) continue;
      const name = state.replica.log;
      const activity = {
        idleMs: now - state.lastAppendAt,
        pending: leader.pendingCount,
        lastId: state.replica.buffer.lastId,
        commitId: state.replica.commitId,
        flushedId: dir.flushedId(name),
        busy: leader.isDeposed || state.takeover !== undefined || state.handingOff,
      };
      if (mayQuiesce(activity, this.ctx.config.quiesceAfterMs)) this.quiesce(name, state, leader);
    }
  }

  /**
   * Seals the log closed clean and quiesced at its last id, giving up the
   * leader key in the same transaction. Appends wait meanwhile (`quiescing`):
   * one taken now could land past the seal. If etcd refuses, the leader goes
   * on leading.
   */
  private quiesce(name: string, state: LogState, leader: LeaderLog<Waiting>): void {
    const dir = this.ctx.dir();
    const open = dir.log(name)?.segments.at(-1);
    if (!open || open.epoch !== leader.epoch || open.lastId !== null) return;
    const lastId = state.replica.commitId;
    const producers = state.producers?.size;
    state.quiescing = dir
      .closeSegmentClean(name, leader.epoch, { ...open, lastId, lastTimeMs: state.replica.buffer.lastTimeMs, ...(producers === undefined ? {} : { producers }) }, true)
      .catch((err: Error) => {
        this.ctx.log.warn({ log: name, err: err.message }, 'quiescing the log: no answer from etcd; reading the log to learn whether the seal was applied');
        return this.sealedAfterAll(name, leader.epoch);
      })
      .then((sealed) => {
        if (!sealed) return;
        this.driver.stepDown(state);
        this.driver.flush();
        this.ctx.metrics.quiesced();
        this.ctx.log.info({ log: name, epoch: leader.epoch, lastId }, 'log quiesced: idle and flushed, sealed in etcd');
      })
      .finally(() => {
        state.quiescing = undefined;
        // The watch may have told of the seal before etcd's answer came: drop the state here then.
        this.dropIfQuiesced(name, state);
      });
  }

  /**
   * The seal's answer never came, and etcd may have applied it: the leader
   * must not take an append until it knows, since followers that know it
   * would accept entries past the seal, and the next leader would cut them
   * (acknowledged) at it. Reads the log from etcd until it answers; true
   * when this leader's epoch is over there (sealed, or lost otherwise): it
   * steps down either way.
   */
  private async sealedAfterAll(name: string, epoch: number): Promise<boolean> {
    for (let delay = UNKNOWN_SEAL_FIRST_RETRY_MS; ; delay = Math.min(delay * 2, UNKNOWN_SEAL_MAX_RETRY_MS)) {
      if (this.ctx.stopping) return true;
      try {
        return leadershipLost(await this.ctx.dir().fetchLog(name), epoch);
      } catch {
        await sleep(delay);
      }
    }
  }

  /**
   * Makes this replica lead `name` for an append, when the log is quiesced (or
   * being quiesced here): waits out a seal in progress, then reopens the log
   * with one etcd transaction. Resolves once this replica leads it, or when
   * it need not (another replica reopened it first, or the log is not
   * quiesced): the caller routes the append as usual then.
   */
  async wake(name: string): Promise<void> {
    const quiescing = this.ctx.logs.get(name)?.quiescing;
    if (quiescing) await quiescing;
    const dir = this.ctx.dir();
    if (!dir.isQuiesced(name) || this.ctx.localLeader(name)) return;
    let reopening = this.reopening.get(name);
    if (!reopening) {
      reopening = this.reopen(name).finally(() => this.reopening.delete(name));
      this.reopening.set(name, reopening);
    }
    await reopening;
  }

  /**
   * Every replica, on a change of the log in etcd: once the log is quiesced,
   * drops what it keeps of it (all of it is in object storage). A new state
   * is made from the cluster view when the log wakes.
   */
  dropIfQuiesced(name: string, state: LogState): void {
    if (!this.ctx.directory?.isQuiesced(name) || state.leader || state.takeover || state.quiescing || this.reopening.has(name)) return;
    state.replica.releaseThrough(state.replica.buffer.lastId);
    this.ctx.logs.delete(name);
  }

  private async reopen(name: string): Promise<void> {
    const started = performance.now();
    const dir = this.ctx.dir();
    const record = dir.log(name);
    const quiesced = record?.segments.at(-1);
    if (!record || !quiesced || !dir.isQuiesced(name)) return;
    if (this.ctx.draining || !record.meta.replicas.includes(this.ctx.id)) {
      throw new TernError('NOT_READY', `log ${name} is quiesced and replica ${this.ctx.id} cannot reopen it (${this.ctx.draining ? 'stopping' : 'not a replica of it'})`, { maybeApplied: false });
    }
    const open = reopenedSegment(quiesced, record.epoch + 1, this.ctx.incarnationsOf(record.meta.replicas)) as SegmentMeta;
    let epoch: number | undefined;
    try {
      const before = record.segments.filter((seg) => seg.epoch < quiesced.epoch).map((seg) => seg.epoch);
      epoch = await dir.reopen(name, record.epoch, open, before);
    } catch (err) {
      // etcd may have applied it: give back the key it would have written (compared on its exact value, so a
      // no-op otherwise), or the log would stay led by a key nobody acts on while this replica lives.
      void dir.releaseLeadershipUntilDone(name, record.epoch + 1);
      throw new TernError('NOT_READY', `log ${name}: reopening it failed (${(err as Error).message})`, { maybeApplied: false, cause: err });
    }
    // Another replica reopened it first (or it moved on): the view shows who leads it once etcd is read.
    if (epoch === undefined) return void (await dir.fetchLog(name));
    this.lead(name, epoch, quiesced.lastId!, record.meta.uid, record.meta.replicas, quiesced.producers === 0);
    this.ctx.metrics.reopened((performance.now() - started) / 1000);
    this.ctx.log.info({ log: name, epoch, fromId: quiesced.lastId! + 1, ms: Math.round(performance.now() - started) }, 'quiesced log reopened for an append');
  }

  /** Leads the reopened log at `epoch`, right after `lastId`: every id through it is in object storage, so nothing is recovered. */
  private lead(name: string, epoch: number, lastId: number, uid: string | undefined, replicas: readonly string[], noProducers: boolean): void {
    const state = this.ctx.logState(name);
    state.replica.observeEpoch(epoch, this.ctx.id);
    state.replica.releaseThrough(lastId);
    state.replica.discardAfter(lastId);
    state.producers = undefined;
    state.flushedProducers = undefined;
    const leader = new LeaderLog<Waiting>(state.replica, { ...this.ctx.leaderTicks, self: this.ctx.id, peers: replicas.filter((id) => id !== this.ctx.id), epoch });
    this.driver.lead(state, leader);
    this.ctx.metrics.leadershipChanged('acquired');
    this.ctx.producers.load(name, state, leader, () => this.ctx.storage.startFlusher(name, uid, state, leader), noProducers ? lastId : undefined);
  }
}
