/**
 * TernClient: the typed client of a Tern cluster. It finds each log's leader
 * (from the status answer, which names it; when that is unknown it sticks to
 * the replica that last succeeded), retries transient failures with
 * exponential backoff and full jitter up to a deadline, honours Retry-After,
 * and gives typed errors (src/client/errors.ts).
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { ClosedError, TernClientError, UnavailableError } from './errors.js';
import { looksLikeUrls, normalizeUrl, parseClusterFile, parseUrlList, type ClusterDescription, type ReplicaAddress } from './cluster-file.js';
import { DEFAULT_BACKOFF, leaderMayHaveMoved, retryDelayMs, shouldRetry, type BackoffOptions, type RetryMode } from './retry.js';
import { header, jsonOf, throwIfError, Transport, type Answer } from './transport.js';
import type { Entry, LogStatus, ReadPage, ReaderInfo, ReaderStatus, ReadStart, RecoverAnswer, RetentionPolicy, TimeOffset } from './types.js';
import { checkedTime, ENTRIES_ACCEPT, entriesOf, startQuery } from './entries.js';
import { Producer, type ProducerOptions } from './producer.js';
import { tail, type TailOptions } from './tail.js';

/** Where `TernClient.connect` looks when given neither urls nor cluster: what `tern cluster` writes. */
export const DEFAULT_CLUSTER_FILE = '.tern/cluster.json';

export interface ClientOptions {
  /** Client URLs of the replicas (any subset works; all three is best). */
  urls?: readonly string[];
  /** A cluster.json path, or comma-separated URLs. @default ".tern/cluster.json" (when `urls` is not given) */
  cluster?: string;
  /** Bearer token for clusters that require one (`--tokens-file`). */
  token?: string;
  /** The CA that verifies a TLS cluster: PEM text, or a path to a PEM file. @default cluster.json's `tls.ca` */
  ca?: string | Buffer;
  /** One request unanswered this long fails (and is retried when it may be). @default 10000 */
  requestTimeoutMs?: number;
  /** An operation, its retries included, gives up after this long. @default 30000 */
  deadlineMs?: number;
  /** Waits between retries. @default {initialMs: 50, maxMs: 2000} */
  backoff?: Partial<BackoffOptions>;
  /** Keep-alive connections per replica. @default 16 */
  connections?: number;
}

/** Options after defaults: frozen, read everywhere. */
export interface ResolvedClientOptions {
  replicas: ReplicaAddress[];
  token: string | undefined;
  caPem: string | Buffer | undefined;
  requestTimeoutMs: number;
  deadlineMs: number;
  backoff: BackoffOptions;
  connections: number;
}

const DEFAULTS = { requestTimeoutMs: 10_000, deadlineMs: 30_000, connections: 16 } as const;
/** The header of an append's answer that names the replica that led the log for it. */
const LEADER_HEADER = 'tern-leader';
/** A status or /healthz asked only to find a leader gives up after this (the real request follows anyway). */
const LOOKUP_TIMEOUT_MS = 2_000;
/** Handoff and recover wait for a recovery on the new leader (fences, etcd transactions): this many request timeouts. */
const LONG_COMMAND_TIMEOUTS = 3;

function readCa(ca: string | Buffer): string | Buffer {
  if (Buffer.isBuffer(ca) || ca.includes('-----BEGIN')) return ca;
  return readFileSync(ca);
}

function describeCluster(options: ClientOptions, readText: (path: string) => string): ClusterDescription {
  if (options.urls && options.urls.length > 0) return { replicas: options.urls.map((u) => ({ url: normalizeUrl(u) })) };
  const cluster = options.cluster ?? DEFAULT_CLUSTER_FILE;
  if (looksLikeUrls(cluster)) return { replicas: parseUrlList(cluster) };
  let text: string;
  try {
    text = readText(cluster);
  } catch (err) {
    throw new TernClientError('BAD_ARGUMENT', `cannot read ${cluster}: ${(err as Error).message} (start a local cluster with \`tern cluster\`, or name the replicas with --cluster URLs)`, { cause: err });
  }
  return parseClusterFile(text, cluster);
}

/** Validates and completes options; reads the cluster file and CA named (synchronously). */
export function resolveClientOptions(options: ClientOptions, readText: (path: string) => string = (p) => readFileSync(p, 'utf8')): ResolvedClientOptions {
  const desc = describeCluster(options, readText);
  const positive = (name: string, v: number | undefined, d: number) => {
    const x = v ?? d;
    if (!Number.isFinite(x) || x <= 0) throw new TernClientError('BAD_ARGUMENT', `${name} must be a positive number, got ${v}`);
    return x;
  };
  const ca = options.ca ?? desc.caFile;
  return Object.freeze({
    replicas: desc.replicas,
    token: options.token,
    caPem: ca === undefined ? undefined : readCa(ca),
    requestTimeoutMs: positive('requestTimeoutMs', options.requestTimeoutMs, DEFAULTS.requestTimeoutMs),
    deadlineMs: positive('deadlineMs', options.deadlineMs, DEFAULTS.deadlineMs),
    backoff: Object.freeze({ ...DEFAULT_BACKOFF, ...options.backoff }),
    connections: positive('connections', options.connections, DEFAULTS.connections),
  });
}

/** A client from replica URLs (`createClient(['http://127.0.0.1:7001', ...])`) or options (`createClient({urls})`, `createClient({cluster})`). */
export function createClient(urlsOrOptions: readonly string[] | ClientOptions, options: ClientOptions = {}): TernClient {
  const merged = Array.isArray(urlsOrOptions) ? { ...options, urls: urlsOrOptions as readonly string[] } : { ...(urlsOrOptions as ClientOptions), ...options };
  return new TernClient(resolveClientOptions(merged));
}

/** How one call is routed and retried. */
export interface CallPolicy {
  /** The log whose leader should take it; undefined: any replica will do. */
  leaderOf?: string;
  mode: RetryMode;
  /** Give up after this long (ms from now). */
  deadlineMs?: number;
  signal?: AbortSignal;
}

export class TernClient {
  readonly options: ResolvedClientOptions;
  /** The replicas' client URLs, in the order given. */
  readonly urls: readonly string[];
  /** @internal */
  readonly transport: Transport;
  /** Each log's leader URL, as last learned. */
  private readonly leaders = new Map<string, string>();
  /** Replica id -> URL, from cluster.json or the replicas' /healthz. */
  private readonly idToUrl = new Map<string, string>();
  private idsLearned: Promise<void> | undefined;
  /** The replica that answered last: where calls for any replica go first. */
  private preferred = 0;
  private closed = false;
  private readonly producers = new Set<Producer>();

  constructor(options: ResolvedClientOptions) {
    this.options = options;
    this.urls = options.replicas.map((r) => r.url);
    this.transport = new Transport({ token: options.token, caPem: options.caPem, connections: options.connections });
    for (const r of options.replicas) if (r.id) this.idToUrl.set(r.id, r.url);
    this.preferred = Math.floor(Math.random() * options.replicas.length);
  }

  /** A client from a cluster.json (default `.tern/cluster.json`) or `urls`, read without blocking. */
  static async connect(options: ClientOptions = {}): Promise<TernClient> {
    if (options.urls?.length || (options.cluster && looksLikeUrls(options.cluster))) return createClient(options);
    const path = options.cluster ?? DEFAULT_CLUSTER_FILE;
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      throw new TernClientError('BAD_ARGUMENT', `cannot read ${path}: ${(err as Error).message} (start a local cluster with \`tern cluster\`, or name the replicas with --cluster URLs)`, { cause: err });
    }
    return new TernClient(resolveClientOptions({ ...options, cluster: path }, () => text));
  }


  // ---- log commands --------------------------------------------------------

  /**
   * Creates the log (idempotent); `created` is false when it existed. With
   * `retention`, sets its retention policy: also on a log that existed, whose
   * policy it replaces (`{}` clears it).
   */
  async createLog(log: string, options: { retention?: RetentionPolicy } = {}): Promise<LogStatus & { created: boolean }> {
    const body = options.retention === undefined ? { method: 'PUT' as const } : jsonBody({ retention: options.retention }, 'PUT');
    const answer = await this.call({ mode: 'safe' }, async (url) => {
      const a = await this.send(url, `/v1/logs/${enc(log)}`, body);
      throwIfError(a);
      return a;
    });
    return { ...jsonOf<LogStatus>(answer), created: answer.status === 201 };
  }

  /**
   * Replaces the retention policy of an existing log (`{}` clears it). A log
   * that does not exist is LogNotFoundError, never created (a log deleted
   * between the check and the change is created again, with the policy).
   */
  async setRetention(log: string, retention: RetentionPolicy): Promise<LogStatus> {
    await this.status(log);
    const { created: _, ...status } = await this.createLog(log, { retention });
    return status;
  }

  /** Every log's name, sorted, read a page at a time (GET /v1/logs?after=...). */
  async listLogs(): Promise<string[]> {
    const names: string[] = [];
    for (let after: string | undefined; ; ) {
      const page = await this.json<{ logs: string[]; next?: string }>({ mode: 'safe' }, after === undefined ? '/v1/logs' : `/v1/logs?after=${enc(after)}`);
      names.push(...page.logs);
      if (page.next === undefined) return names;
      after = page.next;
    }
  }

  /** The log's status as a replica knows it; also refreshes the cached leader. */
  async status(log: string): Promise<LogStatus> {
    const status = await this.json<LogStatus>({ mode: 'safe' }, `/v1/logs/${enc(log)}`);
    this.learnLeader(log, status.leader);
    return status;
  }

  /** Deletes the log and its entries everywhere. Not retried once it may have been sent (a repeat would answer 404). */
  async deleteLog(log: string): Promise<{ log: string; deleted: boolean }> {
    this.leaders.delete(log);
    return this.json({ mode: 'unsafe' }, `/v1/logs/${enc(log)}`, { method: 'DELETE' });
  }

  /** Makes ids below `beforeId` unreadable (retention). */
  async truncate(log: string, beforeId: number): Promise<LogStatus> {
    return this.json({ mode: 'safe' }, `/v1/logs/${enc(log)}/truncate`, jsonBody({ beforeId }));
  }

  /** Moves the log's leadership to replica `to` (an id such as r2); answers once it leads. */
  async handoff(log: string, to: string): Promise<LogStatus> {
    // Handoff waits for a recovery on the new leader: allow it more than a plain request.
    const status = await this.json<LogStatus>({ mode: 'unsafe', leaderOf: log }, `/v1/logs/${enc(log)}/handoff`, { ...jsonBody({ to }), timeoutMs: this.options.requestTimeoutMs * LONG_COMMAND_TIMEOUTS });
    this.learnLeader(log, status.leader);
    return status;
  }

  /** UNSAFE: forces recovery of a log that cannot gather two counted fence answers, accepting data loss (README). */
  async recover(log: string, options: { acceptDataLoss: true }): Promise<RecoverAnswer> {
    if (options?.acceptDataLoss !== true) throw new TernClientError('BAD_ARGUMENT', 'recover needs { acceptDataLoss: true }');
    return this.json({ mode: 'unsafe' }, `/v1/logs/${enc(log)}/recover`, { ...jsonBody({ acceptDataLoss: true }), timeoutMs: this.options.requestTimeoutMs * LONG_COMMAND_TIMEOUTS });
  }

  // ---- reads ---------------------------------------------------------------

  /**
   * One page of committed entries from `from` (default 0) or from the first
   * entry at or after `fromTime`, at most `limit` (server default 1000);
   * `waitMs` holds an empty read. Read as timed frames: each entry has its time.
   */
  async read(log: string, options: ReadStart & { limit?: number; waitMs?: number; signal?: AbortSignal } = {}): Promise<ReadPage> {
    const q = startQuery(options);
    if (options.limit !== undefined) q.set('limit', String(options.limit));
    if (options.waitMs) q.set('waitMs', String(options.waitMs));
    const timeoutMs = this.options.requestTimeoutMs + (options.waitMs ?? 0);
    const answer = await this.call({ mode: 'safe', signal: options.signal }, async (url) => {
      const a = await this.send(url, `/v1/logs/${enc(log)}/entries?${q}`, { headers: { accept: ENTRIES_ACCEPT }, timeoutMs, signal: options.signal });
      throwIfError(a);
      return a;
    });
    const fromId = Number(header(answer.headers, 'tern-from-id') ?? options.from ?? 0);
    return { entries: entriesOf(answer, fromId), nextId: Number(header(answer.headers, 'tern-next-id')), committedId: Number(header(answer.headers, 'tern-committed-id')) };
  }

  /**
   * Pages from `from` (or `fromTime`) until `limit` entries (default: no limit) or the commit
   * point at the time of each page is reached. `pageSize` is each request's limit.
   */
  async *pages(log: string, options: ReadStart & { limit?: number; pageSize?: number; signal?: AbortSignal } = {}): AsyncGenerator<ReadPage> {
    let start: ReadStart = { from: options.from, fromTime: options.fromTime };
    let left = options.limit ?? Infinity;
    while (left > 0) {
      const page = await this.read(log, { ...start, limit: Math.min(left, options.pageSize ?? 1000), signal: options.signal });
      if (page.entries.length === 0) return;
      yield page;
      left -= page.entries.length;
      // A time says where the first page starts; the pages after it follow by id.
      start = { from: page.nextId };
      if (page.nextId > page.committedId) return;
    }
  }

  /** The entries of `pages`, one by one. */
  async *entries(log: string, options: ReadStart & { limit?: number; pageSize?: number; signal?: AbortSignal } = {}): AsyncGenerator<Entry> {
    for await (const page of this.pages(log, options)) yield* page.entries;
  }

  /**
   * The id of the first retained, committed entry whose time is at least
   * `timeMs`, with that entry's time; when there is none yet, the next id to
   * be committed and `timeMs: null` (what a tail from that time starts at).
   */
  async offsetForTime(log: string, timeMs: number): Promise<TimeOffset> {
    return this.json({ mode: 'safe' }, `/v1/logs/${enc(log)}/offsets?time=${checkedTime(timeMs, 'timeMs')}`);
  }

  /**
   * Follows the log from `from` (default 0), or from the first entry at or
   * after `fromTime`, on the streaming endpoint, for ever: after a disconnect
   * or failover it resumes from the last id seen + 1 on the next replica. End
   * it with `break` or `options.signal`.
   */
  tail(log: string, options: TailOptions = {}): AsyncGenerator<Entry> {
    this.checkOpen();
    return tail(this, log, options);
  }

  // ---- named readers -------------------------------------------------------

  /**
   * Commits the position of the log's reader `name` (created on first commit):
   * it has read every id below `nextId` (at most the next id to be committed).
   * `holdsRetention` (default false, on every commit: a commit without it
   * releases what the reader held) stops truncation below `nextId`.
   */
  async commitReader(log: string, name: string, nextId: number, options: { holdsRetention?: boolean } = {}): Promise<ReaderInfo> {
    return this.json({ mode: 'safe' }, readerPath(log, name), jsonBody({ nextId, holdsRetention: options.holdsRetention ?? false }, 'PUT'));
  }

  /** The log's reader `name`, with its lag in entries; ReaderNotFoundError if it has none of that name. */
  async reader(log: string, name: string): Promise<ReaderStatus> {
    return this.json({ mode: 'safe' }, readerPath(log, name));
  }

  /** The log's readers, by name. */
  async readers(log: string): Promise<ReaderStatus[]> {
    return (await this.json<{ readers: ReaderStatus[] }>({ mode: 'safe' }, `/v1/logs/${enc(log)}/readers`)).readers;
  }

  /** Deletes the log's reader `name`, releasing the retention it held. Not retried once it may have been sent (a repeat would answer 404). */
  async deleteReader(log: string, name: string): Promise<{ log: string; reader: string; deleted: boolean }> {
    return this.json({ mode: 'unsafe' }, readerPath(log, name), { method: 'DELETE' });
  }

  // ---- appends -------------------------------------------------------------

  /** A producer for `log`: idempotent by default (a random producer id, retries never duplicate), batching concurrent appends. */
  producer(log: string, options: ProducerOptions = {}): Producer {
    this.checkOpen();
    const p = new Producer(this, log, options, () => this.producers.delete(p));
    this.producers.add(p);
    return p;
  }

  /** Flushes every producer, then closes the connections. */
  async close(): Promise<void> {
    if (this.closed) return;
    await Promise.allSettled([...this.producers].map((p) => p.close()));
    this.closed = true;
    await this.transport.close();
  }

  // ---- routing and retries (used by Producer and tail) --------------------

  /** @internal Runs `attempt` against a replica, retrying per `policy` until an answer or the deadline. */
  async call<T>(policy: CallPolicy, attempt: (url: string) => Promise<T>): Promise<T> {
    const deadline = Date.now() + (policy.deadlineMs ?? this.options.deadlineMs);
    let maybeApplied = false;
    for (let n = 0; ; n++) {
      this.checkOpen();
      // After a failure `preferred` has moved on to the next replica (below).
      const url = policy.leaderOf !== undefined ? await this.leaderUrl(policy.leaderOf) : this.replicaUrl(0);
      try {
        const result = await attempt(url);
        if (policy.leaderOf !== undefined && !this.leaders.has(policy.leaderOf)) this.leaders.set(policy.leaderOf, url);
        this.preferred = this.urls.indexOf(url);
        return result;
      } catch (err) {
        if (policy.signal?.aborted) throw new ClosedError('aborted', 'ABORTED', maybeApplied || (err as TernClientError).maybeApplied !== false);
        if (policy.leaderOf !== undefined && leaderMayHaveMoved(err)) this.leaders.delete(policy.leaderOf);
        if (!shouldRetry(err, policy.mode)) throw err;
        if ((err as TernClientError).maybeApplied !== false) maybeApplied = true;
        const wait = retryDelayMs(err, n, this.options.backoff);
        if (Date.now() + wait >= deadline) {
          throw new UnavailableError(`gave up after ${n + 1} attempts: ${(err as Error).message}`, { cause: err, maybeApplied: policy.mode === 'safe' ? maybeApplied : (err as TernClientError).maybeApplied === true, ...(err instanceof TernClientError && err.status !== undefined ? { status: err.status } : {}) });
        }
        // Another replica next time, unless the leader is known.
        this.preferred = (this.urls.indexOf(url) + 1) % this.urls.length;
        await sleep(wait, undefined, policy.signal ? { signal: policy.signal } : undefined).catch(() => undefined);
      }
    }
  }

  /** @internal One request to one replica, with the client's timeout. */
  send(url: string, path: string, options: { method?: 'GET' | 'PUT' | 'POST' | 'DELETE'; headers?: Record<string, string>; body?: Buffer | Buffer[] | string; timeoutMs?: number; signal?: AbortSignal } = {}): Promise<Answer> {
    return this.transport.request(url, path, { ...options, timeoutMs: options.timeoutMs ?? this.options.requestTimeoutMs });
  }

  /** @internal A replica for a call any replica serves: the last that answered (`attempt` 0), then the others in turn. */
  replicaUrl(attempt: number): string {
    const urls = this.urls;
    return urls[(this.preferred + attempt) % urls.length]!;
  }

  /** @internal The leader of `log` as known, else learned from a status answer, else any replica (which forwards). */
  async leaderUrl(log: string): Promise<string> {
    const known = this.leaders.get(log);
    if (known) return known;
    const fallback = this.replicaUrl(0);
    try {
      const answer = await this.send(fallback, `/v1/logs/${enc(log)}`, { timeoutMs: Math.min(this.options.requestTimeoutMs, LOOKUP_TIMEOUT_MS) });
      if (answer.status === 200) {
        const leader = (JSON.parse(answer.body.toString('utf8')) as LogStatus).leader;
        if (leader) {
          await this.learnIds();
          const url = this.idToUrl.get(leader);
          if (url) {
            this.leaders.set(log, url);
            return url;
          }
        }
      }
    } catch {
      // The attempt itself will meet the same failure and retry.
    }
    return fallback;
  }

  /**
   * @internal Learns the log's leader from an append's answer (its Tern-Leader header), so that the
   * next append goes there instead of through a replica that forwards it: after a failover or
   * handoff the cached leader would otherwise keep forwarding, answering fine, and never be replaced.
   */
  noteLeader(log: string, answer: Answer): void {
    const leader = header(answer.headers, LEADER_HEADER);
    if (leader === undefined) return;
    if (this.idToUrl.has(leader)) this.learnLeader(log, leader);
    else void this.learnIds().then(() => this.learnLeader(log, leader));
  }

  /** @internal Forget the cached leader (after a failure that says it moved). */
  forgetLeader(log: string): void {
    this.leaders.delete(log);
  }

  /** @internal */
  checkOpen(): void {
    if (this.closed) throw new ClosedError('the client is closed');
  }

  private learnLeader(log: string, leader: string | null): void {
    const url = leader ? this.idToUrl.get(leader) : undefined;
    if (url) this.leaders.set(log, url);
  }

  /** Learns replica ids from /healthz when the client was given bare URLs. */
  private learnIds(): Promise<void> {
    if (this.idToUrl.size === this.urls.length) return Promise.resolve();
    this.idsLearned ??= Promise.allSettled(
      this.urls.map(async (url) => {
        const answer = await this.send(url, '/healthz', { timeoutMs: LOOKUP_TIMEOUT_MS });
        const id = (JSON.parse(answer.body.toString('utf8')) as { id?: unknown }).id;
        if (typeof id === 'string') this.idToUrl.set(id, url);
      }),
    ).then(() => {
      // Ask again next time for those that did not answer.
      this.idsLearned = undefined;
    });
    return this.idsLearned;
  }

  private async json<T>(policy: CallPolicy, path: string, options: { method?: 'GET' | 'PUT' | 'POST' | 'DELETE'; headers?: Record<string, string>; body?: string; timeoutMs?: number } = {}): Promise<T> {
    return this.call(policy, async (url) => jsonOf<T>(await this.send(url, path, options)));
  }
}

function enc(log: string): string {
  return encodeURIComponent(log);
}

function readerPath(log: string, name: string): string {
  return `/v1/logs/${enc(log)}/readers/${enc(name)}`;
}

function jsonBody<M extends 'POST' | 'PUT'>(value: unknown, method: M = 'POST' as M): { method: M; headers: Record<string, string>; body: string } {
  return { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(value) };
}
