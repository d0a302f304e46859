/**
 * Leadership moved on purpose: a handoff to a chosen replica, and the
 * controlled shutdown (SIGTERM/SIGINT), which hands every led log to a live
 * replica its open segment counts, or, with none, flushes it and closes it
 * clean in etcd (BookKeeper's closed ledger) before the process exits.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { MemberInfo } from '../fencing/keys.js';
import { TernError } from '../errors.js';
import type { LeaderLog } from '../quorum/leader.js';
import { peerPaths } from '../peer/paths.js';
import type { LeaderDriver } from './leader-driver.js';
import type { LogState, ReplicaContext, Waiting } from './log-state.js';
import type { Placement } from './placement.js';
import type { DrainReport, LogStatus } from './types.js';

/** How often a draining leader looks whether its flusher has caught up with the commit point. */
const DRAIN_POLL_MS = 10;

export class Handoffs {
  constructor(
    private readonly ctx: ReplicaContext,
    private readonly driver: LeaderDriver,
    private readonly placement: Placement,
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
    const target = this.ctx.dir().member(to);
    if (!target) throw new TernError('NOT_READY', `replica ${to} is not live`);
    const state = this.ctx.logs.get(name);
    const leader = this.ctx.localLeader(name);
    if (!state || !leader) throw new TernError('NOT_READY', `replica ${this.ctx.id} does not lead log ${name}`);
    if (to === this.ctx.id) return this.ctx.status(name);
    state.handingOff = true;
    try {
      await this.roundsDone(state, leader, this.ctx.config.ackTimeoutMs);
      await this.passLeadership(name, leader, target);
    } finally {
      state.handingOff = false;
    }
    return this.ctx.status(name);
  }

  /** Asks `target` to take `name` over from `leader`, replacing exactly this leader's key. */
  private async passLeadership(name: string, leader: LeaderLog<Waiting>, target: MemberInfo): Promise<void> {
    this.ctx.log.info({ log: name, epoch: leader.epoch, to: target.id }, 'handing off');
    try {
      await this.ctx.transport.command(target.peerUrl, peerPaths.takeover(name), { expectedEpoch: leader.epoch, replacing: this.ctx.dir().leaderValue(leader.epoch) });
    } catch (err) {
      throw new TernError('NOT_READY', `handoff of ${name} to ${target.id} failed: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Resolves once `leader` has no proposal in flight (all acked or failed), or after `timeoutMs`. */
  private roundsDone(state: LogState, leader: LeaderLog<Waiting>, timeoutMs: number): Promise<void> {
    if (leader.pendingCount === 0 || leader.isDeposed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, Math.max(0, timeoutMs));
      function done(): void {
        clearTimeout(timer);
        state.roundsDone = undefined;
        resolve();
      }
      state.roundsDone = done;
    });
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
    await Promise.allSettled([...this.ctx.logs.values()].map((state) => state.takeover));
    const led = [...this.ctx.logs].filter(([name]) => this.ctx.localLeader(name));
    // The i-th log tries the targets from the i-th on, so the recoveries spread over the replicas that stay.
    await Promise.all(led.map(([name, state], i) => this.drainLog(name, state, this.ctx.localLeader(name)!, i, report)));
  }

  private async drainLog(name: string, state: LogState, leader: LeaderLog<Waiting>, spread: number, report: DrainReport): Promise<void> {
    state.handingOff = true;
    try {
      await this.roundsDone(state, leader, this.ctx.config.ackTimeoutMs);
      const targets = this.handoffTargets(name, leader.epoch);
      const first = targets.length > 0 ? spread % targets.length : 0;
      for (const target of [...targets.slice(first), ...targets.slice(0, first)]) {
        if (leader.isDeposed) break;
        try {
          await this.passLeadership(name, leader, target);
          report.handedOff.push(name);
          return;
        } catch (err) {
          this.ctx.log.warn({ log: name, to: target.id, err: (err as Error).message }, 'shutdown handoff refused; trying the next replica or closing clean');
        }
      }
      if (leader.isDeposed) return void report.lost.push(name);
      await this.closeClean(name, state, leader);
      report.closedClean.push(name);
    } catch (err) {
      report.unfinished.push({ log: name, reason: (err as Error).message });
    } finally {
      state.handingOff = false;
    }
  }

  /** Live replicas, not stopping, that the open segment of `epoch` counts: they can recover the log from their memory. */
  private handoffTargets(name: string, epoch: number): MemberInfo[] {
    const record = this.ctx.directory?.log(name);
    const open = record?.segments.at(-1);
    if (!record || !open || open.epoch !== epoch || open.lastId !== null) return [];
    return this.placement.leaderCandidates(record)
      .filter((id) => id !== this.ctx.id && open.replicas[id] === this.ctx.dir().member(id)?.incarnation)
      .map((id) => this.ctx.dir().member(id)!);
  }

  /**
   * Seals the open segment at the commit point once object storage holds
   * every committed id, in one transaction that also gives up the leader key:
   * the next leader needs no fence answers (BookKeeper's closed ledger).
   */
  private async closeClean(name: string, state: LogState, leader: LeaderLog<Waiting>): Promise<void> {
    if (!this.ctx.store) throw new Error('no object store: committed entries live only in memory');
    const commitId = state.replica.commitId;
    const dir = this.ctx.dir();
    while (dir.flushedId(name) < commitId) {
      if (leader.isDeposed) throw new Error(`fenced at epoch ${leader.epoch} while flushing`);
      await sleep(DRAIN_POLL_MS);
    }
    const open = dir.log(name)?.segments.at(-1);
    if (!open || open.epoch !== leader.epoch || open.lastId !== null) throw new Error(`segment ${leader.epoch} is not the open one`);
    if (!(await dir.closeSegmentClean(name, leader.epoch, { ...open, lastId: commitId }))) throw new Error(`lost epoch ${leader.epoch} before closing`);
    this.driver.stepDown(state);
    this.ctx.log.info({ log: name, epoch: leader.epoch, lastId: commitId }, 'log closed clean: flushed through its last committed id');
  }
}
