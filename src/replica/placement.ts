/**
 * Placement as I/O around the pure control/placement.ts: the coordinator's
 * passes (every log without a leader key goes to a live replica of it,
 * fewest leaderships first), the first leader of a new log, the candidates a
 * handoff or failover may pick, the leader's recording of a restarted
 * follower that has caught up (so the open segment counts it again), and
 * this replica's readiness: counted everywhere.
 */
import { caughtUpReplicas, handoffTargets, leaderCandidates, leaderlessAssignments, leadershipCounts, type PlacedLog, type PlacementView } from '../control/placement.js';
import type { LogRecord } from '../fencing/keys.js';
import { TernError } from '../errors.js';
import { incarnationTag } from '../quorum/messages.js';
import type { Readiness } from './types.js';
import { peerPaths } from '../peer/paths.js';
import type { LogState, ReplicaContext } from './log-state.js';

/** How long a new log's creator has to give it its first leader before the coordinator does. */
const CREATION_GRACE_MS = 10_000;

export class Placement {
  /** Logs the coordinator is assigning right now. */
  private readonly assigning = new Set<string>();

  constructor(private readonly ctx: ReplicaContext) {}

  /** Gives every log without a leader key to a live replica of it; run by the coordinator. */
  assignLeaderless(): void {
    const assignments = leaderlessAssignments(this.placedLogs(), this.view(), { nowMs: Date.now(), creationGraceMs: CREATION_GRACE_MS, assigning: this.assigning });
    for (const { log, candidate, expectedEpoch } of assignments) {
      this.assigning.add(log);
      this.assign(log, candidate, expectedEpoch)
        .catch((err) => this.ctx.log.warn({ log, candidate, err: (err as Error).message }, 'leader assignment failed; will retry'))
        .finally(() => this.assigning.delete(log));
    }
  }

  /** Spreads first leaderships: the live replicas of the log, fewest leaderships first (ties by id). */
  async assignFirstLeader(name: string, record: LogRecord): Promise<void> {
    for (const id of this.leaderCandidates(record)) {
      try {
        return void (await this.assign(name, id, record.epoch));
      } catch (err) {
        this.ctx.log.warn({ log: name, candidate: id, err: (err as Error).message }, 'candidate could not take the first leadership; trying the next');
      }
    }
    throw new TernError('NOT_READY', `no replica of log ${name} could take its leadership`);
  }

  /** The live replicas that may lead the log, in order of preference. */
  leaderCandidates(record: LogRecord): string[] {
    return leaderCandidates(placed(record), this.view(), leadershipCounts(this.placedLogs()));
  }

  /** Replicas this leader, stopping at `epoch`, may hand `name` to, rotated by `spread`. */
  handoffTargets(name: string, epoch: number, spread: number): string[] {
    const record = this.ctx.directory?.log(name);
    return record ? handoffTargets(placed(record), this.ctx.id, epoch, this.view(), leadershipCounts(this.placedLogs()), spread) : [];
  }

  /** See control/placement.ts caughtUpReplicas: records the incarnations of followers that caught up after a restart. */
  recordRejoinedReplicas(name: string, state: LogState): void {
    const leader = this.ctx.localLeader(name);
    const record = this.ctx.directory?.log(name);
    const open = record?.segments.at(-1);
    if (!leader || state.takeover || !record || !open || open.epoch !== leader.epoch) return;
    const live = this.ctx.incarnationsOf(record.meta.replicas);
    const caughtUp = caughtUpReplicas(open, this.ctx.id, live, state.replica.buffer.lastId, (id, incarnation) => leader.matchIdOf(id, incarnationTag(incarnation)), state.rejoining);
    if (Object.keys(caughtUp).length === 0) return;
    const segment = { ...open, replicas: { ...open.replicas, ...caughtUp } };
    this.ctx.dir()
      .updateSegment(name, leader.epoch, segment)
      .then((ok) => ok && this.ctx.log.info({ log: name, replicas: Object.keys(caughtUp), epoch: leader.epoch }, 'restarted replica caught up: counts for the segment again'))
      .catch((err) => this.ctx.log.warn({ log: name, err: (err as Error).message }, 'could not record a rejoined replica'));
  }

  private assign(name: string, candidate: string, expectedEpoch: number): Promise<unknown> {
    if (candidate === this.ctx.id) return this.ctx.takeOver(name, expectedEpoch);
    return this.ctx.transport.command(this.ctx.dir().member(candidate)!.peerUrl, peerPaths.takeover(name), { expectedEpoch, from: this.ctx.id });
  }

  /** The logs not quiesced: a quiesced one has no leader to count and gets none assigned. */
  private placedLogs(): PlacedLog[] {
    const dir = this.ctx.dir();
    const logs: PlacedLog[] = [];
    for (const name of dir.awakeLogNames()) {
      const record = dir.log(name);
      if (record) logs.push(placed(record));
    }
    return logs;
  }

  /** A replica that is registered, not draining and not known dead: it goes on holding what it holds. */
  staysLive(id: string): boolean {
    const member = this.ctx.directory?.member(id);
    return member !== undefined && !member.draining && !this.ctx.failover.isDead(member);
  }

  /**
   * A member key outlives a killed process until its lease lapses: one known
   * dead is no candidate, nor is one draining for a controlled shutdown. Nor
   * is this replica for a log it gave up for lost quorum, until a peer reaches it again.
   */
  private view(): PlacementView {
    const dir = this.ctx.dir();
    return {
      mayLead: (id, log) => {
        return this.staysLive(id) && (id !== this.ctx.id || this.ctx.failover.mayLead(log));
      },
      incarnationOf: (id) => dir.incarnationOf(id),
    };
  }

  /**
   * Ready means "another replica may be stopped now": registered, not
   * draining, and counted by (or leading) the open segment of every log this
   * replica belongs to, so that no log needs this replica's memory to recover
   * while it catches up. A replica that just started is live but not ready
   * until every leader has caught it up and recorded its new incarnation.
   */
  readiness(): Readiness {
    const dir = this.ctx.directory;
    if (!dir || !dir.leaseUp || this.ctx.stopping || this.ctx.draining) {
      return { ready: false, catchingUp: 0, reason: this.ctx.draining || this.ctx.stopping ? 'stopping' : dir ? 'etcd lease down' : 'starting' };
    }
    let catchingUp = 0;
    // A quiesced log's last segment is sealed: it needs no replica's memory.
    for (const name of dir.awakeLogNames()) {
      const record = dir.log(name);
      if (!record?.meta.replicas.includes(this.ctx.id) || this.ctx.localLeader(name)) continue;
      const last = record.segments.at(-1);
      if (!last || last.lastId !== null) continue;
      if (last.replicas[this.ctx.id] !== dir.self.incarnation) catchingUp++;
    }
    return catchingUp === 0 ? { ready: true, catchingUp } : { ready: false, catchingUp, reason: `${catchingUp} logs do not count this replica yet (catching up)` };
  }
}

function placed(record: LogRecord): PlacedLog {
  return { name: record.meta.name, replicas: record.meta.replicas, epoch: record.epoch, leader: record.leader?.id, segments: record.segments, createdAtMs: Date.parse(record.meta.createdAt) };
}
