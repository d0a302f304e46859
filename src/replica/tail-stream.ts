/**
 * Streaming tails (`GET /v1/logs/{log}/entries?follow=true`): a response kept
 * open that carries every committed entry from `from` on, as it commits, on
 * the leader and on followers alike (a follower sends what it knows
 * committed). Old entries come through the read path (object storage below
 * this replica's memory, then memory) and the stream then follows the log:
 * woken with the long-poll readers (tail-readers.ts) whenever the commit
 * point this replica knows moves.
 *
 * A stream ends cleanly when the log is deleted (or deleted and created
 * again), the replica stops, the ids it is at are truncated, or its reader
 * goes away; a reader that leaves more than MAX_BUFFERED_BYTES unread for
 * BLOCKED_TIMEOUT_MS is cut off. When idle it sends a keep-alive frame every
 * KEEP_ALIVE_MS so readers and proxies can tell an idle stream from a dead
 * one. The HTTP layer owns the bytes' way out (a TailSink); this file owns
 * what to send and when.
 */
import { TernError } from '../errors.js';
import { KEEP_ALIVE_FRAME, encodeFrames, encodeTimedFrames } from '../frames.js';
import type { EntrySlice } from '../flusher/object-reader.js';
import type { ReplicaContext } from './log-state.js';
import type { Reads } from './reads.js';
import type { TailReaders } from './tail-readers.js';

/** An idle stream sends a keep-alive this often. */
export const KEEP_ALIVE_MS = 3_000;
/** A stream reads no more while this many of its bytes wait unread on its connection. */
export const MAX_BUFFERED_BYTES = 1024 * 1024;
/** A stream whose reader leaves MAX_BUFFERED_BYTES unread this long is cut off. */
export const BLOCKED_TIMEOUT_MS = 10_000;
/** Entries a stream reads at once; bytes are bounded by MAX_BUFFERED_BYTES. */
const BATCH_ENTRIES = 1000;
/** Pause before reading again when committed entries cannot be read right now (store down, too many reads). */
const RETRY_MS = 100;

/** How a stream's entries are written: frames (binary), timed frames (binary, with each entry's time) or one JSON object a line. */
export type TailFormat = 'frames' | 'timed-frames' | 'ndjson';

/** Why a stream ended: sent as the trailer `tern-end` when the connection still takes it. */
export type TailEnd = 'deleted' | 'stopping' | 'truncated' | 'closed' | 'too-slow' | 'error';

/** The HTTP response a stream writes to, as the replica sees it. */
export interface TailSink {
  /** Writes one chunk (it is sent at once). */
  write(chunk: Buffer): void;
  /** Bytes written and not yet taken by the reader's connection. */
  readonly buffered: number;
  /** True once the reader went away (or the sink was ended). */
  readonly closed: boolean;
  /** Calls `listener` when buffered bytes drained or the sink closed. */
  onProgress(listener: () => void): () => void;
}

/** An open stream, checked and counted: `run` writes to the sink until the stream ends. */
export interface TailStream {
  readonly fromId: number;
  run(sink: TailSink): Promise<TailEnd>;
}

/** The bytes of `entries` (ids from `firstId`, times `times`) in `format`: one chunk. */
export function encodeTailChunk(entries: readonly Buffer[], times: readonly number[], firstId: number, format: TailFormat): Buffer {
  if (format === 'frames') return Buffer.concat(encodeFrames(entries));
  if (format === 'timed-frames') return Buffer.concat(encodeTimedFrames(entries, times));
  let text = '';
  entries.forEach((e, i) => (text += `{"id":${firstId + i},"timeMs":${times[i]},"data":"${e.toString('base64')}"}\n`));
  return Buffer.from(text);
}

/** The keep-alive in `format`: a frame of length 0xFFFFFFFF, or an empty JSON object line. */
export function keepAliveChunk(format: TailFormat): Buffer {
  return format === 'ndjson' ? NDJSON_KEEP_ALIVE : KEEP_ALIVE_FRAME;
}
const NDJSON_KEEP_ALIVE = Buffer.from('{}\n');

/**
 * A one-slot wake-up: `wait` resolves at the next `wake` (or at once when one
 * came since the last wait), or after `ms` with false.
 */
class Wakeup {
  private woken = false;
  private resolve: ((woken: boolean) => void) | undefined;

  wake = (): void => {
    if (this.resolve) {
      const r = this.resolve;
      this.resolve = undefined;
      r(true);
    } else this.woken = true;
  };

  wait(ms: number): Promise<boolean> {
    if (this.woken) {
      this.woken = false;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.resolve = undefined;
        resolve(false);
      }, Math.max(0, ms));
      this.resolve = (woken) => {
        clearTimeout(timer);
        resolve(woken);
      };
    });
  }
}

export class TailStreams {
  private open = 0;

  constructor(
    private readonly ctx: ReplicaContext,
    private readonly reads: Reads,
    private readonly tailReaders: TailReaders,
  ) {}

  /** Streams open on this replica. */
  get count(): number {
    return this.open;
  }

  /**
   * Checks a stream can start (the log exists, `fromId` is retained, this
   * replica holds fewer than --max-tail-reads streams and held tail reads
   * together) before any byte is sent: the errors are the documented answers.
   */
  async openStream(name: string, fromId: number, format: TailFormat): Promise<TailStream> {
    const record = await this.ctx.requireLog(name);
    const retained = this.ctx.dir().retainedFrom(name);
    if (fromId < retained) throw new TernError('TRUNCATED', `log ${name}: ids below ${retained} were truncated; read from ${retained}`);
    const { maxTailReads } = this.ctx.config;
    const held = this.open + this.tailReaders.count;
    if (held >= maxTailReads) throw new TernError('TOO_MANY', `replica ${this.ctx.id} holds ${held} tail streams and tail reads, the most --max-tail-reads allows (${maxTailReads})`);
    const uid = record.meta.uid;
    return { fromId, run: (sink) => this.run(name, uid, fromId, format, sink) };
  }

  private async run(name: string, uid: string | undefined, fromId: number, format: TailFormat, sink: TailSink): Promise<TailEnd> {
    this.open++;
    this.ctx.metrics.tailStreamsChanged(+1);
    const wakeup = new Wakeup();
    const unfollow = this.tailReaders.follow(name, wakeup.wake);
    const unwatch = sink.onProgress(wakeup.wake);
    try {
      return await this.follow(name, uid, fromId, format, sink, wakeup);
    } finally {
      unfollow();
      unwatch();
      this.open--;
      this.ctx.metrics.tailStreamsChanged(-1);
    }
  }

  private async follow(name: string, uid: string | undefined, fromId: number, format: TailFormat, sink: TailSink, wakeup: Wakeup): Promise<TailEnd> {
    let next = fromId;
    let lastSentAt = Date.now();
    let blockedSince: number | undefined;
    const seen = { inView: false };
    for (;;) {
      const end = this.endOf(name, uid, sink, seen);
      if (end) return end;
      const now = Date.now();
      if (sink.buffered >= MAX_BUFFERED_BYTES) {
        blockedSince ??= now;
        if (now - blockedSince >= BLOCKED_TIMEOUT_MS) return 'too-slow';
        await wakeup.wait(BLOCKED_TIMEOUT_MS - (now - blockedSince));
        continue;
      }
      blockedSince = undefined;
      if (next <= this.ctx.committedId(name)) {
        const got = await this.readSome(name, next);
        if (typeof got === 'string') return got;
        if (got.entries.length > 0) {
          if (sink.closed) return 'closed';
          sink.write(encodeTailChunk(got.entries, got.times, next, format));
          next += got.entries.length;
          lastSentAt = Date.now();
          continue;
        }
        // Committed but not readable now (the store is down, the read bound is full, or the
        // flush that released it from memory is not in this replica's view yet): try again soon,
        // keeping the reader's stream alive meanwhile.
        if (Date.now() - lastSentAt >= KEEP_ALIVE_MS) {
          sink.write(keepAliveChunk(format));
          lastSentAt = Date.now();
        }
        await wakeup.wait(RETRY_MS);
        continue;
      }
      const idleMs = now - lastSentAt;
      if (idleMs >= KEEP_ALIVE_MS) {
        sink.write(keepAliveChunk(format));
        lastSentAt = now;
        continue;
      }
      await wakeup.wait(KEEP_ALIVE_MS - idleMs);
    }
  }

  /** Entries from `next` (none when they cannot be read right now), or why the stream ends. */
  private async readSome(name: string, next: number): Promise<EntrySlice | TailEnd> {
    try {
      return await this.reads.read(name, next, BATCH_ENTRIES, 0, MAX_BUFFERED_BYTES);
    } catch (err) {
      const code = err instanceof TernError ? err.code : undefined;
      if (code === 'TRUNCATED') return 'truncated';
      if (code === 'LOG_NOT_FOUND') return 'deleted';
      if (code === 'TOO_MANY' || code === 'STORE_UNAVAILABLE') return { entries: [], times: [] };
      if (code === 'NOT_READY' && this.ctx.stopping) return 'stopping';
      this.ctx.log.warn({ log: name, fromId: next, err: (err as Error).message }, 'tail stream ended on an error');
      return 'error';
    }
  }

  /**
   * Why the stream must end now, if it must. The log counts as deleted once
   * the watched view, having shown it, no longer does (or shows another
   * creation): a view that has not caught up with its creation yet is no
   * sign of a delete.
   */
  private endOf(name: string, uid: string | undefined, sink: TailSink, seen: { inView: boolean }): TailEnd | undefined {
    if (sink.closed) return 'closed';
    if (this.ctx.stopping) return 'stopping';
    const record = this.ctx.directory?.log(name);
    if (record) seen.inView = true;
    if ((!record && seen.inView) || (record && record.meta.uid !== uid)) return 'deleted';
    return undefined;
  }
}
