/**
 * Failure detection for the logs this replica follows, as a pure state
 * machine: inputs are `observe` (the log's leader key as etcd has it),
 * `heard` (a replication message from that leader), `probed` (the answer of
 * a probe of a replica's peer port) and `tick`; `ready()` says which replicas
 * to probe and which logs to claim. No I/O, no clocks: time is ticks.
 *
 * A leader's etcd lease outlives its process by up to the lease TTL, so
 * waiting for the key to lapse makes every crash cost seconds. A killed
 * process closes its sockets instead, which its peers can see at once:
 *
 *   silent    no message from the log's leader for `suspectTicks`, or a
 *             connection to this replica's peer listener closed: probe it
 *   dead      the probe was refused (nothing listens on its peer port), or
 *             the port answers with another replica or another incarnation
 *             (it restarted and forgot everything): claim the log, replacing
 *             exactly that leader's key
 *   orphaned  the log has had no leader key for `orphanTicks` (the
 *             coordinator normally assigns one well before): claim it
 *
 * A probe that times out or fails otherwise proves nothing (a cut-off or
 * paused leader): the lease, or the leader's own check-quorum, decides then.
 *
 * Which replica claims: the first of the log's candidates (the caller's
 * order, which every replica computes alike) that is not known dead or
 * unresponsive claims at once; any other candidate claims `fallbackTicks`
 * later, should the first one not manage. Claims are compare-and-swaps in
 * etcd, so at most one wins, and fencing keeps a wrong guess safe: it costs
 * one recovery, never an acknowledged entry.
 */
/** What a probe of a replica's peer port found. */
export type ProbeOutcome =
  /** Nothing listens on the replica's peer port: its process is gone. */
  | { kind: 'refused' }
  /** The peer port answered as replica `id`, incarnation `incarnation` (null: still starting). */
  | { kind: 'answered'; id: string; incarnation: string | null }
  /** A timeout, a reset, an error status: proves nothing. */
  | { kind: 'failed' };

/** A log's leader as its etcd key names it. */
export interface LeaderSeen {
  id: string;
  epoch: number;
  incarnation: string;
}

export interface DetectorConfig {
  /** This replica's id. */
  self: string;
  /** A leader unheard this long is probed. */
  suspectTicks: number;
  /** A replica is probed at most this often. */
  probeIntervalTicks: number;
  /** A log without a leader key this long is claimed by its followers. */
  orphanTicks: number;
  /** A candidate that is not the first choice claims this long after the first choice could have; claims are repeated this often. */
  fallbackTicks: number;
}

export interface Probe {
  replica: string;
  /** The incarnation that must answer for the replica to count as alive. */
  incarnation: string;
}

export interface Claim {
  log: string;
  /** The log's epoch the claim raises by one. */
  expectedEpoch: number;
  /** The dead leader whose key the claim replaces; undefined when the log has no leader key. */
  replacing: LeaderSeen | undefined;
  /** The candidate that claims first; another one claims only once it had time to. */
  firstChoice: string | undefined;
}

/** What the caller must do: probe these replicas' peer ports (one probe each at a time), then claim these logs. */
export interface DetectorReady {
  probes: Probe[];
  claims: Claim[];
}

interface Watched {
  leader: LeaderSeen | undefined;
  epoch: number;
  /** Tick this leader (or the absence of one) was first observed. */
  sinceTick: number;
  /** Tick of the last message from the leader (or sinceTick). */
  heardTick: number;
  /** Tick the leader was first known dead. */
  deadTick: number | undefined;
  lastClaimTick: number;
}

interface ProbeState {
  incarnation: string;
  sentTick: number;
  outstanding: boolean;
  /** The last probe of this incarnation failed and nothing was heard from it since. */
  unresponsive: boolean;
}

/**
 * Which logs a replica watches the leader of: those it is a replica of and
 * neither leads nor is taking over; a log being created gets its first
 * leader from its creator, so it is not watched until it has one.
 */
export function watchedLeader(
  self: string,
  record: { meta: { replicas: readonly string[] }; epoch: number; leader: LeaderSeen | undefined; segments: readonly unknown[] },
  leadsOrTakingOver: boolean,
): { leader: LeaderSeen | undefined; epoch: number } | undefined {
  const follows = record.meta.replicas.includes(self) && !leadsOrTakingOver && record.leader?.id !== self;
  return follows && (record.leader || record.segments.length > 0) ? { leader: record.leader, epoch: record.epoch } : undefined;
}

export class FailureDetector {
  private now = 0;
  private readonly watched = new Map<string, Watched>();
  private readonly probes = new Map<string, ProbeState>();
  /** Incarnations proven dead, by replica id (a restarted replica has a new incarnation). */
  private readonly dead = new Map<string, string>();

  constructor(private readonly config: DetectorConfig) {}

  /** The log's leader key (undefined: none) and epoch, as etcd has them; a log this replica follows. */
  observe(log: string, leader: LeaderSeen | undefined, epoch: number): void {
    const w = this.watched.get(log);
    if (w && sameLeader(w.leader, leader) && w.epoch === epoch) return;
    if (w && sameLeader(w.leader, leader)) {
      w.epoch = epoch;
      return;
    }
    this.watched.set(log, { leader, epoch, sinceTick: this.now, heardTick: this.now, deadTick: undefined, lastClaimTick: -Infinity });
  }

  /** Watches `log` as watchedLeader says: observes its leader, or forgets it. */
  follow(log: string, watched: { leader: LeaderSeen | undefined; epoch: number } | undefined): void {
    if (watched) this.observe(log, watched.leader, watched.epoch);
    else this.forget(log);
  }

  /** This replica leads the log, is taking it over, or no longer holds it. */
  forget(log: string): void {
    this.watched.delete(log);
  }

  /** The logs watched now. */
  watchedLogs(): IterableIterator<string> {
    return this.watched.keys();
  }

  /** The detector's clock, in ticks. */
  get nowTick(): number {
    return this.now;
  }

  /** True when `log`'s leader was heard from (a replication message) after tick `since`. */
  heardSince(log: string, since: number): boolean {
    const w = this.watched.get(log);
    return w !== undefined && w.heardTick > since;
  }

  /** A replication message for `log` arrived from `leader` at `epoch`. */
  heard(log: string, leader: string, epoch: number): void {
    const w = this.watched.get(log);
    if (w?.leader && w.leader.id === leader && epoch >= w.leader.epoch) w.heardTick = this.now;
    const p = this.probes.get(leader);
    if (p) p.unresponsive = false;
  }

  /**
   * A connection to this replica's peer listener closed: a leader's process
   * may have died a moment ago (a killed process's sockets close at once).
   * Every followed leader counts as silent, so the next `ready()` probes them.
   */
  connectionClosed(): void {
    for (const w of this.watched.values()) w.heardTick = Math.min(w.heardTick, this.now - this.config.suspectTicks);
  }

  /** The probe of `replica` expecting `incarnation` came back. */
  probed(replica: string, incarnation: string, outcome: ProbeOutcome): void {
    const p = this.probes.get(replica);
    if (!p || p.incarnation !== incarnation) return;
    p.outstanding = false;
    if (outcome.kind === 'refused' || (outcome.kind === 'answered' && (outcome.id !== replica || outcome.incarnation !== incarnation))) {
      this.dead.set(replica, incarnation);
      p.unresponsive = false;
    } else {
      p.unresponsive = outcome.kind === 'failed';
    }
  }

  /** True when this incarnation of `replica` is proven dead. */
  isDead(replica: string, incarnation: string): boolean {
    return this.dead.get(replica) === incarnation;
  }

  tick(): void {
    this.now++;
  }

  /** `candidatesOf(log)`: the replicas that may lead the log, in order of preference; asked only for a log to claim. */
  ready(candidatesOf: (log: string) => readonly string[]): DetectorReady {
    const out: DetectorReady = { probes: [], claims: [] };
    for (const [log, w] of this.watched) {
      const leader = w.leader;
      let waitedFrom: number;
      if (leader) {
        if (leader.id === this.config.self) continue;
        if (!this.isDead(leader.id, leader.incarnation)) {
          if (this.now - w.heardTick >= this.config.suspectTicks) this.probe(leader, out);
          continue;
        }
        waitedFrom = w.deadTick ??= this.now;
      } else {
        if (this.now - w.sinceTick < this.config.orphanTicks) continue;
        waitedFrom = w.sinceTick + this.config.orphanTicks;
      }
      if (this.now - w.lastClaimTick < this.config.fallbackTicks) continue;
      const candidates = candidatesOf(log).filter((id) => id !== leader?.id);
      if (!candidates.includes(this.config.self)) continue;
      const first = candidates.find((id) => !this.probes.get(id)?.unresponsive);
      if (first !== this.config.self && this.now - waitedFrom < this.config.fallbackTicks) continue;
      w.lastClaimTick = this.now;
      out.claims.push({ log, expectedEpoch: w.epoch, replacing: leader, firstChoice: first });
    }
    return out;
  }

  private probe(leader: LeaderSeen, out: DetectorReady): void {
    let p = this.probes.get(leader.id);
    if (p && p.incarnation === leader.incarnation && (p.outstanding || this.now - p.sentTick < this.config.probeIntervalTicks)) return;
    if (!p || p.incarnation !== leader.incarnation) this.probes.set(leader.id, (p = { incarnation: leader.incarnation, sentTick: this.now, outstanding: true, unresponsive: false }));
    p.sentTick = this.now;
    p.outstanding = true;
    out.probes.push({ replica: leader.id, incarnation: leader.incarnation });
  }
}

function sameLeader(a: LeaderSeen | undefined, b: LeaderSeen | undefined): boolean {
  return a === b || (a !== undefined && b !== undefined && a.id === b.id && a.epoch === b.epoch && a.incarnation === b.incarnation);
}
