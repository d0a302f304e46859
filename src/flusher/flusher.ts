/**
 * The flusher of one log, run by its leader: committed entries go to object
 * storage in id order, in batches cut by size, count or age; each object is
 * recorded in the log's manifest in etcd by a transaction compared on the
 * leader's epoch, and only then is memory released (followers release when
 * they see the manifest change). Store failures are retried with backoff
 * while the entries stay in memory, where the memory bound applies. A new
 * leader starts from the flushed point (the manifest, or the flushed-through
 * mark past objects truncation deleted), so it flushes whatever the old one had not.
 * The same loop collects garbage: objects holding only truncated entries,
 * and orphans (uploads no manifest records, e.g. a fenced leader's) past a
 * grace period.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ManifestEntry } from '../fencing/keys.js';
import { encodeObject, encodedSize, epochOfKey, isObjectUnder, logPrefix, objectKey, type ObjectSections } from './object-format.js';
import type { TimeRun } from '../quorum/entry-buffer.js';
import type { ObjectStore } from './object-store.js';

/** New object buffers are sized in steps of this, so that buffers of similar objects are interchangeable. */
const BUFFER_ROUNDING = 64 * 1024;
/** A new object buffer is this much larger than the object that asked for it, so that a somewhat larger object later still fits it. */
const BUFFER_HEADROOM = 1.25;
/** First pause before retrying a failed upload or manifest record; it doubles on each failure. Short: most failures are a blip. */
const FIRST_BACKOFF_MS = 100;
/** Longest pause between retries: an outage of the store or etcd is noticed within this of its end. */
const MAX_BACKOFF_MS = 5000;
/** The flusher looks for work every quarter of --flush-interval-ms, but no more often than this (an idle log costs next to nothing)... */
const MIN_POLL_MS = 5;
/** ...and no less often than this, so that a cut by size or count waits at most this long. */
const MAX_POLL_MS = 50;
/** Polls per flush interval: an entry waits at most about 1/this of an interval past its age limit. */
const POLLS_PER_INTERVAL = 4;
/**
 * Objects uploading at once per log. 4 rather than 3 since 2026-12-03, together with the S3
 * client's keep-alive uploads (object-store.ts): in alternating bench:flush runs the pair flushed
 * 127 MB/s (median of 11) against 113.5 (10) with 3 and 100-continue, faster in 6 of 8 pairs.
 * 4 alone (with 100-continue) was not faster than 3 (112 MB/s, median of 4, 1 pair in 3).
 */
export const UPLOADS_IN_FLIGHT = 4;
/**
 * Objects stored but not yet recorded in the manifest, at most, per log (no
 * new object is cut past it): while etcd is slow or down the store is not
 * filled with objects a fenced leader would leave as orphans. It is also the
 * most objects one manifest transaction records (far below etcd's 128
 * operations per transaction).
 */
const MAX_UNRECORDED_OBJECTS = 2 * UPLOADS_IN_FLIGHT + 2;
/** Buffers a replica keeps for its flushers: one log flushing steadily reuses them all (about 5 MiB each at the default object size). */
export const OBJECT_BUFFERS_KEPT = UPLOADS_IN_FLIGHT + 1;
/** Truncated objects are looked for this often (in the manifest: no store request unless there are some). */
const GC_EVERY_MS = 2000;
/** Orphans are looked for at most this far apart, and at least every half grace period. */
const MAX_ORPHAN_SWEEP_EVERY_MS = 60_000;

/** The leader's side of one log, as the flusher needs it. */
export interface FlushSource {
  readonly log: string;
  /** The log's creation (LogMeta.uid; undefined for a log created before uids): its objects' key prefix. */
  readonly uid: string | undefined;
  readonly epoch: number;
  /** False once this leader stepped down: the flusher stops. */
  isCurrent(): boolean;
  /** True while the leader closes the log (controlled shutdown): cut objects at once, however small. */
  closing(): boolean;
  committedId(): number;
  /**
   * Resolves once the commit point passes `afterId`, the leader steps down,
   * or `maxMs` pass: an idle log's flusher sleeps until there is work instead
   * of polling. Without it the flusher polls.
   */
  waitForCommit?(afterId: number, maxMs: number): Promise<void>;
  /** Committed entries from `fromId`, at most `maxCount` and about `maxBytes`. */
  entries(fromId: number, maxCount: number, maxBytes: number): Buffer[];
  /** Memory through `id` may go: it is durable. */
  release(id: number): void;
  /**
   * The snapshot section (object-format.ts) of the object about to hold
   * firstId..lastId: the idempotent producers' table as it stands at lastId.
   * Called once per object, in id order; undefined writes a version 1 object.
   */
  snapshot?(firstId: number, lastId: number): Buffer | undefined;
  /** The times of firstId..lastId as runs, the first at firstId (empty when unknown): the object's time index; undefined writes an object without one (format 2 or 1). */
  times?(firstId: number, lastId: number): TimeRun[] | undefined;
}

/** The manifest in etcd, as the flusher needs it (ClusterDirectory). */
export interface Manifest {
  flushedId(log: string): number;
  retainedFrom(log: string): number;
  manifest(log: string): ManifestEntry[];
  /** Records consecutive objects, ascending, in one transaction compared on `epoch`: all or none; false when fenced. */
  recordFlush(log: string, epoch: number, entries: readonly ManifestEntry[]): Promise<boolean>;
  forgetFlushed(log: string, epoch: number, entries: readonly ManifestEntry[]): Promise<boolean>;
}

export interface FlusherOptions {
  cluster: string;
  prefix: string;
  maxBytes: number;
  maxEntries: number;
  intervalMs: number;
  orphanGraceMs: number;
  /** Told of each object flushed and recorded, and of each failed manifest record (metrics). */
  observer?: FlushObserver;
  /** Buffers objects are encoded into, shared by the replica's flushers. */
  buffers?: ObjectBuffers;
}

/**
 * Buffers of finished uploads, handed to the next objects. A fresh buffer of
 * a few MiB costs a page fault per 4 KiB page as it is first written: on the
 * benchmark VM 20 ms for a 4 MiB object, on the event loop that also answers
 * appends, which put every flush in the open-loop p99. A reused buffer's
 * pages are already there. At most `max` buffers wait here.
 */
export class ObjectBuffers {
  private readonly free: Buffer[] = [];

  constructor(private readonly max: number) {}

  /** The smallest waiting buffer of at least `size` bytes, or a new one (with room to spare, so it serves later objects too). */
  take(size: number): Buffer {
    let best = -1;
    for (let i = 0; i < this.free.length; i++) if (this.free[i]!.length >= size && (best < 0 || this.free[i]!.length < this.free[best]!.length)) best = i;
    if (best >= 0) return this.free.splice(best, 1)[0]!;
    return Buffer.allocUnsafeSlow(Math.ceil((size * BUFFER_HEADROOM) / BUFFER_ROUNDING) * BUFFER_ROUNDING);
  }

  /** Back once nothing reads `buffer` any more; when `max` wait already, the smallest goes. */
  give(buffer: Buffer): void {
    this.free.push(buffer);
    if (this.free.length > this.max) this.free.sort((a, b) => b.length - a.length).pop();
  }
}

export interface FlushObserver {
  flushed(bytes: number, seconds: number): void;
  recordFailed(): void;
}

export interface FlushLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/**
 * How often to list the store for orphans. A LIST costs a request (money on
 * AWS) and, on stores such as s3rver, work per object held; orphans only
 * become deletable after the grace period, so listing every GC pass (every 2
 * s, per log) bought nothing with the default 10-minute grace.
 */
export function orphanSweepEveryMs(orphanGraceMs: number): number {
  return Math.min(MAX_ORPHAN_SWEEP_EVERY_MS, Math.max(GC_EVERY_MS, orphanGraceMs / 2));
}

/** An object cut from the log: uploading, or stored and waiting for its manifest record. */
interface Flight {
  entry: ManifestEntry;
  /** When it was cut (performance.now()), for the observer's flush time. */
  cutAt: number;
  /** Undefined while uploading; then true once the store has it, false when leadership ended first. */
  stored?: boolean;
}

export async function runFlusher(src: FlushSource, manifest: Manifest, store: ObjectStore, options: FlusherOptions, log: FlushLogger): Promise<void> {
  const pollMs = Math.max(MIN_POLL_MS, Math.min(MAX_POLL_MS, options.intervalMs / POLLS_PER_INTERVAL));
  let nextId = manifest.flushedId(src.log) + 1;
  let waitingSince: number | undefined;
  let lastGc = 0;
  let lastOrphanSweep = 0;
  let uploading = 0;
  // Set once a record was refused (fenced) or an upload ended with leadership: nothing more is recorded.
  let stopped = false;
  // Uploads overlap (hiding the store's latency); records go to the manifest strictly in id order:
  // `unrecorded` is in id order, and only its stored head, with the stored flights right behind it,
  // is recorded (in one transaction), by one recorder at a time.
  const unrecorded: Flight[] = [];
  let recording: Promise<void> | undefined;
  // The loop waits for an upload or a record to end, not for a poll: a 4 MiB upload to a store on
  // loopback takes ~30 ms, and a 50 ms poll (the default interval's) left the store idle between objects.
  let wake: (() => void) | undefined;
  const wakeUp = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const progress = (maxMs: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        wake = undefined;
        resolve();
      }, maxMs);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  const recordStored = async () => {
    while (!stopped && unrecorded.length > 0 && unrecorded[0]!.stored !== undefined) {
      if (!unrecorded[0]!.stored) {
        stopped = true;
        break;
      }
      let n = 1;
      while (n < unrecorded.length && unrecorded[n]!.stored === true) n++;
      const batch = unrecorded.slice(0, n);
      if (await recordWithRetry(src, manifest, batch.map((f) => f.entry), log, options.observer)) {
        unrecorded.splice(0, n);
        const now = performance.now();
        for (const f of batch) options.observer?.flushed(f.entry.bytes, (now - f.cutAt) / 1000);
        src.release(batch[n - 1]!.entry.lastId);
      } else {
        stopped = true;
        log.warn({ log: src.log, epoch: src.epoch, keys: batch.map((f) => f.entry.key) }, 'manifest refused the flush (fenced): the objects are orphans');
      }
      wakeUp();
    }
  };
  // One recorder at a time; started when an upload ends, and again when it ends itself, for an
  // upload that ended while it was finishing.
  const startRecorder = () => {
    if (recording || stopped || unrecorded[0]?.stored === undefined) return;
    recording = recordStored()
      .catch((err) => {
        stopped = true;
        log.warn({ log: src.log, err: (err as Error).message }, 'recording flushes failed; the flusher stops');
      })
      .finally(() => {
        recording = undefined;
        wakeUp();
        startRecorder();
      });
  };
  while (src.isCurrent() && !stopped) {
    src.release(manifest.flushedId(src.log));
    if (Date.now() - lastGc > GC_EVERY_MS) {
      lastGc = Date.now();
      const sweepOrphans = lastGc - lastOrphanSweep > orphanSweepEveryMs(options.orphanGraceMs);
      if (sweepOrphans) lastOrphanSweep = lastGc;
      await collectGarbage(src, manifest, store, options, log, sweepOrphans).catch((err) => log.warn({ log: src.log, err: (err as Error).message }, 'object garbage collection failed; will retry'));
    }
    nextId = Math.max(nextId, manifest.flushedId(src.log) + 1);
    const pending = src.committedId() - nextId + 1;
    if (pending <= 0) {
      waitingSince = undefined;
      // Woken by the next commit, or in time for the next garbage collection.
      await (src.waitForCommit ? src.waitForCommit(nextId - 1, GC_EVERY_MS) : sleep(pollMs));
      continue;
    }
    if (uploading >= UPLOADS_IN_FLIGHT || unrecorded.length >= MAX_UNRECORDED_OBJECTS) {
      await progress(GC_EVERY_MS);
      continue;
    }
    waitingSince ??= Date.now();
    const maxCount = Math.min(pending, options.maxEntries);
    const entries = src.entries(nextId, maxCount, options.maxBytes);
    let bytes = 0;
    for (const e of entries) bytes += e.length;
    // Full when the next committed entry would take it past maxBytes (the slice stopped short of
    // what is committed), not only when it holds maxBytes exactly: entries that do not divide
    // maxBytes otherwise waited out the whole interval for every object of a backlog.
    const full = bytes >= options.maxBytes || entries.length >= options.maxEntries || entries.length < maxCount;
    if (!full && Date.now() - waitingSince < options.intervalMs && !src.closing()) {
      await sleep(pollMs);
      continue;
    }
    const firstId = nextId;
    const lastId = firstId + entries.length - 1;
    nextId = lastId + 1;
    waitingSince = undefined;
    const key = objectKey(options.prefix, options.cluster, src.log, firstId, lastId, src.epoch, src.uid);
    const sections: ObjectSections = { snapshot: src.snapshot?.(firstId, lastId), times: src.times?.(firstId, lastId) };
    const buffer = options.buffers?.take(encodedSize(entries.length, bytes, sections));
    const body = encodeObject(src.epoch, firstId, entries, buffer, sections);
    const flight: Flight = { entry: manifestEntryOf(key, firstId, lastId, src.epoch, body.length, sections.times), cutAt: performance.now() };
    unrecorded.push(flight);
    uploading++;
    void putWithRetry(src, store, key, body, log).then((stored) => {
      // Reused only once the store has it: the SDK reads the body until then, retries included.
      if (buffer) options.buffers!.give(buffer);
      uploading--;
      flight.stored = stored;
      startRecorder();
      wakeUp();
    });
  }
  while (uploading > 0 || recording) await progress(GC_EVERY_MS);
}

/** An object's manifest record; it names the times of its first and last entries when they are known. */
export function manifestEntryOf(key: string, firstId: number, lastId: number, epoch: number, bytes: number, times: readonly TimeRun[] | undefined): ManifestEntry {
  const entry: ManifestEntry = { key, firstId, lastId, epoch, bytes };
  if (times && times.length > 0) {
    entry.firstTimeMs = times[0]!.timeMs;
    entry.lastTimeMs = times[times.length - 1]!.timeMs;
  }
  return entry;
}

/** Records in the manifest, retrying etcd errors; false when the transaction was refused (fenced) or leadership ended. */
async function recordWithRetry(src: FlushSource, manifest: Manifest, entries: readonly ManifestEntry[], log: FlushLogger, observer: FlushObserver | undefined): Promise<boolean> {
  for (let delay = FIRST_BACKOFF_MS; src.isCurrent(); delay = Math.min(delay * 2, MAX_BACKOFF_MS)) {
    try {
      return await manifest.recordFlush(src.log, src.epoch, entries);
    } catch (err) {
      observer?.recordFailed();
      log.warn({ log: src.log, keys: entries.map((e) => e.key), err: (err as Error).message }, 'recording a flush in etcd failed; retrying');
      await sleep(delay);
    }
  }
  return false;
}

async function putWithRetry(src: FlushSource, store: ObjectStore, key: string, body: Buffer, log: FlushLogger): Promise<boolean> {
  for (let attempt = 0, delay = FIRST_BACKOFF_MS; src.isCurrent(); attempt++, delay = Math.min(delay * 2, MAX_BACKOFF_MS)) {
    try {
      await store.put(key, body);
      if (attempt > 0) log.info({ log: src.log, key, attempts: attempt + 1 }, 'object store back: flushed');
      return true;
    } catch (err) {
      log.warn({ log: src.log, key, attempt, err: (err as Error).message }, 'flush to the object store failed; retrying with backoff');
      await sleep(delay);
    }
  }
  return false;
}

/** Deletes objects that hold only truncated ids, then (when `sweepOrphans`) orphans older than the grace period. */
export async function collectGarbage(src: FlushSource, manifest: Manifest, store: ObjectStore, options: FlusherOptions, log: FlushLogger, sweepOrphans: boolean): Promise<void> {
  const retained = manifest.retainedFrom(src.log);
  const truncated = manifest.manifest(src.log).filter((e) => e.lastId < retained);
  for (const e of truncated) await store.delete(e.key);
  if (truncated.length > 0 && (await manifest.forgetFlushed(src.log, src.epoch, truncated))) {
    log.info({ log: src.log, objects: truncated.length, before: retained }, 'deleted truncated objects');
  }
  if (!sweepOrphans) return;
  const recorded = new Set(manifest.manifest(src.log).map((e) => e.key));
  const cutoff = Date.now() - options.orphanGraceMs;
  const prefix = logPrefix(options.prefix, options.cluster, src.log, src.uid);
  for (const o of await store.list(prefix)) {
    if (!isObjectUnder(prefix, o.key) || recorded.has(o.key) || o.lastModified.getTime() > cutoff || !src.isCurrent()) continue;
    // Only a fenced leader's upload is an orphan: its manifest record compares on an epoch that
    // has moved on, so it can never be recorded. An unrecorded object of this leader's own epoch
    // is an upload whose record is still to come (etcd slow or down): deleting it lost data.
    const epoch = epochOfKey(o.key);
    if (epoch === undefined || epoch >= src.epoch) continue;
    // Truncated objects were forgotten above only after their deletion, so what is left unrecorded is an orphan.
    await store.delete(o.key);
    log.info({ log: src.log, key: o.key }, 'deleted orphan object');
  }
}
