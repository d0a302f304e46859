import { describe, expect, it } from 'vitest';
import { collectGarbage, orphanSweepEveryMs, type FlushSource, type Manifest } from '../../src/flusher/flusher.js';
import { objectKey } from '../../src/flusher/object-format.js';
import type { ObjectStore, StoredObject } from '../../src/flusher/object-store.js';
import type { ManifestEntry } from '../../src/fencing/keys.js';

const key = (firstId: number, lastId: number, epoch: number) => objectKey('', 'tern', 'gc', firstId, lastId, epoch);
const longAgo = new Date(Date.now() - 3_600_000);

function setup(objects: StoredObject[], recorded: ManifestEntry[], uid?: string) {
  const deleted: string[] = [];
  let lists = 0;
  const store = {
    list: async (prefix: string) => (lists++, objects.filter((o) => o.key.startsWith(prefix))),
    delete: async (k: string) => void deleted.push(k),
  } as unknown as ObjectStore;
  const manifest = { manifest: () => recorded, retainedFrom: () => 0, forgetFlushed: async () => true } as unknown as Manifest;
  const src = { log: 'gc', uid, epoch: 3, isCurrent: () => true } as unknown as FlushSource;
  const log = { info: () => {}, warn: () => {} };
  const options = { cluster: 'tern', prefix: '', maxBytes: 1, maxEntries: 1, intervalMs: 1, orphanGraceMs: 60_000 };
  return { deleted, lists: () => lists, run: (sweepOrphans = true) => collectGarbage(src, manifest, store, options, log, sweepOrphans) };
}

describe('object garbage collection', () => {
  it("deletes only a fenced leader's unrecorded uploads, never one of the current epoch whose record is still to come", async () => {
    const recorded = { key: key(0, 9, 2), firstId: 0, lastId: 9, epoch: 2, bytes: 10 };
    const { deleted, run } = setup(
      [
        { key: recorded.key, lastModified: longAgo, size: 10 },
        { key: key(10, 19, 2), lastModified: longAgo, size: 10 }, // epoch 2's leader was fenced before recording it
        { key: key(10, 19, 3), lastModified: longAgo, size: 10 }, // this leader's upload, its etcd record retrying
        { key: key(20, 29, 1), lastModified: new Date(), size: 10 }, // an orphan, but younger than the grace period
      ],
      [recorded],
    );
    await run();
    expect(deleted).toEqual([key(10, 19, 2)]);
  });

  it("sweeps only its own creation's objects: a log from before uids leaves a later creation's folder alone", async () => {
    const later = (firstId: number, lastId: number, epoch: number) => objectKey('', 'tern', 'gc', firstId, lastId, epoch, '5eed');
    const objects = [key(10, 19, 2), later(10, 19, 2)].map((k) => ({ key: k, lastModified: longAgo, size: 10 }));
    const legacy = setup(objects, []);
    await legacy.run();
    expect(legacy.deleted).toEqual([key(10, 19, 2)]);
    const created = setup(objects, [], '5eed');
    await created.run();
    expect(created.deleted).toEqual([later(10, 19, 2)]);
  });

  it('lists the store for orphans only on a sweep, paced by the grace period', async () => {
    const { deleted, lists, run } = setup([{ key: key(10, 19, 2), lastModified: longAgo, size: 10 }], []);
    await run(false);
    expect([lists(), deleted.length]).toEqual([0, 0]);
    await run(true);
    expect([lists(), deleted]).toEqual([1, [key(10, 19, 2)]]);
    // Default grace (10 min): once a minute. A short grace (tests, fault runs): every GC pass (2 s).
    expect([orphanSweepEveryMs(600_000), orphanSweepEveryMs(5000), orphanSweepEveryMs(0)]).toEqual([60_000, 2500, 2000]);
  });
});
