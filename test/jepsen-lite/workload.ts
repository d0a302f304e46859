/**
 * The workload: concurrent appenders and readers over HTTP, each operation
 * recorded with its invoke and complete time (monotonic ms since the run
 * began), the replica it went to and its outcome:
 *
 *   ok    the server answered success (appends carry the id)
 *   fail  the server said, before applying, that it did not apply it
 *   info  unknown: a timeout, a broken connection, or an error that says the
 *         append may still appear (maybeApplied)
 *
 * A plain appender never retries with the same value: every attempt is a new
 * operation with a new value `<process>.<seq>:<crc32 hex>`, so the checker can
 * tell every value's one origin and spot a corrupted one. An idempotent
 * appender appends through the client's producer (src/client), which retries
 * every indeterminate attempt with the same producer sequence until the
 * server answers: one operation per value however many attempts it took, and
 * the checker's `duplicated` anomaly catches any retry that was applied twice.
 *
 * A time-seeking reader per log (and one for the idle logs) seeks by time:
 * it picks a time at or between the times it has seen (acknowledged appends'
 * answers, its own reads), or before the first or after the last, and asks a
 * random replica `offsets?time=` and `entries?fromTime=` for it; the checker
 * judges each answer against the final log (bad-seek).
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { crc32 } from 'node:zlib';
import { Agent, request } from 'undici';
import { createClient, type Producer, type TernClient } from '../../src/client/index.js';
import type { AppendOp, Entry, Op, ReadOp, SeekOp } from './checker.js';

export interface Endpoint {
  id: string;
  url: string;
}

/** How the appending clients append: plain appends, the client's idempotent producer, or half of each (odd clients idempotent). */
export type ProducerMode = 'plain' | 'idempotent' | 'mixed';
export const PRODUCER_MODES: readonly ProducerMode[] = ['plain', 'idempotent', 'mixed'];

/**
 * How long an idempotent append keeps retrying before it gives up (and is
 * recorded `info`): longer than any fault window plus the time a log takes to
 * serve again, so every such append gets an answer.
 */
const IDEMPOTENT_DEADLINE_MS = 60_000;

export interface WorkloadOptions {
  logs: readonly string[];
  replicas: readonly Endpoint[];
  /** Appending clients per log. */
  clientsPerLog: number;
  /** Pause between one client's operations, so the run records faults rather than saturating two cores. */
  thinkMs: number;
  appendTimeoutMs: number;
  random: () => number;
  /** The CA of a TLS cluster, which the clients must trust. */
  ca?: string;
  producers: ProducerMode;
  /**
   * Logs appended to rarely, so that each sits idle long enough to quiesce
   * and is then woken by an append, many times over a run: two clients (the
   * first plain, the second as `producers` says) each append to one of them
   * chosen at random every `idleEveryMs`, so a log's idle gaps are random
   * (geometric), some shorter than the quiescence delay and most longer.
   */
  idleLogs?: readonly string[];
  idleEveryMs?: number;
}

/** How many clients append to the idle logs, each to one chosen at random every `idleEveryMs`. */
export const IDLE_CLIENTS = 2;

/** A time-seeking reader's pause between two seeks (each an offsets?time= and an entries?fromTime=). */
const SEEK_EVERY_MS = 250;
/** How many entries a fromTime read asks for: the first is what the checker judges, the rest are read like any read. */
const SEEK_READ_LIMIT = 20;
/** How far before the first time seen, or after the last, a seek may ask (ms). */
const SEEK_OUTSIDE_MS = 5000;

/**
 * The entry times a log's seeker has seen, and the times it seeks: at a
 * time seen (an entry's own), between two, before the first or after the last.
 */
export class SeenTimes {
  private readonly times: number[] = [];
  private lowest = Infinity;
  private highest = -Infinity;

  add(timeMs: number): void {
    this.times.push(timeMs);
    this.lowest = Math.min(this.lowest, timeMs);
    this.highest = Math.max(this.highest, timeMs);
  }

  /** A time to seek; with none seen yet, about now (the leaders' clocks are this machine's). */
  pick(random: () => number): number {
    const any = () => this.times[Math.floor(random() * this.times.length)]!;
    const outside = 1 + Math.floor(random() * SEEK_OUTSIDE_MS);
    if (this.times.length === 0) return Date.now() - SEEK_OUTSIDE_MS + outside;
    const r = random();
    if (r < 0.1) return Math.max(0, this.lowest - outside);
    if (r < 0.2) return this.highest + outside;
    if (r < 0.6) return any();
    const [a, b] = [any(), any()];
    return Math.min(a, b) + Math.floor(random() * (Math.abs(a - b) + 1));
  }
}

/** Codes that the server documents as "refused before it got an id" when maybeApplied is absent. */
const NOT_APPLIED = new Set(['BAD_REQUEST', 'LOG_NOT_FOUND', 'TOO_LARGE', 'UNSUPPORTED_MEDIA_TYPE', 'NO_QUORUM', 'BUFFER_FULL', 'NOT_READY']);

/**
 * The server refused a producer's sequence (SEQUENCE_GAP or SEQUENCE_STALE):
 * it no longer remembers the producer as the producer remembers itself, which
 * only a loss outside the promise explains (a kill-all of a log not quiesced).
 * The appender goes on with a new producer; the run judges whether a kill-all
 * explains it (run.ts).
 */
export const forgotten = (op: AppendOp): boolean => op.error === 'SEQUENCE_GAP' || op.error === 'SEQUENCE_STALE';

function signal(): { next: Promise<void>; changed(): void } {
  let changed!: () => void;
  const next = new Promise<void>((resolve) => (changed = resolve));
  return { next, changed };
}

export function valueFor(process: string, seq: number): string {
  const body = `${process}.${seq}`;
  return `${body}:${crc32(body).toString(16).padStart(8, '0')}`;
}

/** A value as the checker expects it, or a marker that makes a corrupted one stand out as a phantom. */
export function decodeValue(data: string): string {
  const bytes = Buffer.from(data, 'base64').toString('utf8');
  const [body, sum] = bytes.split(':');
  return body !== undefined && sum === crc32(body).toString(16).padStart(8, '0') ? bytes : `CORRUPT(${bytes})`;
}

export class History {
  readonly ops: Op[] = [];
  private readonly t0 = performance.now();
  private readonly out: WriteStream | undefined;

  constructor(path?: string) {
    this.out = path ? createWriteStream(path) : undefined;
  }

  now(): number {
    return Math.round((performance.now() - this.t0) * 1000) / 1000;
  }

  record(op: Op): void {
    this.ops.push(op);
    this.out?.write(JSON.stringify(op) + '\n');
  }

  close(): Promise<void> {
    return new Promise((resolve) => (this.out ? this.out.end(resolve) : resolve()));
  }
}

export class Workload {
  private running = false;
  private readonly tasks: Promise<void>[] = [];
  private readonly agent: Agent;
  /** The client behind the idempotent appenders (undefined when every appender is plain). */
  private readonly client: TernClient | undefined;
  /** Set by hold(): the appenders of a log not released wait for `next` (a change) before invoking an append. */
  private held: { released: Set<string>; next: Promise<void>; changed(): void } | undefined;
  /** Appends invoked and not yet answered, per log (idempotent ones included, however long they retry). */
  private readonly inFlight = new Map<string, number>();
  private readonly probes = new Map<string, number>();
  /** Per log, the times of entries acknowledged or read by its seeker. */
  private readonly seen = new Map<string, SeenTimes>();

  constructor(
    private readonly history: History,
    private readonly options: WorkloadOptions,
  ) {
    this.agent = new Agent({ connections: 64, connectTimeout: 2000, keepAliveTimeout: 4000, ...(options.ca ? { connect: { ca: options.ca } } : {}) });
    this.client =
      options.producers === 'plain'
        ? undefined
        : createClient(
            options.replicas.map((r) => r.url),
            { requestTimeoutMs: options.appendTimeoutMs, deadlineMs: IDEMPOTENT_DEADLINE_MS, ...(options.ca ? { ca: options.ca } : {}) },
          );
  }

  start(): void {
    this.running = true;
    for (const log of this.options.logs) {
      for (let c = 0; c < this.options.clientsPerLog; c++) {
        const process = `${log}/c${c}`;
        this.tasks.push(this.isIdempotent(c) ? this.idempotentAppender(log, process) : this.appender(log, process));
      }
      for (const replica of this.options.replicas) this.tasks.push(this.tailReader(log, replica, `${log}/tail-${replica.id}`));
      this.tasks.push(this.catchUpReader(log, `${log}/catchup`));
      this.tasks.push(this.timeSeeker([log], `${log}/seek`));
    }
    const idle = this.options.idleLogs ?? [];
    if (idle.length > 0) {
      // No tail readers on idle logs (a held read is not what idleness is about, and three per log cost the two cores);
      // one catch-up reader reads random idle logs from random replicas: reads of quiesced logs, from object storage.
      for (let c = 0; c < IDLE_CLIENTS; c++) this.tasks.push(this.idleAppender(idle, `jepsen-idle/c${c}`, this.isIdempotent(c)));
      this.tasks.push(this.idleCatchUpReader(idle, 'jepsen-idle/catchup'));
      // Seeks on idle logs land mostly in object storage: the manifest's times and the objects' time index, also of quiesced logs.
      this.tasks.push(this.timeSeeker(idle, 'jepsen-idle/seek'));
    }
  }

  /**
   * Holds every appender before its next append and waits (at most
   * `timeoutMs`) until no append is in flight; returns the logs that still
   * have one. Until release() lets a log go, no append can reach it, so its
   * status read meanwhile stays true (kill-all reads which logs are quiesced,
   * lets the others go, then kills).
   */
  async hold(timeoutMs: number): Promise<Set<string>> {
    this.held ??= { released: new Set(), ...signal() };
    const deadline = Date.now() + timeoutMs;
    while ([...this.inFlight.values()].some((n) => n > 0) && Date.now() < deadline) await sleep(10);
    return new Set([...this.inFlight].filter(([, n]) => n > 0).map(([log]) => log));
  }

  /** Lets the appenders of `logs` go on, or of every log when none are named. */
  release(logs?: Iterable<string>): void {
    const held = this.held;
    if (!held) return;
    if (logs === undefined) this.held = undefined;
    else {
      for (const log of logs) held.released.add(log);
      this.held = { released: held.released, ...signal() };
    }
    held.changed();
  }

  private isHeld(log: string): boolean {
    return this.held !== undefined && !this.held.released.has(log);
  }

  /** Waits while held, then counts an append to `log` in flight until `done` is called. */
  private async invoke(log: string): Promise<() => void> {
    while (this.isHeld(log)) await this.held!.next;
    this.inFlight.set(log, (this.inFlight.get(log) ?? 0) + 1);
    return () => void this.inFlight.set(log, this.inFlight.get(log)! - 1);
  }

  async stop(): Promise<void> {
    this.running = false;
    this.release(); // an appender still held would never finish
    await Promise.all(this.tasks);
    await this.agent.close();
    await this.client?.close();
  }

  private isIdempotent(client: number): boolean {
    return this.options.producers === 'idempotent' || (this.options.producers === 'mixed' && client % 2 === 1);
  }

  /** Appends to `log` (new value each try) until one is acknowledged; false if none is within `timeoutMs`. */
  async probe(log: string, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    // Each probe of a log is its own process, so that its values never repeat an earlier probe's.
    const round = this.probes.get(log) ?? 0;
    this.probes.set(log, round + 1);
    const process = round === 0 ? `${log}/probe` : `${log}/probe${round}`;
    for (let seq = 0; Date.now() < deadline; seq++) {
      if ((await this.append(log, process, seq, this.pick())).outcome === 'ok') return true;
      await sleep(200);
    }
    return false;
  }

  private pick(): Endpoint {
    const r = this.options.replicas;
    return r[Math.floor(this.options.random() * r.length)]!;
  }

  private async appender(log: string, process: string): Promise<void> {
    for (let seq = 0; this.running; seq++) {
      await this.append(log, process, seq, this.pick());
      await sleep(this.options.thinkMs * (0.5 + this.options.random()));
    }
  }

  /**
   * Appends through one producer of the client, one value at a time: the
   * producer picks the replica (the leader it knows) and retries until it has
   * an answer, so the operation records where it was first sent as `client`.
   */
  private async idempotentAppender(log: string, process: string): Promise<void> {
    let producer = this.newProducer(log, process);
    try {
      for (let seq = 0; this.running; seq++) {
        const op = await this.producerAppend(producer, log, process, seq);
        if (forgotten(op)) {
          await producer.close().catch(() => undefined);
          producer = this.newProducer(log, process);
        }
        await sleep(this.options.thinkMs * (0.5 + this.options.random()));
      }
    } finally {
      await producer.close().catch(() => undefined);
    }
  }

  private newProducer(log: string, process: string): Producer {
    return this.client!.producer(log, { producerId: `${process.replace('/', '.')}.${Math.floor(this.options.random() * 1e9)}`, lingerMs: 0 });
  }

  /** One value through `producer`, which retries it until answered; recorded as one operation sent to `client`. */
  private async producerAppend(producer: Producer, log: string, process: string, seq: number): Promise<AppendOp> {
    const value = valueFor(process, seq);
    const done = await this.invoke(log);
    const invokeMs = this.history.now();
    let outcome: AppendOp['outcome'];
    let id: number | undefined;
    let error: string | undefined;
    try {
      id = await producer.append(value);
      outcome = 'ok';
    } catch (err) {
      outcome = (err as { maybeApplied?: boolean }).maybeApplied === false ? 'fail' : 'info';
      const code = (err as { code?: unknown }).code;
      if (typeof code === 'string') error = code;
    } finally {
      done();
    }
    const op: AppendOp = { type: 'append', process, log, replica: 'client', value, invokeMs, completeMs: this.history.now(), outcome, idempotent: true, ...(id === undefined ? {} : { id }), ...(error === undefined ? {} : { error }) };
    this.history.record(op);
    return op;
  }

  /**
   * Appends to one idle log chosen at random every `idleEveryMs`: plain to a
   * random replica, or through one idempotent producer per log (a producer
   * outlives its log's quiescence, a wake-up and a kill-all: its retries must
   * still be recognised).
   */
  private async idleAppender(logs: readonly string[], process: string, idempotent: boolean): Promise<void> {
    const producers = new Map<string, Producer>();
    const everyMs = this.options.idleEveryMs ?? 1000;
    // Spread the clients' first appends over one period, so they do not come in pairs.
    await sleep(everyMs * this.options.random());
    try {
      for (let seq = 0; this.running; seq++) {
        const log = logs[Math.floor(this.options.random() * logs.length)]!;
        const started = Date.now();
        if (idempotent) {
          let producer = producers.get(log);
          if (!producer) producers.set(log, (producer = this.newProducer(log, `${process}.${log}`)));
          if (forgotten(await this.producerAppend(producer, log, process, seq))) {
            producers.delete(log);
            await producer.close().catch(() => undefined);
          }
        } else {
          await this.append(log, process, seq, this.pick());
        }
        await sleep(Math.max(0, everyMs * (0.5 + this.options.random()) - (Date.now() - started)));
      }
    } finally {
      await Promise.all([...producers.values()].map((p) => p.close().catch(() => undefined)));
    }
  }

  /** Reads a random idle log from a random replica and a random point: reads of quiesced logs, through object storage. */
  private async idleCatchUpReader(logs: readonly string[], process: string): Promise<void> {
    const highest = new Map<string, number>();
    while (this.running) {
      const log = logs[Math.floor(this.options.random() * logs.length)]!;
      const op = await this.read(log, this.pick(), process, { from: Math.floor(this.options.random() * ((highest.get(log) ?? 0) + 1)) }, 500, false);
      if (op.outcome === 'ok' && op.entries!.length > 0) highest.set(log, Math.max(highest.get(log) ?? 0, op.entries![op.entries!.length - 1]!.id));
      await sleep(500);
    }
  }

  private async append(log: string, process: string, seq: number, replica: Endpoint): Promise<AppendOp> {
    const value = valueFor(process, seq);
    const inFlight = await this.invoke(log);
    const invokeMs = this.history.now();
    const op = (outcome: AppendOp['outcome'], id?: number, error?: string, timeMs?: number): AppendOp => {
      inFlight();
      const done: AppendOp = { type: 'append', process, log, replica: replica.id, value, invokeMs, completeMs: this.history.now(), outcome, ...(id === undefined ? {} : { id }), ...(error === undefined ? {} : { error }), ...(timeMs === undefined ? {} : { timeMs }) };
      this.history.record(done);
      return done;
    };
    try {
      const res = await request(`${replica.url}/v1/logs/${log}/entries`, {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream' },
        body: value,
        dispatcher: this.agent,
        headersTimeout: this.options.appendTimeoutMs,
        bodyTimeout: this.options.appendTimeoutMs,
        signal: AbortSignal.timeout(this.options.appendTimeoutMs),
      });
      const body = (await res.body.json()) as { id?: number; timeMs?: number; error?: { code: string; maybeApplied?: boolean } };
      if (res.statusCode === 200 && typeof body.id === 'number') {
        if (typeof body.timeMs === 'number') this.seenTimes(log).add(body.timeMs);
        return op('ok', body.id, undefined, body.timeMs);
      }
      const notApplied = body.error?.maybeApplied === false || (body.error?.maybeApplied === undefined && NOT_APPLIED.has(body.error?.code ?? ''));
      return op(notApplied ? 'fail' : 'info', undefined, body.error?.code);
    } catch {
      return op('info');
    }
  }

  /** Long-poll tail reads from one replica: each asks from where the last one ended. */
  private async tailReader(log: string, replica: Endpoint, process: string): Promise<void> {
    let from = 0;
    while (this.running) {
      const op = await this.read(log, replica, process, { from }, 1000, true);
      if (op.outcome === 'ok' && op.entries!.length > 0) from = op.entries![op.entries!.length - 1]!.id + 1;
      else if (op.outcome !== 'ok') await sleep(200);
    }
  }

  /** Catch-up reads from a random replica and a random point at or below what it has read, through object storage once flushed. */
  private async catchUpReader(log: string, process: string): Promise<void> {
    let highest = 0;
    while (this.running) {
      const op = await this.read(log, this.pick(), process, { from: Math.floor(this.options.random() * (highest + 1)) }, 500, false);
      if (op.outcome === 'ok' && op.entries!.length > 0) highest = Math.max(highest, op.entries![op.entries!.length - 1]!.id);
      await sleep(250);
    }
  }

  /**
   * Seeks by time on random replicas: each time, `offsets?time=T` and then
   * `entries?fromTime=T` on one replica, for a log of `logs` chosen at random.
   */
  private async timeSeeker(logs: readonly string[], process: string): Promise<void> {
    while (this.running) {
      const log = logs[Math.floor(this.options.random() * logs.length)]!;
      const replica = this.pick();
      const seen = this.seenTimes(log);
      const time = seen.pick(this.options.random);
      await this.offsetOf(log, replica, process, time);
      const read = await this.read(log, replica, process, { fromTime: time }, SEEK_READ_LIMIT, false);
      for (const e of read.entries ?? []) if (e.timeMs !== undefined) seen.add(e.timeMs);
      await sleep(SEEK_EVERY_MS);
    }
  }

  private seenTimes(log: string): SeenTimes {
    let seen = this.seen.get(log);
    if (!seen) this.seen.set(log, (seen = new SeenTimes()));
    return seen;
  }

  /** GET offsets?time=: where a read from `time` starts. */
  private async offsetOf(log: string, replica: Endpoint, process: string, time: number): Promise<SeekOp> {
    const invokeMs = this.history.now();
    const op = (outcome: SeekOp['outcome'], answer: { id?: number; timeMs?: number | null } = {}): SeekOp => {
      const done: SeekOp = { type: 'seek', process, log, replica: replica.id, invokeMs, completeMs: this.history.now(), outcome, time, ...answer };
      this.history.record(done);
      return done;
    };
    try {
      const res = await request(`${replica.url}/v1/logs/${log}/offsets?time=${time}`, { dispatcher: this.agent, headersTimeout: 5000, bodyTimeout: 5000, signal: AbortSignal.timeout(5000) });
      const body = (await res.body.json()) as { id?: number; timeMs?: number | null };
      return res.statusCode === 200 && typeof body.id === 'number' ? op('ok', { id: body.id, timeMs: body.timeMs ?? null }) : op('fail');
    } catch {
      return op('info');
    }
  }

  /** Entries from an id, or (a seek) from the first entry at or after a time. */
  async read(log: string, replica: Endpoint, process: string, start: { from: number } | { fromTime: number }, limit: number, tail: boolean): Promise<ReadOp> {
    const waitMs = tail ? 1000 : 0;
    const invokeMs = this.history.now();
    const fromTime = 'fromTime' in start ? { fromTime: start.fromTime } : {};
    const query = 'fromTime' in start ? `fromTime=${start.fromTime}` : `from=${start.from}`;
    const op = (outcome: ReadOp['outcome'], answer: { entries?: Entry[]; nextId?: number } = {}): ReadOp => {
      const done: ReadOp = { type: 'read', process, log, replica: replica.id, invokeMs, completeMs: this.history.now(), outcome, tail, ...fromTime, ...answer };
      this.history.record(done);
      return done;
    };
    try {
      const res = await request(`${replica.url}/v1/logs/${log}/entries?${query}&limit=${limit}&waitMs=${waitMs}`, {
        dispatcher: this.agent,
        headersTimeout: waitMs + 5000,
        bodyTimeout: waitMs + 5000,
        signal: AbortSignal.timeout(waitMs + 5000),
      });
      const body = (await res.body.json()) as { entries?: { id: number; timeMs?: number; data: string }[]; nextId?: number };
      if (res.statusCode !== 200) return op('fail');
      const entries = (body.entries ?? []).map((e): Entry => ({ id: e.id, value: decodeValue(e.data), ...(typeof e.timeMs === 'number' ? { timeMs: e.timeMs } : {}) }));
      // Where a seek's read landed when it has no entry: the next id to commit.
      return op('ok', { entries, ...('fromTime' in start && typeof body.nextId === 'number' ? { nextId: body.nextId } : {}) });
    } catch {
      return op('info');
    }
  }
}
