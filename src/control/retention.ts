/**
 * Retention as a pure decision (README, Retention): how far a log's retention
 * point may move, from its policy, its manifest, its flush and commit points,
 * its named readers and the time. No I/O and no clock: the log's leader
 * (src/replica/retention.ts) asks it every flusher pass and raises the point
 * through the truncate path when the answer is ahead; every replica asks it
 * for the status's `retentionHeldBy`.
 *
 * The rules, each a bound on what is kept; the point is the furthest any of
 * them asks for, then clamped:
 *   maxEntries  keep at most that many entries: before committedId + 1 - maxEntries
 *   maxBytes    drop whole oldest objects while the objects left hold more (object granularity)
 *   maxAgeMs    drop whole objects whose last entry is older than now - maxAgeMs; objects
 *               without times (written before entries had them) are dropped only with a
 *               younger-but-old object after them
 *   clamp       never past flushedId + 1 (nothing unflushed is removed, whatever the store's
 *               state), never past the lowest nextId of a reader that holds retention
 */
import type { ManifestEntry, ReaderInfo, RetentionPolicy } from '../fencing/keys.js';

export interface RetentionInputs {
  policy: RetentionPolicy | undefined;
  /** The log's flushed objects, ascending by first id (truncated ones may still be listed until collected). */
  manifest: readonly ManifestEntry[];
  /** The current retention point: ids below it are truncated already. */
  retainedFrom: number;
  flushedId: number;
  committedId: number;
  readers: readonly Pick<ReaderInfo, 'name' | 'nextId' | 'holdsRetention'>[];
  nowMs: number;
}

/** A holding reader that stops retention: it, its position, and how many entries the point would otherwise pass. */
export interface HeldBy {
  reader: string;
  nextId: number;
  entries: number;
}

export interface RetentionDecision {
  /** The retention point to raise to; at most `retainedFrom` when nothing is to be removed. */
  beforeId: number;
  /** Set when a holding reader is what keeps the point below where the policy and the flush point allow. */
  heldBy?: HeldBy;
}

/** Where the policy puts the retention point, clamped (see the module's comment). */
export function retentionPoint(inputs: RetentionInputs): RetentionDecision {
  const { retainedFrom } = inputs;
  const wanted = Math.min(policyPoint(inputs), inputs.flushedId + 1);
  if (wanted <= retainedFrom) return { beforeId: retainedFrom };
  const holder = lowestHolder(inputs.readers);
  if (!holder || holder.nextId >= wanted) return { beforeId: wanted };
  const beforeId = Math.max(holder.nextId, retainedFrom);
  return { beforeId, heldBy: { reader: holder.name, nextId: holder.nextId, entries: wanted - beforeId } };
}

/** The reader holding retention at the lowest position (ties: the first by name), if any. */
export function lowestHolder<R extends Pick<ReaderInfo, 'name' | 'nextId' | 'holdsRetention'>>(readers: readonly R[]): R | undefined {
  let low: R | undefined;
  for (const r of readers) if (r.holdsRetention && (!low || r.nextId < low.nextId || (r.nextId === low.nextId && r.name < low.name))) low = r;
  return low;
}

/** The furthest point any rule of the policy asks for, unclamped (0 without a policy). */
function policyPoint({ policy, manifest, retainedFrom, committedId, nowMs }: RetentionInputs): number {
  if (!policy) return 0;
  let point = 0;
  if (policy.maxEntries !== undefined) point = Math.max(point, committedId + 1 - policy.maxEntries);
  if (policy.maxBytes !== undefined) {
    // Objects wholly below the point are truncated already and no longer count.
    const kept = manifest.filter((e) => e.lastId >= retainedFrom);
    let bytes = 0;
    for (const e of kept) bytes += e.bytes;
    for (const e of kept) {
      if (bytes <= policy.maxBytes) break;
      bytes -= e.bytes;
      point = Math.max(point, e.lastId + 1);
    }
  }
  if (policy.maxAgeMs !== undefined) {
    const cutoff = nowMs - policy.maxAgeMs;
    for (const e of manifest) if (e.lastTimeMs !== undefined && e.lastTimeMs < cutoff) point = Math.max(point, e.lastId + 1);
  }
  return point;
}

/** Committed entries a reader at `nextId` has not read yet: 0 when caught up. */
export function readerLagEntries(nextId: number, committedId: number): number {
  return Math.max(0, committedId + 1 - nextId);
}
