/**
 * A producer appends to one log and gives one promise per entry, resolved with
 * the entry's id. Concurrent appends are batched client-side (a linger time,
 * entry and byte limits) into one atomic batch request each.
 *
 * Idempotent (the default): every request carries `Tern-Producer-Id` and
 * `Tern-Producer-Seq` (the sequence of the batch's first entry; a batch of n
 * uses seq..seq+n-1). A batch whose outcome is unknown (a timeout, a broken
 * connection, maybeApplied: true, a 5xx) is sent again with the same id and
 * sequence until the server answers or the deadline passes; the server
 * answers a retry it already applied with the original ids (`duplicate:
 * true`). One batch is in flight at a time, so sequences reach the leader in
 * order; appends made meanwhile gather into the next batch.
 *
 * Not idempotent (`idempotent: false`): plain appends; a failure that may
 * have applied the batch is never retried but reported with maybeApplied:
 * true, and up to `maxInFlight` batches ride at once.
 *
 * An append may give its entry's own time (`timeMs`, sent as Tern-Time-Ms);
 * a batch holds entries of one time only. The server refuses a time below the
 * log's last (TimeBehindError, not applied): that is final, never retried.
 */
import { randomUUID } from 'node:crypto';
import { FRAMES_CONTENT_TYPE, encodeFrames } from '../frames.js';
import { ClosedError, SequenceError, TernClientError, TernServerError } from './errors.js';
import { batchIsFull, DEFAULT_BATCH_LIMITS, nextBatchSize, type BatchLimits } from './batch.js';
import { checkedTime } from './entries.js';
import { jsonOf } from './transport.js';
import { toBuffer, type AppendAnswer, type Appended, type EntryData } from './types.js';
import type { TernClient } from './client.js';

/** Producer ids the server accepts (README, Idempotent producer). */
export const PRODUCER_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
/** The header of an append's own time; the append route's own name (the client keeps its copy). */
const TIME_HEADER = 'tern-time-ms';

export interface AppendOptions {
  /**
   * The entry's own time, ms since the Unix epoch (for callers with their own clock or oracle),
   * at least the log's last time (else TimeBehindError, not applied) and at most the server's
   * --max-future-time-ms ahead of its clock. @default the leader's clock
   */
  timeMs?: number;
}

export interface ProducerOptions extends Partial<BatchLimits> {
  /** Retry-safe appends with a producer id and sequence. @default true */
  idempotent?: boolean;
  /** The producer id; keep it (and `startSeq`) to continue a producer after a restart. @default a random UUID */
  producerId?: string;
  /** Sequence of the first entry. @default 0 */
  startSeq?: number;
  /**
   * How long the first entry of a batch waits for others when no request is in flight.
   * 0: only appends made in the same event-loop turn join it; under load batches still form,
   * from the appends made while a request is in flight. @default 0
   */
  lingerMs?: number;
  /** An append gives up after this long, its retries included. @default the client's deadlineMs */
  deadlineMs?: number;
  /** Batches in flight at once when not idempotent (an idempotent producer has one). @default 4 */
  maxInFlight?: number;
}

/** A batch's answer: the id of its first entry and the time all its entries share (see AppendAnswer.timeMs). */
interface BatchAnswer {
  firstId: number;
  timeMs: number | undefined;
}

interface Pending {
  data: Buffer;
  timeMs: number | undefined;
  resolve(id: number, timeMs: number | undefined): void;
  reject(err: unknown): void;
}

/** Counters a caller (the CLI's progress line, a benchmark) may read. */
export interface ProducerStats {
  appended: number;
  batches: number;
  duplicates: number;
  retriedSequences: number;
}

export class Producer {
  readonly producerId: string | undefined;
  readonly idempotent: boolean;
  readonly stats: ProducerStats = { appended: 0, batches: 0, duplicates: 0, retriedSequences: 0 };
  private seq: number;
  private readonly limits: BatchLimits;
  private readonly lingerMs: number;
  private readonly maxInFlight: number;
  private readonly deadlineMs: number | undefined;
  private queue: Pending[] = [];
  private queuedBytes = 0;
  private inFlight = 0;
  /** Cancels the pending linger (a timer, or an immediate for lingerMs 0); undefined when none. */
  private cancelLinger: (() => void) | undefined;
  private lingerDone = false;
  private closing = false;
  private idleWaiters: (() => void)[] = [];
  /** The first sequence of the batches given up with an unknown outcome since the last answered one. */
  private unknownSince: number | undefined;

  constructor(
    private readonly client: TernClient,
    readonly log: string,
    options: ProducerOptions,
    private readonly onClose: () => void,
  ) {
    this.idempotent = options.idempotent ?? true;
    this.producerId = this.idempotent ? (options.producerId ?? randomUUID()) : undefined;
    if (this.producerId !== undefined && !PRODUCER_ID_PATTERN.test(this.producerId)) throw new TernClientError('BAD_ARGUMENT', `producerId must be 1-128 characters of [A-Za-z0-9._:-], got "${this.producerId}"`);
    this.seq = options.startSeq ?? 0;
    if (!Number.isSafeInteger(this.seq) || this.seq < 0) throw new TernClientError('BAD_ARGUMENT', `startSeq must be a non-negative integer, got ${options.startSeq}`);
    this.limits = { maxBatchEntries: options.maxBatchEntries ?? DEFAULT_BATCH_LIMITS.maxBatchEntries, maxBatchBytes: options.maxBatchBytes ?? DEFAULT_BATCH_LIMITS.maxBatchBytes };
    this.lingerMs = options.lingerMs ?? 0;
    this.maxInFlight = this.idempotent ? 1 : Math.max(1, options.maxInFlight ?? 4);
    this.deadlineMs = options.deadlineMs;
  }

  /** The sequence the next batch will carry (idempotent producers). */
  get nextSeq(): number {
    return this.seq;
  }

  /** Appends one entry; resolves with its id once a quorum holds it. */
  append(data: EntryData, options: AppendOptions = {}): Promise<number> {
    return new Promise<number>((resolve, reject) => this.enqueue(data, options, resolve, reject));
  }

  /** Appends one entry as `append` does; resolves with its id and its time. */
  send(data: EntryData, options: AppendOptions = {}): Promise<Appended> {
    return new Promise<Appended>((resolve, reject) => this.enqueue(data, options, (id, timeMs) => resolve(timeMs === undefined ? { id } : { id, timeMs }), reject));
  }

  private enqueue(data: EntryData, options: AppendOptions, resolve: Pending['resolve'], reject: Pending['reject']): void {
    if (this.closing) return reject(new ClosedError('the producer is closed', 'CLOSED', false));
    let buf: Buffer;
    let timeMs: number | undefined;
    try {
      buf = toBuffer(data);
      timeMs = options.timeMs === undefined ? undefined : checkedTime(options.timeMs, 'timeMs');
    } catch (err) {
      return reject(err);
    }
    this.queue.push({ data: buf, timeMs, resolve, reject });
    this.queuedBytes += buf.length;
    if (batchIsFull(this.queue, this.queuedBytes, this.limits)) this.pump();
    else if (!this.cancelLinger && !this.lingerDone) {
      const lingered = () => {
        this.cancelLinger = undefined;
        this.lingerDone = true;
        this.pump();
      };
      // setTimeout(0) waits a millisecond; setImmediate runs once this turn's appends are queued.
      if (this.lingerMs > 0) {
        const timer = setTimeout(lingered, this.lingerMs);
        this.cancelLinger = () => clearTimeout(timer);
      } else {
        const immediate = setImmediate(lingered);
        this.cancelLinger = () => clearImmediate(immediate);
      }
    }
  }

  /** Sends what waits now and resolves once every append made so far is answered. */
  async flush(): Promise<void> {
    this.lingerDone = true;
    this.pump();
    if (this.queue.length === 0 && this.inFlight === 0) return;
    await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /** Flushes, then refuses further appends. */
  async close(): Promise<void> {
    this.closing = true;
    await this.flush();
    this.onClose();
  }

  private pump(): void {
    while (this.queue.length > 0 && this.inFlight < this.maxInFlight && (this.lingerDone || this.closing || batchIsFull(this.queue, this.queuedBytes, this.limits))) {
      const n = nextBatchSize(this.queue, this.limits);
      const batch = this.queue.splice(0, n);
      for (const p of batch) this.queuedBytes -= p.data.length;
      this.inFlight++;
      void this.sendBatch(batch).finally(() => {
        this.inFlight--;
        this.pump();
        this.notifyIdle();
      });
    }
    if (this.queue.length === 0) {
      // The next entry starts a new linger.
      this.lingerDone = false;
      this.cancelLinger?.();
      this.cancelLinger = undefined;
    } else if (this.inFlight >= this.maxInFlight) {
      // Entries waiting behind a batch in flight go as soon as it is answered: they have waited a round trip.
      this.lingerDone = true;
    }
  }

  private notifyIdle(): void {
    if (this.queue.length > 0 || this.inFlight > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  private async sendBatch(batch: Pending[]): Promise<void> {
    try {
      const { firstId, timeMs } = await this.sendWithSequence(batch);
      this.stats.appended += batch.length;
      this.stats.batches++;
      batch.forEach((p, i) => p.resolve(firstId + i, timeMs));
    } catch (err) {
      // The server refuses a batch whole (it is atomic): one entry over a limit must not fail the
      // others that happened to share its request. Halves go on their own (nothing was applied).
      if (batch.length > 1 && err instanceof TernServerError && err.code === 'TOO_LARGE') {
        const half = Math.ceil(batch.length / 2);
        await this.sendBatch(batch.slice(0, half));
        await this.sendBatch(batch.slice(half));
        return;
      }
      for (const p of batch) p.reject(err);
    }
  }

  /** Sends the batch; with an idempotent producer, handles the sequence bookkeeping. Returns the first id and the entries' time. */
  private async sendWithSequence(batch: Pending[]): Promise<BatchAnswer> {
    const n = batch.length;
    const body = n === 1 ? batch[0]!.data : encodeFrames(batch.map((p) => p.data));
    const timeMs = batch[0]!.timeMs;
    const headers: Record<string, string> = { 'content-type': n === 1 ? 'application/octet-stream' : FRAMES_CONTENT_TYPE, ...(timeMs === undefined ? {} : { [TIME_HEADER]: String(timeMs) }) };
    if (!this.idempotent) return this.post(body, headers, 'unsafe');
    for (let realigned = false; ; realigned = true) {
      const seq = this.seq;
      try {
        const answer = await this.post(body, { ...headers, 'tern-producer-id': this.producerId!, 'tern-producer-seq': String(seq) }, 'safe');
        this.seq = seq + n;
        this.unknownSince = undefined;
        return answer;
      } catch (err) {
        // An earlier batch given up as unknown was in fact not applied: the server expects
        // its sequence again. Take it (nothing between was applied) and send this batch there.
        const expected = err instanceof SequenceError && err.code === 'SEQUENCE_GAP' ? err.expectedSeq : undefined;
        if (!realigned && expected !== undefined && this.unknownSince !== undefined && expected >= this.unknownSince && expected < seq) {
          this.seq = expected;
          this.unknownSince = undefined;
          this.stats.retriedSequences++;
          continue;
        }
        // Unknown outcome: count the sequences as used, so a later batch never reuses them
        // for other data (a gap answer realigns, above). Certainly not applied: reuse them.
        if ((err as TernClientError).maybeApplied !== false) {
          this.unknownSince ??= seq;
          this.seq = seq + n;
        }
        throw err;
      }
    }
  }

  private async post(body: Buffer | Buffer[], headers: Record<string, string>, mode: 'safe' | 'unsafe'): Promise<BatchAnswer> {
    const path = `/v1/logs/${encodeURIComponent(this.log)}/entries`;
    const answer = await this.client.call({ leaderOf: this.log, mode, ...(this.deadlineMs !== undefined ? { deadlineMs: this.deadlineMs } : {}) }, async (url) =>
    {
      const sent = await this.client.send(url, path, { method: 'POST', headers, body });
      const parsed = jsonOf<AppendAnswer>(sent);
      this.client.noteLeader(this.log, sent);
      return parsed;
    });
    if (answer.duplicate) this.stats.duplicates++;
    const firstId = answer.firstId ?? answer.id;
    if (typeof firstId !== 'number') throw new TernClientError('BAD_ANSWER', 'append answer without an id', { maybeApplied: true });
    return { firstId, timeMs: answer.timeMs };
  }
}
