/**
 * The recovery decision, as arithmetic: when leadership of a log moves, the
 * new leader has fenced the replicas and holds their answers; what is the
 * last id of the old segment, and who holds it?
 *
 * - Only answers that count may decide: a replica counts for the open segment
 *   only if it is the same incarnation the segment was written to (a replica
 *   that restarted forgot its memory; its "I do not have it" means nothing).
 * - With a quorum (2 of 3) of counted answers, the end is the HIGHEST id any
 *   counted answer validly holds, never the lowest: an acknowledged entry is
 *   held by two replicas, any two counted answers include one of them.
 *   (Woodpecker lost acknowledged data by taking the lowest, its issue #320.)
 * - "Validly" means consistent with the segments etcd records: an id in a
 *   sealed segment must carry that segment's epoch and not lie past its seal;
 *   an id past the open segment's start must carry the open segment's epoch.
 * - Without a counted quorum the log stays unavailable, unless an operator
 *   accepts possible loss (`unsafe`): then every answer counts.
 * - A segment its own leader closed clean (sealed after flushing everything it
 *   committed) needs no answers at all: its end is the recorded lastId.
 */
import { majorityOf } from './majority.js';

export interface EpochRun {
  firstId: number;
  epoch: number;
}

/** What a fenced replica reports about one log. */
export interface FenceAnswer {
  replica: string;
  incarnation: string;
  /** First id held in memory (ids below were flushed to object storage). */
  startId: number;
  /** Last id held; startId - 1 when none. */
  lastId: number;
  /** Epoch runs of [startId, lastId], ascending. */
  runs: EpochRun[];
}

export interface SegmentView {
  epoch: number;
  firstId: number;
  lastId: number | null;
  replicas: Record<string, string>;
  closedClean?: boolean;
  /** Closed clean because the log went idle (control/quiescence.ts). */
  quiesced?: boolean;
}

export type RecoveryDecision =
  | {
      kind: 'recover';
      /** Last id of the log to keep; everything after it is discarded everywhere. */
      endId: number;
      /** A replica whose answer holds every id up to endId. */
      source: string;
      /** The answers that decided. */
      counted: string[];
    }
  | { kind: 'unavailable'; reason: string };

/**
 * Highest id of `answer` that agrees with the segments. Its ids before
 * startId were flushed and agree by definition; so do ids before the first
 * segment etcd still records (a reopen after quiescence forgets the segments
 * before the quiesced one, whose ids are all in object storage).
 */
export function validLastId(answer: FenceAnswer, segments: readonly SegmentView[]): number {
  let valid = Math.max(answer.startId - 1, Math.min(answer.lastId, (segments[0]?.firstId ?? 0) - 1));
  for (let i = 0; i < answer.runs.length; i++) {
    const run = answer.runs[i]!;
    const runLast = i + 1 < answer.runs.length ? answer.runs[i + 1]!.firstId - 1 : answer.lastId;
    const from = Math.max(run.firstId, valid + 1);
    if (from > runLast) continue;
    const segment = segmentOf(segments, from);
    if (!segment || segment.epoch !== run.epoch) break;
    const end = Math.min(runLast, segment.lastId ?? Infinity, nextSegmentStart(segments, segment) - 1);
    valid = end;
    if (end < runLast) break;
  }
  return valid;
}

export function decideRecovery(segments: readonly SegmentView[], answers: readonly FenceAnswer[], replicaCount: number, unsafe = false): RecoveryDecision {
  const open = segments[segments.length - 1];
  if (!open) return { kind: 'recover', endId: -1, source: '', counted: answers.map((a) => a.replica) };
  if (isClosedClean(open)) return { kind: 'recover', endId: open.lastId!, source: '', counted: [] };
  const counted = unsafe ? answers : answers.filter((a) => open.replicas[a.replica] === a.incarnation);
  const quorum = unsafe ? 1 : majorityOf(replicaCount);
  if (counted.length < quorum) {
    const restarted = answers.filter((a) => !counted.includes(a)).map((a) => a.replica);
    return {
      kind: 'unavailable',
      reason: `${counted.length} of the ${quorum} answers needed count for segment ${open.epoch}` + (restarted.length ? ` (${restarted.join(', ')} restarted since and lost their memory)` : ''),
    };
  }
  let best = counted[0]!;
  let endId = validLastId(best, segments);
  for (const a of counted.slice(1)) {
    const last = validLastId(a, segments);
    if (last > endId) (best = a), (endId = last);
  }
  // A sealed prefix is never recovered below its seal: the ids up to it are final.
  return { kind: 'recover', endId: Math.max(endId, open.firstId - 1), source: best.replica, counted: counted.map((a) => a.replica) };
}

/** True when the log's last segment was sealed by its own leader's controlled shutdown: recovery needs no fence answers. */
export function isClosedClean(last: SegmentView | undefined): boolean {
  return last !== undefined && last.closedClean === true && last.lastId !== null;
}

function segmentOf(segments: readonly SegmentView[], id: number): SegmentView | undefined {
  for (let i = segments.length - 1; i >= 0; i--) if (segments[i]!.firstId <= id) return segments[i];
  return undefined;
}

function nextSegmentStart(segments: readonly SegmentView[], segment: SegmentView): number {
  const i = segments.indexOf(segment);
  return segments[i + 1]?.firstId ?? Infinity;
}
