/**
 * Quiescence of idle logs, as pure rules (CockroachDB quiesces idle Raft
 * ranges for the same reason: an idle log must not cost a timer or a message).
 * A leader whose log had no append for a while, with everything committed
 * and flushed, seals its segment closed clean and marked quiesced and gives
 * up its leader key, in one etcd transaction. The log then has no leader and
 * none is assigned: failure detection and the coordinator leave it alone,
 * and every replica drops its state of it. The next append, at any replica,
 * reopens it with one transaction (raise the epoch, take the leader key,
 * open the next segment), and since everything up to the seal is in object
 * storage, no fence answer is needed: a quiesced log survives any crash,
 * the whole cluster's included. Whether etcd shows a log quiesced is
 * fencing/keys.ts isQuiesced.
 */
import type { SegmentView } from '../quorum/recovery.js';

/** What a leader knows of one log it leads, when it asks whether to quiesce it. */
export interface LeaderActivity {
  /** Since the last append the leader took. */
  idleMs: number;
  /** The proposals and commit waits still unanswered. */
  pending: number;
  lastId: number;
  commitId: number;
  /** Every id through this one is in object storage. */
  flushedId: number;
  /** A takeover, handoff or drain is under way, or the leader is deposed: leave the log as it is. */
  busy: boolean;
}

/** True when the leader may seal the log now; `quiesceAfterMs` 0: never. */
export function mayQuiesce(a: LeaderActivity, quiesceAfterMs: number): boolean {
  return quiesceAfterMs > 0 && !a.busy && a.idleMs >= quiesceAfterMs && a.pending === 0 && a.commitId === a.lastId && a.flushedId >= a.lastId;
}

/** The open segment of `epoch` a reopen writes: right after the quiesced one's end, to the live replicas. */
export function reopenedSegment(quiesced: SegmentView, epoch: number, live: Readonly<Record<string, string>>): SegmentView {
  return { epoch, firstId: quiesced.lastId! + 1, lastId: null, replicas: { ...live } };
}
