/**
 * What the replica keeps per log beside the pure protocol's state, and the
 * shared view its parts (leader driver, takeover, handoff, placement,
 * storage) act on: the context is implemented by the Replica facade, so
 * each part sees only what it needs and none holds another's state.
 */
import type { ClusterDirectory } from '../fencing/directory.js';
import type { LogRecord } from '../fencing/keys.js';
import type { TernError } from '../errors.js';
import type { MemoryAccount } from '../quorum/entry-buffer.js';
import type { LeaderConfig, LeaderLog } from '../quorum/leader.js';
import { LogReplica } from '../quorum/log-replica.js';
import type { ProducerTable } from '../quorum/producers.js';
import type { ObjectStore } from '../flusher/object-store.js';
import type { PeerTransport } from '../peer/transport.js';
import type { ReplicaConfig } from './config.js';
import type { Failover } from './failover.js';
import type { ReplicaMetrics } from './metrics.js';
import type { Storage } from './storage.js';
import type { Producers } from './producers.js';
import type { Retention } from './retention.js';
import type { TakeoverRun } from './takeover.js';
import type { AppendResult, LogStatus, Logger, RecoveryReport } from './types.js';

/** An append waiting for its quorum: how to answer its client. */
export interface Waiting {
  resolve(result: AppendResult): void;
  reject(err: TernError): void;
  /** performance.now() when the leader took the append (quorum round latency). */
  takenAt: number;
}

export interface LogState {
  replica: LogReplica;
  leader: LeaderLog<Waiting> | undefined;
  /** While set, this replica is taking the log over: appends wait outside (503 NOT_READY). */
  takeover: TakeoverRun | undefined;
  /** Set during a handoff or a controlled shutdown: the leader drains and takes no new appends. */
  handingOff: boolean;
  /** Called after the leader's every Ready (a takeover or a drain waiting on its progress). */
  leaderWatchers: Set<() => void>;
  /** Commit point tail readers were last woken for. */
  wokenCommitId: number;
  /**
   * Replicas whose incarnation differs from the one the open segment records
   * (they restarted, or were down when it opened), with the id they must hold
   * before the segment may count them again.
   */
  rejoining: Map<string, { incarnation: string; throughId: number }>;
  /**
   * The leader's idempotent producers (quorum/producers.ts): undefined until
   * loaded after a takeover (producer appends get NOT_READY until then) and
   * on followers.
   */
  producers: ProducerTable | undefined;
  /** The same table as it stands at the flusher's point (what the next object's snapshot is made from). */
  flushedProducers: ProducerTable | undefined;
  /** performance.now() of the last append the leader took, or of the start of its leadership (quiescence waits from there). */
  lastAppendAt: number;
  /** Set while the leader seals the log for quiescence: appends wait for the outcome (a seal must not cut one). */
  quiescing: Promise<void> | undefined;
}

/**
 * A log this replica has just heard of (or heard of again after it
 * quiesced): it starts right after what object storage already holds, fenced
 * at the epoch etcd shows, so a leader deposed before this replica dropped
 * its state of the log is refused as before.
 */
export function newLogState(name: string, memory: MemoryAccount, at: { flushedId: number; epoch: number; replicas: number | undefined }): LogState {
  const { flushedId, epoch, replicas } = at;
  const state: LogState = {
    replica: new LogReplica(name, memory, replicas === undefined ? { epoch } : { epoch, replicas }),
    leader: undefined,
    takeover: undefined,
    handingOff: false,
    leaderWatchers: new Set(),
    wokenCommitId: -1,
    rejoining: new Map(),
    producers: undefined,
    flushedProducers: undefined,
    lastAppendAt: 0,
    quiescing: undefined,
  };
  state.replica.releaseThrough(flushedId);
  return state;
}

/** The leader settings every log this replica leads shares (ticks derived from the configuration). */
export type LeaderTicks = Omit<LeaderConfig, 'self' | 'peers' | 'epoch'>;

/** A duration of the configuration in protocol ticks (at least one). */
export function ticksOf(config: Pick<ReplicaConfig, 'tickMs'>, ms: number): number {
  return Math.max(1, Math.ceil(ms / config.tickMs));
}

export function leaderTicksOf(config: ReplicaConfig): LeaderTicks {
  return {
    maxInflight: config.maxInflight,
    maxBatchEntries: config.maxBatchEntries,
    maxBatchBytes: config.maxBatchBytes,
    pipelineMinBytes: config.pipelineMinBytes,
    ackTimeoutTicks: ticksOf(config, config.ackTimeoutMs),
    retransmitTicks: ticksOf(config, config.retransmitMs),
    heartbeatTicks: ticksOf(config, config.heartbeatMs),
    backoffTicks: ticksOf(config, config.backoffMs),
    checkQuorum: true,
  };
}

export interface ReplicaContext {
  readonly id: string;
  readonly config: ReplicaConfig;
  readonly log: Logger;
  readonly transport: PeerTransport;
  readonly store: ObjectStore | undefined;
  readonly metrics: ReplicaMetrics;
  readonly logs: Map<string, LogState>;
  readonly leaderTicks: LeaderTicks;
  readonly failover: Failover;
  readonly storage: Storage;
  readonly producers: Producers;
  readonly retention: Retention;
  /** Undefined before start. */
  readonly directory: ClusterDirectory | undefined;
  /** True from the start of a controlled shutdown: no new leadership. */
  readonly draining: boolean;
  /** True once stopped: flushers end. */
  readonly stopping: boolean;
  beginDraining(): void;
  /** The directory, or NOT_READY while starting or stopping. */
  dir(): ClusterDirectory;
  /** The log's record, or LOG_NOT_FOUND. */
  requireLog(name: string): Promise<LogRecord>;
  /** This replica's leader of `name`, unless deposed. */
  localLeader(name: string): LeaderLog<Waiting> | undefined;
  /** Highest committed id this replica knows: in its memory, or durable in object storage. */
  committedId(name: string): number;
  /** The log's state, created on first use. */
  logState(name: string): LogState;
  status(name: string): Promise<LogStatus>;
  takeOver(name: string, expectedEpoch: number, unsafe?: boolean, replacing?: string): Promise<RecoveryReport>;
  /** The incarnation of each live replica of a log: who a new segment is written to. */
  incarnationsOf(replicas: readonly string[]): Record<string, string>;
}
