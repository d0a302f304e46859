/**
 * This replica's use of object storage: the flusher of each log it leads,
 * reads of ids no longer in memory, and the sweep of a deleted log's objects.
 */
import { OBJECT_BUFFERS_KEPT, ObjectBuffers, runFlusher } from '../flusher/flusher.js';
import { CorruptObjectError, isObjectUnder, logPrefix } from '../flusher/object-format.js';
import { ObjectReader, type EntrySlice } from '../flusher/object-reader.js';
import { TernError } from '../errors.js';
import { TIMES_VERSION } from '../peer/wire.js';
import type { LeaderLog } from '../quorum/leader.js';
import type { LogState, ReplicaContext, Waiting } from './log-state.js';

/** A deleted log's objects are swept again this much later, for an upload that was in flight. */
const LATE_SWEEP_MS = 10_000;

export class Storage {
  private readonly reader: ObjectReader | undefined;
  private readonly objectBuffers = new ObjectBuffers(OBJECT_BUFFERS_KEPT);

  constructor(private readonly ctx: ReplicaContext) {
    this.reader = ctx.store && new ObjectReader(ctx.store, ctx.config.readCacheBytes);
  }

  /** At most `count` entries from `fromId` and about `maxBytes` (at least one entry), with their times. */
  readFlushed(name: string, fromId: number, count: number, maxBytes = this.ctx.config.maxReadBytes): Promise<EntrySlice> {
    return this.fromStore(name, `reading id ${fromId}`, (reader) => reader.read(this.ctx.dir().manifest(name), fromId, count, maxBytes));
  }

  /** The first flushed id (of the objects holding ids from `retained` on) whose time is at least `timeMs`; undefined when none is. */
  firstFlushedAtOrAfter(name: string, retained: number, timeMs: number): Promise<{ id: number; timeMs: number } | undefined> {
    const manifest = this.ctx.dir().manifest(name).filter((e) => e.lastId >= retained);
    if (manifest.length === 0) return Promise.resolve(undefined);
    return this.fromStore(name, `seeking time ${timeMs}`, (reader) => reader.firstAtOrAfter(manifest, timeMs));
  }

  /** Runs `op` on the object reader, its failures told as the client API tells them. */
  private async fromStore<T>(name: string, what: string, op: (reader: ObjectReader) => Promise<T>): Promise<T> {
    if (!this.reader) throw new TernError('STORE_UNAVAILABLE', `log ${name}: ${what} needs object storage, and none is configured`);
    try {
      return await op(this.reader);
    } catch (err) {
      if (err instanceof CorruptObjectError) {
        this.ctx.log.error({ log: name, what, err: err.message }, 'corrupt object in the object store');
        throw new TernError('CORRUPT_OBJECT', `log ${name}: ${what}: an object is corrupt (${err.message})`, { cause: err });
      }
      throw new TernError('STORE_UNAVAILABLE', `log ${name}: ${what} from object storage failed: ${(err as Error).message}`, { cause: err });
    }
  }

  startFlusher(name: string, uid: string | undefined, state: LogState, leader: LeaderLog<Waiting>): void {
    const store = this.ctx.store;
    if (!store) return;
    const replica = state.replica;
    const source = {
      log: name,
      uid,
      epoch: leader.epoch,
      isCurrent: () => state.leader === leader && !leader.isDeposed && !this.ctx.stopping,
      closing: () => state.handingOff,
      committedId: () => replica.commitId,
      waitForCommit: (afterId: number, maxMs: number) => waitForCommit(state, afterId, maxMs),
      entries: (fromId: number, maxCount: number, maxBytes: number) => replica.buffer.slice(fromId, maxCount, maxBytes),
      release: (id: number) => replica.releaseThrough(Math.min(id, replica.commitId)),
      snapshot: (firstId: number, lastId: number) => this.ctx.producers.snapshotThrough(state, firstId, lastId),
      times: (firstId: number, lastId: number) => (this.peersReadTimes(name) ? replica.buffer.timeRunsBetween(firstId, lastId) : undefined),
    };
    const c = this.ctx.config;
    const observer = { flushed: (bytes: number, seconds: number) => this.ctx.metrics.flushed(bytes, seconds), recordFailed: () => this.ctx.metrics.etcdFailed('record') };
    runFlusher(source, this.ctx.dir(), store, { cluster: c.cluster, prefix: c.s3Prefix, maxBytes: c.flushMaxBytes, maxEntries: c.flushMaxEntries, intervalMs: c.flushIntervalMs, orphanGraceMs: c.orphanGraceMs, observer, buffers: this.objectBuffers }, this.ctx.log).catch(
      (err) => this.ctx.log.error({ log: name, err }, 'flusher stopped on an error'),
    );
  }

  /**
   * Whether every other replica of the log reads objects with times (format
   * 3): during a rolling update one of the previous release does not, and it
   * must still read what this leader flushes (and load its producers from
   * it, should it lead next), so objects go without times until it is updated.
   */
  private peersReadTimes(name: string): boolean {
    const dir = this.ctx.dir();
    const peers = (dir.log(name)?.meta.replicas ?? []).filter((id) => id !== this.ctx.id);
    const urls = peers.flatMap((id) => dir.member(id)?.peerUrl ?? []);
    return this.ctx.transport.oldestVersionOf(urls) >= TIMES_VERSION;
  }

  /**
   * Deletes the objects of a deleted log's creation, now and once more a
   * little later (an upload may have been in flight). Only that creation's
   * prefix: the name may be created again meanwhile, under another.
   */
  async sweepDeleted(name: string, uid: string | undefined): Promise<void> {
    const store = this.ctx.store;
    if (!store) return;
    const prefix = logPrefix(this.ctx.config.s3Prefix, this.ctx.config.cluster, name, uid);
    const sweep = async (when: 'at_delete' | 'late') => {
      for (const o of await store.list(prefix)) if (isObjectUnder(prefix, o.key)) await store.delete(o.key);
      this.ctx.metrics.deletedLogSwept(when);
    };
    await sweep('at_delete');
    setTimeout(() => sweep('late').catch((err) => this.ctx.log.warn({ log: name, err: (err as Error).message }, 'late sweep of a deleted log failed')), LATE_SWEEP_MS).unref();
  }
}

/** Resolves once the log's commit point passes `afterId`, its leader made any other progress or stepped down, or `maxMs` passed. */
function waitForCommit(state: LogState, afterId: number, maxMs: number): Promise<void> {
  if (state.replica.commitId > afterId || !state.leader || state.leader.isDeposed) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      state.leaderWatchers.delete(watch);
      resolve();
    };
    const watch = () => {
      if (state.replica.commitId > afterId || !state.leader || state.leader.isDeposed) done();
    };
    const timer = setTimeout(done, maxMs);
    state.leaderWatchers.add(watch);
  });
}
