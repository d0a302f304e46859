/**
 * Owns the replica's contract with the HTTP layer: what the client and peer
 * APIs (src/http/) may ask of a replica, the request counters they keep and
 * the configuration values they read. The HTTP layer depends on these types
 * only, never on the Replica class, so it can be tested against a scripted
 * replica and the replica can change behind it.
 */
import type { MemberInfo, ReaderInfo, RetentionPolicy } from '../fencing/keys.js';
import type { AppendReply, AppendRequest } from '../quorum/messages.js';
import type { FenceAnswer } from '../quorum/recovery.js';
import type { AppendOf } from './appends.js';
import type { HeldIds } from '../peer/forwarded-appends.js';
import type { ReplicaConfig } from './config.js';
import type { ReaderStatus } from './retention.js';
import type { TailFormat, TailStream } from './tail-stream.js';
import type { AppendResult, LogStatus, ReadResult, Readiness, RecoveryReport, TimeSeek } from './types.js';

/** The counters the HTTP layer keeps about requests (ReplicaMetrics has them). */
export interface RequestMetrics {
  /** An append processed here, counted once where it was processed: outcome is `ok` or an error code. */
  appended(log: string, outcome: string, entries: number, bytes: number): void;
  /** Client-visible latency of an acknowledged append. */
  acknowledged(seconds: number): void;
  /** A forwarded append answered 200: `held` (committed here as it arrived) or at the leader's `commit`. */
  forwardedAnswered(answer: 'held' | 'commit'): void;
  /** A request refused before its handler: no or unknown token, or a token that does not allow it. */
  authRefused(code: 'UNAUTHENTICATED' | 'FORBIDDEN'): void;
  /** A request that etcd did not answer. */
  etcdFailed(operation: 'request'): void;
  /** The Prometheus exposition of every metric. */
  render(): Promise<{ contentType: string; body: string }>;
}

/** The limits and timeouts the listeners enforce, as configured. */
export type HttpLimits = Pick<
  ReplicaConfig,
  'maxRequestBytes' | 'maxEntryBytes' | 'maxRequestEntries' | 'maxBatchBytes' | 'maxBatchEntries' | 'maxReadEntries' | 'maxWaitMs' | 'ackTimeoutMs' | 'maxConnections' | 'requestTimeoutMs' | 'headersTimeoutMs' | 'keepAliveTimeoutMs'
>;

/** Where another replica listens: the leader a request is forwarded to. */
export type ReplicaAddress = Pick<MemberInfo, 'id' | 'clientUrl' | 'peerUrl'>;

/** A takeover command as a peer sends it: see control/follower.ts takeoverRefusal for who may. */
export interface PeerTakeover {
  expectedEpoch: number;
  unsafe: boolean;
  /** The exact leader key a handoff replaces. */
  replacing?: string | undefined;
}

export interface ReplicaApi {
  readonly id: string;
  /** Undefined until registered in etcd. */
  readonly incarnation: string | undefined;
  readonly isStopping: boolean;
  readonly metrics: RequestMetrics;

  // The client API.
  readiness(): Readiness;
  listLogs(): readonly string[];
  /** With `retention`: the new log's policy, or the existing log's new one ({} clears it). */
  createLog(name: string, retention?: RetentionPolicy): Promise<{ created: boolean; status: LogStatus }>;
  status(name: string): Promise<LogStatus>;
  /** The log's leader when it is another replica; undefined when this one leads. */
  leaderElsewhere(name: string): Promise<ReplicaAddress | undefined>;
  /**
   * With `producer`, an idempotent producer's append: a retry resolves with
   * the original ids and `duplicate`. With `timeMs`, the entries' own time
   * (TIME_BEHIND below the log's last). With `heldBy`, the follower that
   * forwarded it, which may be answered `held` (replica/appends.ts).
   */
  append(name: string, append: AppendOf, heldBy?: string): Promise<AppendResult>;
  /** Resolves once this replica holds a held answer's ids, which commits them; FENCED or ACK_TIMEOUT (outcome unknown) otherwise. */
  awaitHeld(name: string, held: HeldIds): Promise<void>;
  read(name: string, fromId: number, limit: number, waitMs: number): Promise<ReadResult>;
  /** The first retained, committed entry whose time is at least `timeMs` (or the next id to commit, timeMs null). */
  seekTime(name: string, timeMs: number): Promise<TimeSeek>;
  /** A streaming tail from `fromId`, checked (LOG_NOT_FOUND, TRUNCATED, TOO_MANY) before any byte is sent. */
  openTail(name: string, fromId: number, format: TailFormat): Promise<TailStream>;
  deleteLog(name: string): Promise<{ log: string; deleted: true }>;
  /** HELD_BY_READER when a reader holding retention is below `beforeId`. */
  truncate(name: string, beforeId: number): Promise<LogStatus>;
  /** Commits a named reader's position (nextId at most the next id to be committed). */
  commitReader(name: string, reader: string, nextId: number, holdsRetention: boolean): Promise<ReaderInfo>;
  reader(name: string, reader: string): Promise<ReaderStatus>;
  readers(name: string): Promise<ReaderStatus[]>;
  deleteReader(name: string, reader: string): Promise<{ log: string; reader: string; deleted: true }>;
  handoff(name: string, to: string): Promise<LogStatus>;
  forceRecovery(name: string): Promise<RecoveryReport>;

  // The peer API. `peer` is the sender's replica id: named in the request until mutual TLS, then taken from its certificate.
  /** A replication message; answered at once unless its claim of leadership must first be read from etcd. */
  handlePeerAppend(req: AppendRequest): AppendReply | Promise<AppendReply>;
  /** A connection to the peer listener closed: its replica may be dead (failure detection). */
  peerConnectionClosed(): void;
  fence(name: string, epoch: number, peer: string | undefined): Promise<FenceAnswer>;
  /** Entry runs (src/peer/wire.ts) of ids fromId..toId, for a recovering leader. */
  fetchRuns(name: string, fromId: number, toId: number): Promise<Buffer>;
  peerTakeOver(name: string, request: PeerTakeover, peer: string | undefined): Promise<RecoveryReport>;
}
