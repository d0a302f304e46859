/**
 * The rules a replica applies to one log as a follower, pure: a replication
 * message or a fence of a newer epoch deposes a local leader of an older one;
 * a fence of an older epoch is refused; a leader whose key in etcd is gone or
 * names another epoch no longer leads; a replica that does not lead releases
 * what object storage holds. The process (replica/follower.ts) and the
 * simulator apply the same functions.
 */
import type { LogReplica } from '../quorum/log-replica.js';
import type { AppendReply, AppendRequest } from '../quorum/messages.js';

/** The local leader of the log, if any, as these rules see it. */
export interface LocalLeader {
  epoch: number;
  isDeposed: boolean;
}

/** The follower's answer to a replication message, and whether a local leader of an older epoch must step down first. */
export function receiveAppend(replica: LogReplica, leader: LocalLeader | undefined, req: AppendRequest, incarnationTag: number | undefined): { reply: AppendReply; stepDown: boolean } {
  const stepDown = supersedes(leader, req.epoch);
  const reply = replica.handleAppend(req);
  if (incarnationTag !== undefined) reply.incarnation = incarnationTag;
  return { reply, stepDown };
}

export type FenceOutcome =
  /** The fence is of an older epoch than this replica has seen: refused. */
  | { refusedAt: number }
  /** Fenced: `raised` when the epoch is new here; `stepDown` when a local leader of an older epoch must go. */
  | { refusedAt?: undefined; raised: boolean; stepDown: boolean };

/** Raises the fence of the log to `epoch` for `leader` (recovery's question), unless it is older. */
export function receiveFence(replica: LogReplica, local: LocalLeader | undefined, epoch: number, leader: string): FenceOutcome {
  if (epoch < replica.epoch) return { refusedAt: replica.epoch };
  const outcome = { raised: epoch > replica.epoch, stepDown: supersedes(local, epoch) };
  replica.observeEpoch(epoch, leader);
  return outcome;
}

/** The leader key is leased: if it is gone or names another epoch, the local leader of `epoch` no longer leads. */
export function leadershipLost(record: { epoch: number; leader: { epoch: number } | undefined } | undefined, epoch: number): boolean {
  return !record || record.epoch > epoch || !record.leader || record.leader.epoch !== epoch;
}

/**
 * A replica that does not lead the log (a leader deposed a moment ago counts
 * as one: what it holds up to the flushed point is durable elsewhere, and may
 * be a tail the next leader discarded) and is not taking it over releases
 * what object storage holds.
 */
export function releasesOnFlush(leader: LocalLeader | undefined, takingOver: boolean): boolean {
  return (!leader || leader.isDeposed) && !takingOver;
}

function supersedes(leader: LocalLeader | undefined, epoch: number): boolean {
  return leader !== undefined && epoch > leader.epoch;
}
