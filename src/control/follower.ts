/**
 * The rules a replica applies to one log as a follower, pure: a replication
 * message or a fence of a newer epoch deposes a local leader of an older one;
 * a fence of an older epoch is refused; a leader whose key in etcd is gone or
 * names another epoch no longer leads; a replica that does not lead releases
 * what object storage holds. The process (replica/follower.ts) and the
 * simulator apply the same functions.
 *
 * Also what a peer's message must agree with in etcd before any of those
 * rules act on it (judgeLeaderClaim, takeoverRefusal): a peer is not trusted
 * for what it says about leadership, etcd is.
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

/** "I, `leader`, lead the log in `epoch`": what a fence or a replication message claims. */
export interface LeaderClaim {
  epoch: number;
  leader: string;
}

/** The log's epoch key and leader key, as etcd (or the watched view of it) shows them. */
export interface EtcdLeadership {
  epoch: number;
  leader: { id: string; epoch: number } | undefined;
}

export type ClaimVerdict =
  /** Nothing new to prove: older than this replica's fence (the rules above refuse it), or the leader it already accepted for its epoch. */
  | 'known'
  /** etcd shows the claimant holding the leader key of that epoch. */
  | 'proven'
  /** etcd has moved past the claim's epoch: a deposed leader's, refused as fenced. */
  | 'stale'
  /** etcd does not show it: read etcd itself (the watch may lag the claim), and refuse if it still does not. */
  | 'unproven'
  /** The claimant is this replica: no peer sends it, whatever etcd shows. */
  | 'forged';

/**
 * Judges a claim before it may raise this replica's fence or reach its log:
 * only a leader key in etcd makes a replica the leader of an epoch. A forged
 * fence of a huge epoch would otherwise shut the log forever (no real epoch
 * could pass it), and a forged replication message write entries readers get.
 */
export function judgeLeaderClaim(self: string, replica: Pick<LogReplica, 'epoch' | 'leader'>, etcd: EtcdLeadership, claim: LeaderClaim): ClaimVerdict {
  if (claim.leader === self) return 'forged';
  if (claim.epoch < replica.epoch || (claim.epoch === replica.epoch && replica.leader !== undefined && claim.leader === replica.leader)) return 'known';
  if (etcd.leader !== undefined && etcd.leader.epoch === claim.epoch && etcd.leader.id === claim.leader) return 'proven';
  return etcd.epoch > claim.epoch ? 'stale' : 'unproven';
}

/** What decides who may ask this replica to take a log over, from etcd (or the watched view of it). */
export interface TakeoverAuthority {
  /** The log's leader key, if one is held: its holder and exact value. */
  leaderKey: { id: string; value: string } | undefined;
  /** The replica holding the coordinator key, if any. */
  coordinator: string | undefined;
  /** The log was never led: its creator asks for its first leader. */
  neverLed: boolean;
  /** Whether the sender is a registered replica of the cluster. */
  senderIsMember: boolean;
  /** Whether this replica is taking the log over already. */
  takingOver: boolean;
}

/**
 * Why a takeover command is refused, or undefined when it is allowed: a
 * handoff from the leader holding exactly the key it replaces, an assignment
 * from the coordinator, a new log's first leader asked for by any replica (its
 * creator), or an operator's unsafe recovery (`/recover` on any replica),
 * which may only join a takeover already running here and never starts one.
 */
export function takeoverRefusal(authority: TakeoverAuthority, sender: string | undefined, request: { replacing?: string | undefined; unsafe: boolean }): string | undefined {
  if (sender === undefined || !authority.senderIsMember) return `${sender ?? 'an unnamed sender'} is not a registered replica`;
  if (request.unsafe) return authority.takingOver ? undefined : 'an unsafe recovery only joins a takeover already running on this replica';
  if (request.replacing !== undefined) {
    const key = authority.leaderKey;
    return key !== undefined && key.id === sender && key.value === request.replacing ? undefined : `only the leader holding the key it replaces hands the log off, not ${sender}`;
  }
  return sender === authority.coordinator || authority.neverLed ? undefined : `only the coordinator assigns the log's leadership, not ${sender}`;
}

function supersedes(leader: LocalLeader | undefined, epoch: number): boolean {
  return leader !== undefined && epoch > leader.epoch;
}
