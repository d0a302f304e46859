/**
 * The replica's public results and reports: what its operations answer
 * (appends, reads, status, readiness, recovery, a controlled shutdown), as
 * the HTTP layer and the process's lifecycle see them.
 */
import type { RetentionStatus } from './retention.js';

export interface Logger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface AppendResult {
  firstId: number;
  lastId: number;
  epoch: number;
  /** The entries' timestamp (ms since the Unix epoch); absent on a duplicate whose entries this replica no longer holds in memory. */
  timeMs?: number;
  /** Set when an idempotent producer's retry was answered with the ids of the batch it repeats. */
  duplicate?: true;
  /**
   * Set when the ids were given but not yet committed: the append was
   * forwarded by a follower that keeps up, which commits them itself as they
   * reach it (Replica.append's `heldBy`, LogReplica's pair rule).
   */
  held?: true;
}

export interface ReadResult {
  entries: Buffer[];
  /** The time of each entry (ms since the Unix epoch; 0 for entries written before entries had times). */
  times: number[];
  fromId: number;
  nextId: number;
  committedId: number;
}

/** Where a seek by time lands: the first entry at or after the time, or (timeMs null) the next id to commit when there is none yet. */
export interface TimeSeek {
  id: number;
  timeMs: number | null;
}

export interface LogStatus extends RetentionStatus {
  log: string;
  leader: string | null;
  /** Idle and sealed in etcd (README, Quiescence): no leader until the next append reopens it. */
  quiesced: boolean;
  epoch: number;
  committedId: number;
  flushedId: number;
  firstId: number;
  /** `replicas`: the incarnation of each replica the segment counts for recovery (a restarted one counts again once caught up). */
  segments: { epoch: number; firstId: number; lastId: number | null; sealed: boolean; closedClean: boolean; quiesced: boolean; replicas: Record<string, string> }[];
  /** Committed entries and bytes not yet in object storage (bytes as this replica holds them). */
  flushLag: { entries: number; bytes: number };
}

/** Whether this replica may be stopped now without making a log unrecoverable (`/readyz`). */
export interface Readiness {
  ready: boolean;
  /** Logs of this replica whose open segment does not count it yet (it restarted and is catching up). */
  catchingUp: number;
  reason?: string;
}

/** What a controlled shutdown did with each log this replica led. */
export interface DrainReport {
  handedOff: string[];
  closedClean: string[];
  /** Logs whose leadership moved away on its own while draining (another leader fenced this one). */
  lost: string[];
  /** Logs the drain could not finish (no object store, store or etcd down): they recover as after a crash. */
  unfinished: { log: string; reason: string }[];
}

export interface RecoveryReport {
  log: string;
  epoch: number;
  /** Last id kept from the previous segments. */
  recoveredId: number;
  /** Set when recovery ran without a counted quorum: what may have been lost. */
  warning?: string;
}

/** How often the coordinator looks for logs without a leader. */
