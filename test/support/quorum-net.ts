/**
 * An in-memory network for the pure protocol: one LeaderLog, its followers
 * (LogReplica instances), and queues of messages and replies that a test or
 * a property run delivers, drops, duplicates or reorders at will.
 */
import { LeaderLog, type Acked, type Failed, type LeaderConfig } from '../../src/quorum/leader.js';
import { LogReplica } from '../../src/quorum/log-replica.js';
import type { AppendReply, AppendRequest } from '../../src/quorum/messages.js';

export interface InFlight {
  kind: 'request' | 'reply';
  from: string;
  to: string;
  req?: AppendRequest;
  reply?: AppendReply;
}

export const defaultConfig = (overrides: Partial<LeaderConfig> = {}): LeaderConfig => ({
  self: 'r1',
  peers: ['r2', 'r3'],
  epoch: 1,
  maxInflight: 4,
  maxBatchEntries: 100,
  maxBatchBytes: 1 << 20,
  // Small, so random histories cover both waiting for a fuller batch and pipelining.
  pipelineMinBytes: 8,
  ackTimeoutTicks: 50,
  retransmitTicks: 10,
  heartbeatTicks: 5,
  backoffTicks: 2,
  checkQuorum: false,
  ...overrides,
});

export class QuorumNet {
  readonly account = { bytes: 0 };
  readonly leaderReplica: LogReplica;
  readonly leader: LeaderLog<number>;
  readonly followers: Map<string, LogReplica>;
  inFlight: InFlight[] = [];
  acked: Acked<number>[] = [];
  failed: Failed<number>[] = [];
  /** Ids held by each replica at the moment a proposal was acked. */
  ackSnapshots: { ack: Acked<number>; holders: number }[] = [];
  /**
   * Per follower, the highest id it held when it last restarted: a reply it sent
   * before the restart may still arrive and rightly count, so an entry it held
   * then was held by it when acknowledged; the restart is the one failure the
   * promise allows, not an ack without a quorum.
   */
  private readonly heldBeforeRestart = new Map<string, number>();

  constructor(config: Partial<LeaderConfig> = {}) {
    const cfg = defaultConfig(config);
    this.leaderReplica = new LogReplica('log', this.account);
    this.leader = new LeaderLog<number>(this.leaderReplica, cfg);
    this.followers = new Map(cfg.peers.map((p) => [p, new LogReplica('log', this.account)]));
  }

  /** Collects the leader's Ready: messages go in flight, acks and failures are recorded. */
  pump(): void {
    const ready = this.leader.ready();
    for (const m of ready.messages) this.inFlight.push({ kind: 'request', from: 'r1', to: m.to, req: m.req });
    for (const a of ready.acked) {
      const holders =
        (a.lastId <= this.leaderReplica.buffer.lastId ? 1 : 0) +
        [...this.followers].filter(([id, r]) => a.lastId <= Math.max(r.buffer.lastId, this.heldBeforeRestart.get(id) ?? -1)).length;
      this.ackSnapshots.push({ ack: a, holders });
    }
    this.acked.push(...ready.acked);
    this.failed.push(...ready.failed);
  }

  /** Delivers in-flight item `i` (removing it): a request reaches its follower, a reply the leader. */
  deliver(i: number): void {
    const [item] = this.inFlight.splice(i, 1);
    if (!item) return;
    if (item.kind === 'request') {
      const reply = this.followers.get(item.to)!.handleAppend(item.req!);
      this.inFlight.push({ kind: 'reply', from: item.to, to: 'r1', reply });
    } else {
      this.leader.handleReply(item.from, item.reply!);
    }
  }

  deliverAll(): void {
    while (this.inFlight.length) this.deliver(0);
  }

  drop(i: number): void {
    this.inFlight.splice(i, 1);
  }

  /** Runs rounds with a perfect network until nothing moves. */
  settle(rounds = 50): void {
    for (let i = 0; i < rounds; i++) {
      this.pump();
      this.deliverAll();
      this.leader.tick();
    }
    this.pump();
  }

  restartFollower(id: string): void {
    const old = this.followers.get(id)!;
    this.heldBeforeRestart.set(id, Math.max(this.heldBeforeRestart.get(id) ?? -1, old.buffer.lastId));
    this.account.bytes -= old.buffer.bytes;
    const fresh = new LogReplica('log', this.account);
    fresh.observeEpoch(0);
    this.followers.set(id, fresh);
  }

  contents(r: LogReplica): string[] {
    const out: string[] = [];
    for (let id = r.buffer.startId; id <= r.buffer.lastId; id++) out.push(r.buffer.get(id)!.toString());
    return out;
  }
}
