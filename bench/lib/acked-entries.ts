/**
 * What the many-logs benchmark appended and had acknowledged, so that it can
 * read it back after a whole-cluster crash: every Tern entry it sends starts
 * with a tag unique to the run ("#<n>#", ASCII, then filler up to the entry
 * size), and the tags acknowledged on a sample of logs are kept (a set per
 * log; the other logs' tags are not kept, to bound the driver's memory).
 */

/** Longest tag: "#" + 15 digits + "#". */
const TAG_BYTES = 17;
const TAG_RE = /^#(\d{1,15})#/;

export class AckedEntries {
  private next = 0;
  private readonly acked = new Map<string, Set<number>>();
  private readonly filler: Buffer;

  constructor(
    readonly entryBytes: number,
    sample: Iterable<string>,
  ) {
    if (entryBytes < TAG_BYTES) throw new Error(`entries of ${entryBytes} bytes cannot hold a ${TAG_BYTES}-byte tag`);
    this.filler = Buffer.alloc(entryBytes, 0x61);
    for (const log of sample) this.acked.set(log, new Set());
  }

  /** The sampled logs, whose acknowledged entries `missing` checks. */
  get sample(): string[] {
    return [...this.acked.keys()];
  }

  /** A new entry with its own tag; `ack(log, entry)` once Tern acknowledged it on `log`. */
  entry(): Buffer {
    const buf = Buffer.allocUnsafe(this.entryBytes);
    this.filler.copy(buf);
    buf.write(`#${this.next++}#`, 0, 'latin1');
    return buf;
  }

  ack(log: string, entry: Buffer): void {
    const tags = this.acked.get(log);
    if (tags === undefined) return;
    const tag = tagOf(entry);
    if (tag !== undefined) tags.add(tag);
  }

  /** Acknowledged entries kept for `log` (0 for a log outside the sample). */
  count(log: string): number {
    return this.acked.get(log)?.size ?? 0;
  }

  /** How many of the entries acknowledged on `log` are not among `read` (the log's entries as read back). */
  missing(log: string, read: Iterable<Buffer>): number {
    const want = this.acked.get(log);
    if (want === undefined) return 0;
    const seen = new Set<number>();
    for (const e of read) {
      const tag = tagOf(e);
      if (tag !== undefined) seen.add(tag);
    }
    let missing = 0;
    for (const t of want) if (!seen.has(t)) missing++;
    return missing;
  }
}

function tagOf(entry: Buffer): number | undefined {
  const m = TAG_RE.exec(entry.toString('latin1', 0, Math.min(entry.length, TAG_BYTES)));
  return m ? Number(m[1]) : undefined;
}

/** Up to `max` of `logs`, spread evenly over them (all of them when there are no more than `max`). */
export function evenSample<T>(logs: readonly T[], max: number): T[] {
  if (logs.length <= max) return [...logs];
  return Array.from({ length: max }, (_, i) => logs[Math.floor((i * logs.length) / max)]!);
}
