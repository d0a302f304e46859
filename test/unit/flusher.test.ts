import { afterEach, describe, expect, it, vi } from 'vitest';
import { UPLOADS_IN_FLIGHT, runFlusher, type FlushSource, type Manifest } from '../../src/flusher/flusher.js';
import { decodeObject } from '../../src/flusher/object-format.js';
import type { ObjectStore } from '../../src/flusher/object-store.js';
import type { ManifestEntry } from '../../src/fencing/keys.js';

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/**
 * One log's flusher over fakes: `entries` committed, uploads that end when
 * the test says (`uploads[i].done()`), manifest transactions that answer when
 * the test says (`txns[i].answer(ok)`) unless `autoRecord`.
 */
function setup(options: { entries: Buffer[]; maxBytes: number; maxEntries?: number; intervalMs?: number; autoUpload?: boolean; autoRecord?: boolean }) {
  let current = true;
  const recorded: ManifestEntry[] = [];
  const released: number[] = [];
  const events: string[] = [];
  const uploads: { key: string; firstId: number; done(): void }[] = [];
  const txns: { entries: readonly ManifestEntry[]; answer(ok: boolean): void }[] = [];
  const src: FlushSource = {
    log: 't',
    uid: undefined,
    epoch: 1,
    isCurrent: () => current,
    closing: () => false,
    committedId: () => options.entries.length - 1,
    entries: (fromId, maxCount, maxBytes) => {
      const out: Buffer[] = [];
      let bytes = 0;
      for (let id = fromId; id < options.entries.length && out.length < maxCount; id++) {
        if (out.length > 0 && bytes + options.entries[id]!.length > maxBytes) break;
        out.push(options.entries[id]!);
        bytes += options.entries[id]!.length;
      }
      return out;
    },
    release: (id) => {
      if (id > (released.at(-1) ?? -1)) {
        released.push(id);
        events.push(`release ${id}`);
      }
    },
  };
  const flushedId = () => recorded.reduce((max, e) => (e.firstId === max + 1 ? e.lastId : max), -1);
  const manifest: Manifest = {
    flushedId,
    retainedFrom: () => 0,
    manifest: () => recorded,
    forgetFlushed: async () => true,
    recordFlush: async (_log, _epoch, entries) => {
      events.push(`record ${entries.map((e) => `${e.firstId}-${e.lastId}`).join(',')}`);
      const answered = deferred<boolean>();
      txns.push({ entries, answer: answered.resolve });
      if (options.autoRecord) answered.resolve(true);
      const ok = await answered.promise;
      if (ok) recorded.push(...entries);
      return ok;
    },
  };
  const store = {
    put: async (key: string, body: Buffer) => {
      const d = deferred<void>();
      uploads.push({ key, firstId: decodeObject(Buffer.from(body)).firstId, done: () => d.resolve() });
      if (options.autoUpload) d.resolve();
      await d.promise;
    },
    list: async () => [],
    delete: async () => {},
  } as unknown as ObjectStore;
  const log = { info: () => {}, warn: () => {} };
  const run = runFlusher(
    src,
    manifest,
    store,
    { cluster: 'tern', prefix: '', maxBytes: options.maxBytes, maxEntries: options.maxEntries ?? 1000, intervalMs: options.intervalMs ?? 60_000, orphanGraceMs: 600_000 },
    log,
  );
  return {
    recorded,
    released,
    events,
    uploads,
    txns,
    stop: async () => {
      current = false;
      for (const u of uploads) u.done();
      for (const t of txns) t.answer(false);
      await run;
    },
    run,
  };
}

const entries = (count: number, bytes: number) => Array.from({ length: count }, (_, i) => Buffer.alloc(bytes, i));

let stop: (() => Promise<void>) | undefined;
afterEach(async () => {
  await stop?.();
  stop = undefined;
});

describe('flusher', () => {
  it('records objects in id order when later uploads end first, several in one transaction, and releases memory only once recorded', async () => {
    const f = setup({ entries: entries(30, 10), maxBytes: 100 });
    stop = f.stop;
    // Three uploads overlap: objects 0-9, 10-19, 20-29.
    await vi.waitFor(() => expect(f.uploads.map((u) => u.firstId)).toEqual([0, 10, 20]));
    f.uploads[2]!.done();
    f.uploads[1]!.done();
    await new Promise((r) => setTimeout(r, 20));
    expect(f.txns).toHaveLength(0); // the first object is not in the store yet: nothing after it may be recorded
    expect(f.released).toEqual([]);
    f.uploads[0]!.done();
    await vi.waitFor(() => expect(f.txns).toHaveLength(1));
    expect(f.txns[0]!.entries.map((e) => [e.firstId, e.lastId])).toEqual([
      [0, 9],
      [10, 19],
      [20, 29],
    ]);
    await new Promise((r) => setTimeout(r, 20));
    expect(f.released).toEqual([]); // the transaction has not answered
    f.txns[0]!.answer(true);
    await vi.waitFor(() => expect(f.released).toEqual([29]));
    expect(f.events).toEqual(['record 0-9,10-19,20-29', 'release 29']);
  });

  it('records in order one transaction after another when uploads end while a record is in flight', async () => {
    const n = UPLOADS_IN_FLIGHT;
    // n + 1 objects of 10 entries: n upload at once, the last waits for a free slot.
    const f = setup({ entries: entries((n + 1) * 10, 10), maxBytes: 100 });
    stop = f.stop;
    await vi.waitFor(() => expect(f.uploads).toHaveLength(n));
    f.uploads[0]!.done();
    await vi.waitFor(() => expect(f.txns).toHaveLength(1));
    // Its slot is free: the last object uploads while the first is being recorded.
    await vi.waitFor(() => expect(f.uploads).toHaveLength(n + 1));
    f.uploads[n]!.done();
    f.uploads[1]!.done();
    f.txns[0]!.answer(true);
    await vi.waitFor(() => expect(f.txns).toHaveLength(2));
    expect(f.txns[1]!.entries.map((e) => e.firstId)).toEqual([10]); // 20-29 still uploading: everything after it waits
    f.txns[1]!.answer(true);
    for (let i = 3; i < n; i++) f.uploads[i]!.done();
    await new Promise((r) => setTimeout(r, 20));
    expect(f.txns).toHaveLength(2);
    f.uploads[2]!.done();
    await vi.waitFor(() => expect(f.txns).toHaveLength(3));
    expect(f.txns[2]!.entries.map((e) => e.firstId)).toEqual(Array.from({ length: n - 1 }, (_, i) => 20 + 10 * i));
    f.txns[2]!.answer(true);
    await vi.waitFor(() => expect(f.released.at(-1)).toBe(n * 10 + 9));
    expect(f.recorded.map((e) => e.firstId)).toEqual(Array.from({ length: n + 1 }, (_, i) => 10 * i));
    expect(f.events.filter((e) => e.startsWith('release'))).toEqual(['release 9', 'release 19', `release ${n * 10 + 9}`]);
  });

  it('a fenced leader records nothing more and releases nothing', async () => {
    const f = setup({ entries: entries(50, 10), maxBytes: 100, autoUpload: true });
    stop = f.stop;
    await vi.waitFor(() => expect(f.txns).toHaveLength(1));
    const firstTxn = f.txns[0]!.entries.length;
    f.txns[0]!.answer(false);
    await f.run; // the flusher stops by itself
    expect(f.txns).toHaveLength(1);
    expect(f.recorded).toEqual([]);
    expect(f.released).toEqual([]);
    expect(firstTxn).toBeGreaterThan(0);
  });

  it('cuts an object as soon as the next committed entry would take it past maxBytes, without waiting out the interval', async () => {
    // 3 entries of 3 bytes (9) fit 10 bytes, a fourth does not: every object is full at 9 bytes.
    // Before, only an object of exactly maxBytes counted as full, and each waited the 60 s interval.
    const f = setup({ entries: entries(10, 3), maxBytes: 10, autoUpload: true, autoRecord: true });
    stop = f.stop;
    await vi.waitFor(() => expect(f.recorded.map((e) => [e.firstId, e.lastId])).toEqual([
      [0, 2],
      [3, 5],
      [6, 8],
    ]));
    // Entry 9 alone is not a full object: it waits for more entries or the interval.
    await new Promise((r) => setTimeout(r, 100));
    expect(f.recorded).toHaveLength(3);
    expect(f.released.at(-1)).toBe(8);
  });
});
