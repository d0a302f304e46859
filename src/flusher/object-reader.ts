/**
 * Reads entries below a replica's memory from object storage through the
 * manifest, with a bounded cache of recently read objects and sequential
 * prefetch: a reader catching up from id 0 finds the next object already
 * fetched.
 */
import type { ManifestEntry } from '../fencing/keys.js';
import { UNKNOWN_TIME_MS } from '../quorum/entry-buffer.js';
import { decodeObject, type DecodedObject } from './object-format.js';
import type { ObjectStore } from './object-store.js';

/** Entries read, each with its time (ms since the Unix epoch). */
export interface EntrySlice {
  entries: Buffer[];
  times: number[];
}

export class ObjectReader {
  /** Insertion-ordered: the first key is the least recently used. */
  private readonly cache = new Map<string, Promise<DecodedObject>>();
  private readonly sizes = new Map<string, number>();
  private cachedBytes = 0;

  constructor(
    private readonly store: ObjectStore,
    private readonly maxCacheBytes: number,
  ) {}

  /** Entries from `fromId` to at most the end of the object holding it, with their times. Throws CorruptObjectError on bad bytes. */
  async read(manifest: readonly ManifestEntry[], fromId: number, limit: number, maxBytes: number): Promise<EntrySlice> {
    const i = manifest.findIndex((e) => e.firstId <= fromId && fromId <= e.lastId);
    if (i < 0) return { entries: [], times: [] };
    const entry = manifest[i]!;
    const next = manifest[i + 1];
    const object = await this.load(entry);
    if (next) void this.load(next).catch(() => undefined);
    const out: EntrySlice = { entries: [], times: [] };
    let bytes = 0;
    let run = -1;
    for (let k = fromId - entry.firstId; k < object.entries.length && out.entries.length < limit; k++) {
      const e = object.entries[k]!;
      if (out.entries.length > 0 && bytes + e.length > maxBytes) break;
      while (run + 1 < object.times.length && object.times[run + 1]!.firstId <= entry.firstId + k) run++;
      out.entries.push(e);
      out.times.push(run < 0 ? UNKNOWN_TIME_MS : object.times[run]!.timeMs);
      bytes += e.length;
    }
    return out;
  }

  /**
   * The first id of `manifest`'s objects whose time is at least `timeMs`, and
   * that time; undefined when no object has one. The manifest's times find the
   * object, so at most that one object is read (its time index finds the
   * entry), and none when its first entry is the one.
   */
  async firstAtOrAfter(manifest: readonly ManifestEntry[], timeMs: number): Promise<{ id: number; timeMs: number } | undefined> {
    // Objects without times (written before entries had them) read as UNKNOWN_TIME_MS: before any time asked for.
    const entry = manifest.find((e) => (e.lastTimeMs ?? UNKNOWN_TIME_MS) >= timeMs);
    if (!entry) return undefined;
    if (entry.firstTimeMs !== undefined && entry.firstTimeMs >= timeMs) return { id: entry.firstId, timeMs: entry.firstTimeMs };
    const run = (await this.load(entry)).times.find((r) => r.timeMs >= timeMs);
    return run && { id: run.firstId, timeMs: run.timeMs };
  }

  private load(entry: ManifestEntry): Promise<DecodedObject> {
    const hit = this.cache.get(entry.key);
    if (hit) {
      this.cache.delete(entry.key);
      this.cache.set(entry.key, hit);
      return hit;
    }
    const loading = this.store.get(entry.key).then(decodeObject);
    this.cache.set(entry.key, loading);
    loading.then(
      () => this.account(entry.key, entry.bytes),
      () => this.cache.delete(entry.key),
    );
    return loading;
  }

  private account(key: string, bytes: number): void {
    if (!this.cache.has(key)) return;
    this.sizes.set(key, bytes);
    this.cachedBytes += bytes;
    for (const oldest of this.cache.keys()) {
      if (this.cachedBytes <= this.maxCacheBytes || oldest === key) break;
      this.cache.delete(oldest);
      this.cachedBytes -= this.sizes.get(oldest) ?? 0;
      this.sizes.delete(oldest);
    }
  }
}
