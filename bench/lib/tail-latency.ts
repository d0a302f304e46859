/**
 * Append-to-reader latency, shared by bench/tail-bench.ts and the tail
 * scenarios of bench/compare.ts.
 *
 * A `TailProbe` stamps each entry it appends with its sequence number (u32
 * big-endian at byte 0) and the probe's run tag (a random u32 at byte 4), so
 * that a reader knows the entry whatever else the log or stream holds; it
 * notes when each append was sent and acked, and when each reader decoded
 * each entry. Latencies are taken from the moment the append was handed to
 * the client (ack and every reader alike), over the entries sent within a
 * window; an entry acked but never seen by a reader is missing (must be 0).
 *
 * Readers register with `reader(name)`, which gives the callback their
 * stream calls per entry: `openTernReaders` does it for Tern streams
 * (GET entries?follow=true), systems.ts for the NATS push consumers.
 */
import { randomInt } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Histogram } from 'hdr-histogram-js';
import { openTail, type OpenTail } from '../../test/support/tail-stream.js';
import { ms } from './format.js';
import { logStatus } from './http.js';
import { newHistogram } from './workload.js';

/** Bytes an entry needs for its stamp: sequence number and run tag. */
export const STAMP_BYTES = 8;
/** How often `drain` looks again for entries still missing. */
const DRAIN_POLL_MS = 50;

/** A reader that stays open for a run; `close` ends its stream or subscription. */
export interface TailReaders {
  readonly names: readonly string[];
  close(): Promise<void>;
}

/** Percentiles of a latency histogram, milliseconds. */
export interface LatencyFigures {
  p50: number;
  p99: number;
  p999: number;
  max: number;
  count: number;
}

export function latencyFigures(h: Histogram): LatencyFigures {
  if (h.totalCount === 0) return { p50: NaN, p99: NaN, p999: NaN, max: NaN, count: 0 };
  return { p50: ms(h.getValueAtPercentile(50)), p99: ms(h.getValueAtPercentile(99)), p999: ms(h.getValueAtPercentile(99.9)), max: ms(h.maxValue), count: h.totalCount };
}

export interface TailFigures {
  /** Ack latency over the window's entries. */
  ack: Histogram;
  /** Append-to-reader latency per reader over the window's entries. */
  readers: Map<string, Histogram>;
}

export class TailProbe {
  private readonly tag = randomInt(2 ** 32);
  private readonly sentAt: number[] = [];
  private readonly ackedAt: number[] = [];
  private readonly seenAt = new Map<string, number[]>();
  private readonly template: Buffer;

  constructor(entryBytes: number) {
    if (entryBytes < STAMP_BYTES) throw new Error(`tail entries need at least ${STAMP_BYTES} bytes, got ${entryBytes}`);
    this.template = Buffer.alloc(entryBytes, 0x61);
  }

  /** Registers a reader; its stream calls the callback with each entry's bytes as it decodes them. */
  reader(name: string): (data: Buffer) => void {
    const seen: number[] = [];
    this.seenAt.set(name, seen);
    return (data) => {
      const now = performance.now();
      if (data.length < STAMP_BYTES || data.readUInt32BE(4) !== this.tag) return;
      const seq = data.readUInt32BE(0);
      if (seq < this.sentAt.length && seen[seq] === undefined) seen[seq] = now;
    };
  }

  get readers(): string[] {
    return [...this.seenAt.keys()];
  }

  /** Appends the next stamped entry with `send` (which rejects when the append failed), noting when it went and when it was acked. */
  async append(send: (entry: Buffer) => Promise<void>): Promise<void> {
    const seq = this.sentAt.length;
    const entry = Buffer.from(this.template);
    entry.writeUInt32BE(seq, 0);
    entry.writeUInt32BE(this.tag, 4);
    this.sentAt.push(performance.now());
    await send(entry);
    this.ackedAt[seq] = performance.now();
  }

  /** Entries sent so far. */
  get sent(): number {
    return this.sentAt.length;
  }

  /** Entries acked so far. */
  get acked(): number {
    return this.ackedAt.reduce((n, a) => n + (a === undefined ? 0 : 1), 0);
  }

  /** Entries acked that `reader` has not seen. */
  missing(reader: string): number {
    const seen = this.seenAt.get(reader) ?? [];
    return this.ackedAt.reduce((n, a, seq) => n + (a !== undefined && seen[seq] === undefined ? 1 : 0), 0);
  }

  /** Waits until every reader has seen every acked entry, or `timeoutMs` has passed. */
  async drain(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!signal?.aborted && performance.now() < deadline && this.readers.some((r) => this.missing(r) > 0)) await sleep(DRAIN_POLL_MS);
  }

  /** Latencies (microseconds) of the entries sent within [from, to) (performance.now() times). */
  figures(from = -Infinity, to = Infinity): TailFigures {
    const ack = newHistogram();
    const readers = new Map<string, Histogram>();
    for (const name of this.seenAt.keys()) readers.set(name, newHistogram());
    const record = (h: Histogram, sent: number, at: number | undefined) => {
      if (at !== undefined) h.recordValue(Math.max(1, Math.round((at - sent) * 1000)));
    };
    this.sentAt.forEach((sent, seq) => {
      if (sent < from || sent >= to) return;
      record(ack, sent, this.ackedAt[seq]);
      for (const [name, seen] of this.seenAt) record(readers.get(name)!, sent, seen[seq]);
    });
    return { ack, readers };
  }
}

/**
 * Opens one Tern stream (follow=true) per reader, each on its replica's client URL, from the
 * log's next id: the entries appended from now on, each handed to `probe`.
 */
export async function openTernReaders(log: string, readers: readonly { name: string; url: string }[], probe: TailProbe): Promise<TailReaders> {
  const from = Number((await logStatus(readers[0]!.url, log)).committedId) + 1;
  const tails: OpenTail[] = [];
  const close = async () => {
    for (const t of tails) t.close();
    await Promise.all(tails.map((t) => t.ended));
  };
  try {
    for (const r of readers) {
      const onEntry = probe.reader(r.name);
      const t = await openTail(r.url, log, from, { keep: false, onEntry: (e) => onEntry(e.data) });
      if (t.status !== 200) throw new Error(`stream of ${log} on ${r.url}: ${t.status} ${t.errorBody}`);
      tails.push(t);
    }
  } catch (err) {
    await close();
    throw err;
  }
  return { names: readers.map((r) => r.name), close };
}
