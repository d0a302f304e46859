/**
 * Who leads which log: the coordinator's passes (every log without a leader
 * key goes to a live replica of it, fewest leaderships first), the first
 * leader of a new log, the candidates a handoff or failover may pick, and the
 * leader's recording of a restarted follower that has caught up (so the open
 * segment counts it again), and this replica's readiness: counted everywhere.
 */
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
  async assignLeaderless(): Promise<void> {
    const dir = this.ctx.dir();
    for (const name of dir.logNames()) {
      const record = dir.log(name);
      if (!record || record.leader || this.assigning.has(name)) continue;
      // A log being created gets its first leader from the replica creating it.
      if (record.segments.length === 0 && Date.now() - Date.parse(record.meta.createdAt) < CREATION_GRACE_MS) continue;
      const candidate = this.pickLeader(record);
      if (!candidate) continue;
      this.assigning.add(name);
      const assigned = candidate === this.ctx.id ? this.ctx.takeOver(name, record.epoch) : this.ctx.transport.command(dir.member(candidate)!.peerUrl, peerPaths.takeover(name), { expectedEpoch: record.epoch });
      assigned
        .catch((err) => this.ctx.log.warn({ log: name, candidate, err: (err as Error).message }, 'leader assignment failed; will retry'))
        .finally(() => this.assigning.delete(name));
    }
  }

  /** Spreads first leaderships: the live replicas of the log, fewest leaderships first (ties by id). */
  async assignFirstLeader(name: string, record: LogRecord): Promise<void> {
    for (const id of this.leaderCandidates(record)) {
      try {
        if (id === this.ctx.id) await this.ctx.takeOver(name, record.epoch);
        else await this.ctx.transport.command(this.ctx.dir().member(id)!.peerUrl, peerPaths.takeover(name), { expectedEpoch: record.epoch });
        return;
      } catch (err) {
        this.ctx.log.warn({ log: name, candidate: id, err: (err as Error).message }, 'candidate could not take the first leadership; trying the next');
      }
    }
    throw new TernError('NOT_READY', `no replica of log ${name} could take its leadership`);
  }

  private pickLeader(record: LogRecord): string | undefined {
    return this.leaderCandidates(record)[0];
  }

  leaderCandidates(record: LogRecord): string[] {
    const dir = this.ctx.dir();
    const led = new Map<string, number>();
    for (const log of dir.logNames()) {
      const id = dir.log(log)?.leader?.id;
      if (id) led.set(id, (led.get(id) ?? 0) + 1);
    }
    // A member key outlives a killed process until its lease lapses: one known dead is no candidate, nor
    // is one draining for a controlled shutdown. Nor is this replica for a log it gave up for lost quorum,
    // until a peer reaches it again.
    const live = (id: string) => {
      const member = dir.member(id);
      return member !== undefined && !member.draining && !this.ctx.failover.isDead(member) && (id !== this.ctx.id || this.ctx.failover.mayLead(record.meta.name));
    };
    return record.meta.replicas.filter(live).sort((a, b) => (led.get(a) ?? 0) - (led.get(b) ?? 0) || a.localeCompare(b));
  }

  /**
   * A replica that restarted lost what it held, so the open segment stops
   * counting it; once the leader has caught it up past everything it could
   * have acknowledged before (the leader's last id when it came back), its new
   * incarnation is recorded and it counts again. Without this, two restarts
   * over a log's life would make it unrecoverable.
   */
  recordRejoinedReplicas(name: string, state: LogState): void {
    const leader = this.ctx.localLeader(name);
    const open = this.ctx.directory?.log(name)?.segments.at(-1);
    if (!leader || state.takeover || !open || open.epoch !== leader.epoch) return;
    for (const id of Object.keys(this.ctx.incarnationsOf(this.ctx.directory!.log(name)!.meta.replicas))) {
      const member = this.ctx.directory!.member(id)!;
      if (id === this.ctx.id || open.replicas[id] === member.incarnation) continue;
      const pending = state.rejoining.get(id);
      if (!pending || pending.incarnation !== member.incarnation) {
        state.rejoining.set(id, { incarnation: member.incarnation, throughId: state.replica.buffer.lastId });
      } else if (leader.matchIdOf(id, incarnationTag(member.incarnation)) >= pending.throughId) {
        state.rejoining.delete(id);
        const segment = { ...open, replicas: { ...open.replicas, [id]: member.incarnation } };
        this.ctx.dir()
          .updateSegment(name, leader.epoch, segment)
          .then((ok) => ok && this.ctx.log.info({ log: name, replica: id, epoch: leader.epoch }, 'restarted replica caught up: counts for the segment again'))
          .catch((err) => this.ctx.log.warn({ log: name, err: (err as Error).message }, 'could not record a rejoined replica'));
      }
    }
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
    for (const name of dir.logNames()) {
      const record = dir.log(name);
      if (!record?.meta.replicas.includes(this.ctx.id) || this.ctx.localLeader(name)) continue;
      const last = record.segments.at(-1);
      if (!last || last.lastId !== null) continue;
      if (last.replicas[this.ctx.id] !== dir.self.incarnation) catchingUp++;
    }
    return catchingUp === 0 ? { ready: true, catchingUp } : { ready: false, catchingUp, reason: `${catchingUp} logs do not count this replica yet (catching up)` };
  }}
