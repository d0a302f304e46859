/**
 * Reads entries below a replica's memory from object storage through the
 * manifest, with a bounded cache of recently read objects and sequential
 * prefetch: a reader catching up from id 0 finds the next object already
 * fetched.
 */
import type { ManifestEntry } from '../fencing/keys.js';
import { decodeObject, type DecodedObject } from './object-format.js';
import type { ObjectStore } from './object-store.js';

export class ObjectReader {
  /** Insertion-ordered: the first key is the least recently used. */
  private readonly cache = new Map<string, Promise<DecodedObject>>();
  private readonly sizes = new Map<string, number>();
  private cachedBytes = 0;

  constructor(
    private readonly store: ObjectStore,
    private readonly maxCacheBytes: number,
  ) {}

  /** Entries from `fromId` to at most the end of the object holding it. Throws CorruptObjectError on bad bytes. */
  async read(manifest: readonly ManifestEntry[], fromId: number, limit: number, maxBytes: number): Promise<Buffer[]> {
    const i = manifest.findIndex((e) => e.firstId <= fromId && fromId <= e.lastId);
    if (i < 0) return [];
    const entry = manifest[i]!;
    const next = manifest[i + 1];
    const object = await this.load(entry);
    if (next) void this.load(next).catch(() => undefined);
    const out: Buffer[] = [];
    let bytes = 0;
    for (let k = fromId - entry.firstId; k < object.entries.length && out.length < limit; k++) {
      const e = object.entries[k]!;
      if (out.length > 0 && bytes + e.length > maxBytes) break;
      out.push(e);
      bytes += e.length;
    }
    return out;
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
