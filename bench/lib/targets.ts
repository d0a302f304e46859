/**
 * The systems the side-by-side benchmark (bench/compare.ts) drives, behind
 * one interface, so that one driver, one workload definition and one
 * histogram serve them all:
 *
 * - tern-leader: every append to the log's leader (undici Pool, one
 *   connection per producer, application/octet-stream; a batch is one
 *   application/vnd.tern.frames body: each frame a u32 big-endian length,
 *   then the bytes), acked (200) once two of three replicas hold it;
 * - tern-spread: the same, round-robin over the three replicas (2 of 3
 *   appends are forwarded to the leader by the replica that got them);
 * - nats: JetStream `js.publish(subject, data)` on a memory stream with
 *   num_replicas 3, which resolves with the PubAck once the stream's quorum
 *   holds the message; a batch is N publishes sent without awaiting each,
 *   then all acks awaited (NATS async publishing). One client connection,
 *   to the stream leader's node (the best case, like tern-leader);
 * - nats-spread: the same, round-robin over connections to the three nodes
 *   (2 of 3 publishes reach the stream leader over a cluster route), like
 *   tern-spread;
 * - ceiling: the same HTTP as tern-leader against a fastify process that
 *   answers at once without storing anything (bench/ceiling-server.ts).
 */
import { connect, type JetStreamClient, type NatsConnection } from 'nats';
import { Pool } from 'undici';
import { encodeFrames, FRAMES_CONTENT_TYPE } from '../../src/frames.js';
import { append as httpAppend, OCTET_STREAM_HEADERS } from './http.js';
import type { TailProbe, TailReaders } from './tail-latency.js';

export type SystemName = 'tern-leader' | 'tern-spread' | 'nats' | 'nats-spread' | 'ceiling';
export const SYSTEM_NAMES: readonly SystemName[] = ['tern-leader', 'tern-spread', 'nats', 'nats-spread', 'ceiling'];

/** What the workload calls: one entry, or an atomic batch of entries; resolves on the ack, rejects with an AppendError. */
export interface Target {
  append(data: Buffer): Promise<void>;
  appendBatch(entries: Buffer[]): Promise<void>;
}

/** A failed append; `key` groups failures in the report ("503 BUFFER_FULL", "0 UND_ERR_SOCKET", "nats TIMEOUT"). */
export class AppendError extends Error {
  constructor(readonly key: string) {
    super(key);
  }
}

/** A target opened for one run: its connections are closed (or destroyed, to break requests in flight) after it. */
export interface OpenTarget extends Target {
  close(): Promise<void>;
  destroy(): Promise<void>;
}

/** One system under test, set up once; `open` is called for each run of a scenario. */
export interface System {
  readonly name: SystemName;
  /** Opens connections for one run against this scenario's log/subject, sized for `connections` concurrent requests. */
  open(scenarioId: string, connections: number): Promise<OpenTarget>;
  /** Entries counted as acked by the runs so far: the system's own count must not be lower (checked by `verify`). */
  recordAcked(scenarioId: string, entries: number): void;
  /**
   * After a run: waits until the system's background work of the run is done (Tern: flushed to
   * the object store; NATS: the stream purged), so it does not leak into the next run. Resolves
   * to a note when it gave up waiting.
   */
  settle(scenarioId: string): Promise<string | undefined>;
  /** Checks that the system holds at least the acked entries; returns a line for the report. */
  verify(scenarioId: string): Promise<{ ok: boolean; line: string }>;
  /** Server processes (name -> pid), for CPU figures. */
  pids(): Record<string, number | undefined>;
  /** A line describing where requests go (for the progress output). */
  describe(scenarioId: string): string;
  /**
   * Tail scenarios: opens this system's readers of the scenario's log/subject (entries from now
   * on, each handed to `probe`), named `reader@leader` and `reader@follower`. A system without
   * it (the ceiling, which stores nothing) sits the tail scenarios out.
   */
  openReaders?(scenarioId: string, probe: TailProbe): Promise<TailReaders>;
}

// ---------------------------------------------------------------------------
// HTTP (Tern and the ceiling)

const REQUEST_TIMEOUT_MS = 30_000;

function newPool(url: string, connections: number): Pool {
  return new Pool(url, {
    connections,
    pipelining: 1,
    keepAliveTimeout: 60_000,
    headersTimeout: REQUEST_TIMEOUT_MS,
    bodyTimeout: REQUEST_TIMEOUT_MS,
  });
}

const FRAMES_HEADERS = { 'content-type': FRAMES_CONTENT_TYPE };

/** Appends over HTTP to one path on one or more pools (round-robin). A batch body is encoded once per entries array. */
export class HttpTarget implements OpenTarget {
  private next = 0;
  private readonly bodies = new WeakMap<Buffer[], Buffer>();

  constructor(
    private readonly pools: Pool[],
    private readonly path: string,
  ) {}

  static open(urls: string[], path: string, connections: number): HttpTarget {
    return new HttpTarget(
      urls.map((u) => newPool(u, connections)),
      path,
    );
  }

  private pool(): Pool {
    return this.pools.length === 1 ? this.pools[0]! : this.pools[this.next++ % this.pools.length]!;
  }

  async append(data: Buffer): Promise<void> {
    const key = await httpAppend(this.pool(), this.path, data, OCTET_STREAM_HEADERS);
    if (key !== undefined) throw new AppendError(key);
  }

  async appendBatch(entries: Buffer[]): Promise<void> {
    let body = this.bodies.get(entries);
    if (!body) {
      body = Buffer.concat(encodeFrames(entries));
      this.bodies.set(entries, body);
    }
    const key = await httpAppend(this.pool(), this.path, body, FRAMES_HEADERS);
    if (key !== undefined) throw new AppendError(key);
  }

  async close(): Promise<void> {
    await Promise.all(this.pools.map((p) => p.close().catch(() => undefined)));
  }

  async destroy(): Promise<void> {
    await Promise.all(this.pools.map((p) => p.destroy().catch(() => undefined)));
  }
}

// ---------------------------------------------------------------------------
// NATS JetStream

function natsKey(err: unknown): string {
  const e = err as { code?: string | number; message?: string };
  return `nats ${e.code ?? e.message ?? String(err)}`;
}

/** One connection to the node at `server` and no other (no reconnecting elsewhere: the run should fail loudly instead). */
export function connectToNode(server: string, name: string): Promise<NatsConnection> {
  return connect({ servers: [server], noRandomize: true, ignoreClusterUpdates: true, reconnect: false, name });
}

/** JetStream publishes over one connection per node given, round-robin over them as tern-spread goes over the replicas. */
export class NatsTarget implements OpenTarget {
  private readonly js: JetStreamClient[];
  private next = 0;

  private constructor(
    private readonly conns: NatsConnection[],
    private readonly subject: string,
  ) {
    this.js = conns.map((nc) => nc.jetstream({ timeout: REQUEST_TIMEOUT_MS }));
  }

  static async open(servers: readonly string[], subject: string): Promise<NatsTarget> {
    const conns: NatsConnection[] = [];
    try {
      for (const server of servers) conns.push(await connectToNode(server, 'tern-compare'));
    } catch (err) {
      await Promise.all(conns.map((nc) => nc.close().catch(() => undefined)));
      throw err;
    }
    return new NatsTarget(conns, subject);
  }

  private client(): JetStreamClient {
    return this.js.length === 1 ? this.js[0]! : this.js[this.next++ % this.js.length]!;
  }

  async append(data: Buffer): Promise<void> {
    try {
      await this.client().publish(this.subject, data);
    } catch (err) {
      throw new AppendError(natsKey(err));
    }
  }

  async appendBatch(entries: Buffer[]): Promise<void> {
    // Async publishing: every publish goes out before the first ack is awaited.
    const js = this.client();
    const acks = entries.map((e) => js.publish(this.subject, e));
    const results = await Promise.allSettled(acks);
    for (const r of results) if (r.status === 'rejected') throw new AppendError(natsKey(r.reason));
  }

  async close(): Promise<void> {
    await Promise.all(this.conns.map((nc) => nc.close().catch(() => undefined)));
  }

  async destroy(): Promise<void> {
    await this.close();
  }
}
