/**
 * The replica's side of fast failover: feeds the failure detector
 * (failure-detector.ts) with the logs this replica follows, probes the
 * replicas it suspects and claims the logs whose leader is shown dead,
 * without waiting for the dead leader's etcd lease to lapse. Also remembers
 * the logs this replica gave up for lost quorum (check-quorum), so that it
 * does not take them straight back while it still reaches no peer.
 */
import { leaderKeyValue, type LogRecord, type MemberInfo } from '../fencing/keys.js';
import type { ClusterDirectory } from '../fencing/directory.js';
import type { ProbeOutcome } from '../peer/probe.js';
import type { ReplicaConfig } from './config.js';
import { FailureDetector, watchedLeader, type DetectorConfig } from '../control/failure-detector.js';
import { ticksOf } from './log-state.js';

/** A leader unheard for this many heartbeats is probed. */
const SUSPECT_AFTER_HEARTBEATS = 2;
/** The logs are looked over this many times per heartbeat. */
const PASSES_PER_HEARTBEAT = 4;
/** A second-choice claimer waits this many heartbeats for the first choice. */
const FALLBACK_HEARTBEATS = 2;
/** A log without a leader key this long is claimed by its followers: about three coordinator passes (300 ms each). */
const ORPHAN_AFTER_MS = 1000;

export interface FailoverHost {
  readonly id: string;
  /** Undefined until registered, and from the start of a shutdown. */
  directory(): ClusterDirectory | undefined;
  /** True while this replica leads `log` or is taking it over. */
  leadsOrTakingOver(log: string): boolean;
  /** The live replicas that may lead the log, in order of preference. */
  leaderCandidates(record: LogRecord): string[];
  /** Takeover and recovery, as the coordinator would start it. */
  takeOver(log: string, expectedEpoch: number, replacing?: string): Promise<unknown>;
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
}

/** The failure detector's timing, from the configuration. */
export function detectorConfigOf(config: ReplicaConfig): DetectorConfig {
  return {
    self: config.id,
    suspectTicks: ticksOf(config, SUSPECT_AFTER_HEARTBEATS * config.heartbeatMs),
    probeIntervalTicks: ticksOf(config, config.heartbeatMs),
    orphanTicks: ticksOf(config, ORPHAN_AFTER_MS),
    fallbackTicks: ticksOf(config, FALLBACK_HEARTBEATS * config.heartbeatMs),
  };
}

/** Ticks between two passes over the followed logs. */
export function passTicksOf(config: ReplicaConfig): number {
  return ticksOf(config, config.heartbeatMs / PASSES_PER_HEARTBEAT);
}

export type PeerProbe = (peerUrl: string, timeoutMs: number) => Promise<ProbeOutcome>;

export class Failover {
  private readonly detector: FailureDetector;
  private ticks = 0;
  private readonly passTicks: number;
  private readonly probeTimeoutMs: number;
  /** Messages heard from other leaders so far: a clock of contact with the peers. */
  private contacts = 0;
  /** Logs given up for lost quorum, with `contacts` at that moment. */
  private readonly quorumLost = new Map<string, number>();

  constructor(
    private readonly host: FailoverHost,
    config: ReplicaConfig,
    private readonly probe: PeerProbe,
  ) {
    this.detector = new FailureDetector(detectorConfigOf(config));
    this.passTicks = passTicksOf(config);
    this.probeTimeoutMs = config.retransmitMs;
  }

  /** A replication message for `log` arrived from its leader. */
  heard(log: string, leader: string, epoch: number): void {
    this.contacts++;
    this.detector.heard(log, leader, epoch);
  }

  /** A connection to the peer listener closed: probe the followed leaders now (a cheap check, whatever closed it). */
  connectionClosed(): void {
    this.detector.connectionClosed();
    this.pass();
  }

  /** This replica stepped down from `log` because no quorum answered it. */
  gaveUpForLostQuorum(log: string): void {
    this.quorumLost.set(log, this.contacts);
  }

  /** Now, in failure detection's ticks: a mark for heardSince. */
  get clock(): number {
    return this.detector.nowTick;
  }

  /** True when a replication message of `log` arrived from its leader after tick `since` (a `clock` reading). */
  heardSince(log: string, since: number): boolean {
    return this.detector.heardSince(log, since);
  }

  /** False while this replica gave `log` up for lost quorum and no other leader has reached it since. */
  mayLead(log: string): boolean {
    const at = this.quorumLost.get(log);
    if (at === undefined) return true;
    if (this.contacts > at) this.quorumLost.delete(log);
    return this.contacts > at;
  }

  /** True when this member's process is known dead (its member key may live on until its lease lapses). */
  isDead(member: MemberInfo): boolean {
    return this.detector.isDead(member.id, member.incarnation);
  }

  tick(): void {
    this.detector.tick();
    if (++this.ticks % this.passTicks === 0) this.pass();
  }

  /** Looks the followed logs over: probes what is silent, claims what lost its leader. */
  private pass(): void {
    const dir = this.host.directory();
    if (!dir) return;
    // A quiesced log has no leader to watch, and none must be claimed: it waits for an append.
    for (const name of this.detector.watchedLogs()) if (dir.isQuiesced(name) || !dir.log(name)) this.detector.forget(name);
    for (const name of dir.awakeLogNames()) {
      const record = dir.log(name);
      this.detector.follow(name, record && watchedLeader(this.host.id, record, this.host.leadsOrTakingOver(name)));
    }
    const ready = this.detector.ready((name) => {
      const record = dir.log(name);
      return record ? this.host.leaderCandidates(record) : [];
    });
    for (const p of ready.probes) {
      const member = dir.member(p.replica);
      // Gone from etcd: its lease lapsed, and the leader key with it; the coordinator takes over from here.
      if (!member) continue;
      this.probe(member.peerUrl, this.probeTimeoutMs).then(
        (outcome) => {
          this.detector.probed(p.replica, p.incarnation, outcome);
          if (!this.detector.isDead(p.replica, p.incarnation)) return;
          this.host.log.warn({ replica: p.replica, incarnation: p.incarnation, probe: outcome }, 'replica is dead: taking over the logs it led');
          this.pass(); // claim now rather than at the next pass
        },
        () => this.detector.probed(p.replica, p.incarnation, { kind: 'failed' }),
      );
    }
    for (const c of ready.claims) {
      const replacing = c.replacing && leaderKeyValue(c.replacing);
      this.host.log.info({ log: c.log, epoch: c.expectedEpoch, replacing: c.replacing?.id ?? null, firstChoice: c.firstChoice ?? null }, c.replacing ? 'leader is dead: claiming the log' : 'log has no leader: claiming it');
      this.host.takeOver(c.log, c.expectedEpoch, replacing).catch((err) => this.host.log.warn({ log: c.log, err: (err as Error).message }, 'claim after a leader failure failed'));
    }
  }
}
