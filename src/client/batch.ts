/**
 * The producer's client-side batching, pure: appends wait in a queue until a
 * batch is full (entries or bytes) or the linger time of its oldest entry has
 * passed; then the longest prefix within the limits goes as one request. A
 * batch carries one time (every entry of an append shares it), so entries
 * given their own time only share a batch with entries given the same.
 */
export interface BatchLimits {
  /** Entries per request. @default 1000 */
  maxBatchEntries: number;
  /** Entry bytes per request (one entry over it goes alone). @default 1 MiB */
  maxBatchBytes: number;
}

export const DEFAULT_BATCH_LIMITS: Readonly<BatchLimits> = Object.freeze({ maxBatchEntries: 1000, maxBatchBytes: 1 << 20 });

export interface Queued {
  data: Buffer;
  /** The entry's own time (Tern-Time-Ms); undefined: the leader's clock. */
  timeMs?: number;
}

/** Whether what waits fills a batch (so it goes now, whatever the linger). */
export function batchIsFull(queue: readonly Queued[], queuedBytes: number, limits: BatchLimits): boolean {
  return queue.length >= limits.maxBatchEntries || queuedBytes >= limits.maxBatchBytes;
}

/** How many of the queue's first entries make the next batch: at least one, within both limits, all of the first one's time. */
export function nextBatchSize(queue: readonly Queued[], limits: BatchLimits): number {
  let bytes = 0;
  let n = 0;
  for (const q of queue) {
    if (n >= limits.maxBatchEntries) break;
    if (n > 0 && q.timeMs !== queue[0]!.timeMs) break;
    if (n > 0 && bytes + q.data.length > limits.maxBatchBytes) break;
    bytes += q.data.length;
    n++;
  }
  return n;
}
