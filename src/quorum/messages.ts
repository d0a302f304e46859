/**
 * Replica-to-replica messages of the replication protocol. They are plain
 * data: `src/peer/wire.ts` turns them into bytes, the peer transport carries them.
 */
import type { TimeRun } from './entry-buffer.js';
import type { ProducerMark } from './producers.js';

/**
 * The range of the protocol's numbers, fixed by the formats that carry them:
 * epochs are u32 (wire.ts, object-format.ts), ids i48 (both too, and exact in
 * a JS number). A value past them cannot be encoded back, so every decoder of
 * peer input refuses it rather than letting it in.
 */
export const MAX_EPOCH = 2 ** 32 - 1;
export const MAX_ID = 2 ** 47 - 1;

/** Leader -> follower: "hold these entries, which follow id firstId - 1 of epoch prevEpoch". */
export interface AppendRequest {
  log: string;
  /** Epoch of the sending leader; a follower that has seen a higher one refuses. */
  epoch: number;
  /** Replica id of the sending leader. */
  leader: string;
  /** Per-follower sequence number, echoed in the reply so the leader can match it to what it sent. */
  seq: number;
  /** Id of entries[0]; for an empty message (heartbeat), the next id the leader would send. */
  firstId: number;
  /**
   * Epoch of entry firstId - 1 at the leader, so the follower only extends a
   * prefix it shares with the leader (raft's log matching); -1 when firstId - 1
   * is below what the leader holds in memory and needs no check.
   */
  prevEpoch: number;
  /**
   * Epoch that wrote the entries: they keep it when a later leader re-replicates
   * them after recovery (as raft entries keep their term). A message never mixes
   * epochs; for new entries it equals `epoch`.
   */
  entryEpoch: number;
  /** Leader's commit point: every id up to it is held by a quorum. */
  commitId: number;
  entries: Buffer[];
  /** The producer marks (producers.ts) of batches whose first entry is in `entries`, ascending: the dedup table travels with its entries. */
  marks?: ProducerMark[];
  /** The timestamps of `entries` as runs (entry-buffer.ts), the first at firstId; absent from replicas that predate them. */
  times?: TimeRun[];
}

export const ReplyStatus = {
  /** Entries held; matchId is the last id of this message (or firstId - 1 when it was empty). */
  Ok: 0,
  /** The follower has seen a higher epoch (in `epoch`) and refuses this leader. */
  Fenced: 1,
  /** The follower cannot extend its log at firstId; lastId hints where to resend from. */
  Gap: 2,
  /**
   * The follower holds its memory bound and took none of the new entries;
   * lastId is the highest id the message proved to match. The leader resends
   * them after a backoff, by when flushes may have made room; the follower
   * answered, so it counts as alive, but it holds nothing more.
   */
  Full: 3,
} as const;
export type ReplyStatus = (typeof ReplyStatus)[keyof typeof ReplyStatus];

/** Follower -> leader answer to an AppendRequest. */
export interface AppendReply {
  status: ReplyStatus;
  /** The follower's highest known epoch for the log. */
  epoch: number;
  seq: number;
  /** Ok: highest id now known to match the leader. Gap: the follower's last id. */
  lastId: number;
  /**
   * Tag of the answering process's incarnation (incarnationTag), absent from
   * replicas that predate it. A new tag means the follower restarted and
   * forgot what it held: the leader's progress for it starts over.
   */
  incarnation?: number;
  /**
   * The follower has readers waiting on the log's commit point (streaming
   * tails, held tail reads): the leader tells it each new commit point at once
   * instead of at its next tick. Absent from replicas that predate it.
   */
  following?: boolean;
}

/** A run of consecutive entries written in one epoch (what a recovering leader fetches). */
export interface EntryRun {
  firstId: number;
  epoch: number;
  entries: Buffer[];
  /** The producer marks of batches whose first entry is in `entries`. */
  marks?: ProducerMark[];
  /** The timestamps of `entries` as runs, the first at firstId. */
  times?: TimeRun[];
}

/** A replica incarnation (a UUID) as the u32 that replies carry: its first 32 bits. */
export function incarnationTag(incarnation: string): number {
  return Number.parseInt(incarnation.replaceAll('-', '').slice(0, 8), 16) >>> 0;
}
