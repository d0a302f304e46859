/**
 * Leadership moved on purpose, as I/O around the pure control/drain.ts
 * machine: a handoff to a chosen replica, and the controlled shutdown
 * (SIGTERM/SIGINT), which hands every led log to a live replica its open
 * segment counts, or, with none, flushes it and closes it clean in etcd
 * (BookKeeper's closed ledger) before the process exits.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { DrainMachine, type DrainEffect, type DrainOutcome, type DrainSettings, type LeaderSnapshot } from '../control/drain.js';
import { TernError } from '../errors.js';
import type { LeaderLog } from '../quorum/leader.js';
import { leaderKeyValue, type LogRecord } from '../fencing/keys.js';
import { peerPaths } from '../peer/paths.js';
import type { LeaderDriver } from './leader-driver.js';
import type { Takeover } from './takeover.js';
import { ticksOf, type LogState, type ReplicaContext, type Waiting } from './log-state.js';
import type { Placement } from './placement.js';
import type { DrainReport, LogStatus } from './types.js';

/** How often a draining replica looks again at a leaderless log whose entries it holds. */
const RESCUE_RETRY_MS = 200;

/** A drain in progress: its machine, fed on every tick. */
interface DrainRun {
  machine: DrainMachine;
  feedTick(): void;
}

export class Handoffs {
  private readonly runs = new Set<DrainRun>();

  constructor(
    private readonly ctx: ReplicaContext,
    private readonly driver: LeaderDriver,
    private readonly placement: Placement,
    private readonly takeover: Takeover,
  ) {}

  /**
   * Moves leadership of `name` to replica `to` on purpose: stop taking
   * appends, let the rounds in flight finish, and ask `to` to take over in
   * place of this leader's key (it recovers as after a failure, so nothing
   * acknowledged is lost; the key is never free for the coordinator to hand
   * out). This leader keeps its key until `to` claims it, so a refused handoff
   * leaves the log where it was, taking appends again.
   */
  async handoff(name: string, to: string): Promise<LogStatus> {
    const record = await this.ctx.requireLog(name);
    if (!record.meta.replicas.includes(to)) throw new TernError('BAD_REQUEST', `${to} is not a replica of log ${name} (${record.meta.replicas.join(', ')})`);
    if (!this.ctx.dir().member(to)) throw new TernError('NOT_READY', `replica ${to} is not live`);
    const state = this.ctx.logs.get(name);
    const leader = this.ctx.localLeader(name);
    if (!state || !leader) throw new TernError('NOT_READY', `replica ${this.ctx.id} does not lead log ${name}`);
    if (to === this.ctx.id) return this.ctx.status(name);
    const outcome = await this.run(name, state, leader, [to], false);
    if (outcome.kind === 'refused' || outcome.kind === 'unfinished') throw new TernError('NOT_READY', outcome.reason);
    if (outcome.kind === 'lost') throw new TernError('NOT_READY', `log ${name}: another leader fenced ${this.ctx.id} during the handoff`);
    return this.ctx.status(name);
  }

  /**
   * Controlled shutdown (Kafka's controlled shutdown, BookKeeper's ledger
   * close): not ready at once, no new leaderships; every led log, in
   * parallel, stops taking appends, finishes its rounds, and moves to a live
   * replica its open segment counts, or, when there is none, flushes what it
   * committed and is closed clean in etcd. Reads and peer traffic are served
   * throughout. The caller bounds it with --shutdown-timeout-ms.
   */
  async drain(report: DrainReport): Promise<void> {
    this.ctx.beginDraining();
    const dir = this.ctx.dir();
    try {
      await dir.markDraining();
    } catch (err) {
      this.ctx.log.warn({ err: (err as Error).message }, 'could not mark this replica as draining in etcd; handing off anyway');
    }
    // A takeover already running may make this replica a leader it must then drain.
    await Promise.allSettled([...this.ctx.logs.values()].map((state) => state.takeover?.done));
    const led = [...this.ctx.logs].filter(([name]) => this.ctx.localLeader(name));
    const held = [...this.ctx.logs].filter(([name, state]) => !this.ctx.localLeader(name) && this.unflushedHere(name, state) !== undefined);
    // The i-th log tries the targets from the i-th on, so the recoveries spread over the replicas that stay.
    await Promise.all([
      ...led.map(async ([name, state], i) => {
        const leader = this.ctx.localLeader(name)!;
        recordOutcome(report, name, await this.drainLed(name, state, leader, i));
      }),
      ...held.map(([name, state], i) => this.keepUntilSafe(name, state, report, led.length + i)),
    ]);
  }

  private drainLed(name: string, state: LogState, leader: LeaderLog<Waiting>, spread: number): Promise<DrainOutcome> {
    return this.run(name, state, leader, this.placement.handoffTargets(name, leader.epoch, spread), this.ctx.store !== undefined);
  }

  /** The open segment's epoch when this replica holds entries of `name` that object storage does not. */
  private unflushedHere(name: string, state: LogState): number | undefined {
    const open = this.ctx.directory?.log(name)?.segments.at(-1);
    if (!open || open.lastId !== null || !(this.ctx.id in open.replicas)) return undefined;
    return state.replica.buffer.lastId > this.ctx.directory!.flushedId(name) ? open.epoch : undefined;
  }

  /**
   * A log this replica holds unflushed entries of but does not lead. When
   * its leader stays (live, not draining, and heard from since the drain
   * began), that leader and the third replica keep them, and this one may go
   * within a heartbeat: a rolling restart. When it has no
   * leader (its leader lost its etcd lease, say, and no coordinator has named
   * another yet) or its leader is draining too, the entries, acknowledged
   * perhaps, would die with every replica's memory in a whole-cluster stop.
   * So this replica stays until they are safe without it (flushed, or
   * recovered into a later leader's segment) and, while the log has no
   * leader, takes it over itself (the one leadership a draining replica
   * takes) to hand it off or close it clean like a log it led. The caller's
   * deadline bounds the wait, as it bounds every drain.
   */
  private async keepUntilSafe(name: string, state: LogState, report: DrainReport, spread: number): Promise<void> {
    const epoch = this.unflushedHere(name, state);
    if (epoch === undefined) return;
    const held = state.replica.buffer.lastId;
    const since = this.ctx.failover.clock;
    let warned = false;
    for (;;) {
      const record = this.ctx.stopping ? undefined : this.ctx.directory?.log(name);
      if (!record || this.safeWithoutThisReplica(name, record, epoch, held)) return;
      const leader = record.leader;
      // Its key may outlive a leadership its holder gave up (a lost lease): only a leader heard since counts.
      if (leader && leader.id !== this.ctx.id && this.placement.staysLive(leader.id) && this.ctx.failover.heardSince(name, since)) return;
      if ((!leader || leader.id === this.ctx.id) && !state.takeover) {
        if (!warned) this.ctx.log.warn({ log: name, epoch, held, flushedId: this.ctx.directory?.flushedId(name) }, 'log has no leader and holds unflushed entries here: taking it over to close it before stopping');
        // A key of this replica's own that it does not lead by is left from a lease it lost: replace it.
        await this.takeover.rescue(name, record.epoch, leader && leaderKeyValue(leader)).catch((err: Error) => {
          if (!warned) this.ctx.log.info({ log: name, err: err.message }, 'took no leadership of a log held here; staying until it is safe');
        });
        warned = true;
        const led = this.ctx.localLeader(name);
        if (led) return recordOutcome(report, name, await this.drainLed(name, state, led, spread));
      }
      await sleep(RESCUE_RETRY_MS);
    }
  }

  /** Object storage holds every id through `held`, or a leader after `epoch` recovered them into its own segment. */
  private safeWithoutThisReplica(name: string, record: LogRecord, epoch: number, held: number): boolean {
    const last = record.segments.at(-1);
    return this.ctx.directory!.flushedId(name) >= held || (last !== undefined && last.epoch > epoch);
  }

  /** One tick for every drain in progress (the rounds' timeout, the flushed mark). */
  tick(): void {
    for (const run of this.runs) run.feedTick();
  }

  /** Runs a drain of `name` to its outcome; appends get 503 NOT_READY meanwhile. */
  private run(name: string, state: LogState, leader: LeaderLog<Waiting>, targets: string[], closeWhenRefused: boolean): Promise<DrainOutcome> {
    const settings: DrainSettings = { epoch: leader.epoch, targets, closeWhenRefused, roundsTimeoutTicks: ticksOf(this.ctx.config, this.ctx.config.ackTimeoutMs) };
    const machine = new DrainMachine(settings, snapshot(state, leader), this.ctx.dir().flushedId(name));
    state.handingOff = true;
    return new Promise<DrainOutcome>((resolve) => {
      const pump = () => {
        for (let effects = machine.effects(); effects.length > 0; effects = machine.effects()) {
          for (const effect of effects) this.carryOut(name, state, leader, effect, feed, finish);
        }
      };
      const feed = (event: Parameters<DrainMachine['step']>[0]) => {
        machine.step(event);
        pump();
      };
      const watch = () => feed({ kind: 'leader', leader: snapshot(state, leader) });
      const run: DrainRun = {
        machine,
        feedTick: () => {
          feed({ kind: 'flushed', flushedId: this.ctx.directory?.flushedId(name) ?? -1 });
          feed({ kind: 'tick' });
        },
      };
      const finish = (outcome: DrainOutcome) => {
        this.runs.delete(run);
        state.leaderWatchers.delete(watch);
        state.handingOff = false;
        resolve(outcome);
      };
      this.runs.add(run);
      state.leaderWatchers.add(watch);
      pump();
    });
  }

  private carryOut(name: string, state: LogState, leader: LeaderLog<Waiting>, effect: DrainEffect, feed: (event: Parameters<DrainMachine['step']>[0]) => void, finish: (outcome: DrainOutcome) => void): void {
    switch (effect.kind) {
      case 'handoff':
        return void this.passLeadership(name, effect.to, effect.expectedEpoch).then(
          () => feed({ kind: 'handoffAnswer', to: effect.to, ok: true }),
          (err: Error) => {
            this.ctx.log.warn({ log: name, to: effect.to, err: err.message }, 'handoff refused');
            feed({ kind: 'handoffAnswer', to: effect.to, ok: false, reason: err.message });
          },
        );
      case 'closeClean':
        return void this.closeClean(name, effect.epoch, effect.lastId).then(
          (ok) => feed(ok ? { kind: 'closed', ok } : { kind: 'closed', ok, reason: `lost epoch ${effect.epoch} before closing` }),
          (err: Error) => feed({ kind: 'closed', ok: false, reason: err.message }),
        );
      case 'stepDown':
        this.driver.stepDown(state);
        return void this.ctx.log.info({ log: name, epoch: leader.epoch, lastId: state.replica.commitId }, 'log closed clean: flushed through its last committed id');
      case 'done':
        return finish(effect.outcome);
    }
  }

  /** Asks `to` to take `name` over, replacing exactly this leader's key of `epoch`. */
  private async passLeadership(name: string, to: string, epoch: number): Promise<void> {
    const target = this.ctx.dir().member(to);
    if (!target) throw new Error(`replica ${to} is not live`);
    this.ctx.log.info({ log: name, epoch, to }, 'handing off');
    await this.ctx.transport.command(target.peerUrl, peerPaths.takeover(name), { expectedEpoch: epoch, replacing: this.ctx.dir().leaderValue(epoch), from: this.ctx.id });
  }

  /**
   * Seals the open segment at `lastId` (object storage holds every id up to
   * it), in one transaction that also gives up the leader key: the next
   * leader needs no fence answers (BookKeeper's closed ledger).
   */
  private async closeClean(name: string, epoch: number, lastId: number): Promise<boolean> {
    const dir = this.ctx.dir();
    const open = dir.log(name)?.segments.at(-1);
    if (!open || open.epoch !== epoch || open.lastId !== null) throw new Error(`segment ${epoch} is not the open one`);
    return dir.closeSegmentClean(name, epoch, { ...open, lastId, lastTimeMs: this.ctx.logs.get(name)?.replica.buffer.lastTimeMs ?? dir.lastTimeMs(name) });
  }
}

function snapshot(state: LogState, leader: LeaderLog<Waiting>): LeaderSnapshot {
  return { pending: leader.pendingCount, deposed: leader.isDeposed, commitId: state.replica.commitId };
}

function recordOutcome(report: DrainReport, name: string, outcome: DrainOutcome): void {
  switch (outcome.kind) {
    case 'handedOff':
      return void report.handedOff.push(name);
    case 'closedClean':
      return void report.closedClean.push(name);
    case 'lost':
      return void report.lost.push(name);
    case 'refused':
      // Only a drain without an object store may not close clean.
      return void report.unfinished.push({ log: name, reason: `no replica took the log and there is no object store: committed entries live only in memory (${outcome.reason})` });
    case 'unfinished':
      return void report.unfinished.push({ log: name, reason: outcome.reason });
  }
}
