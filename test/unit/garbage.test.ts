import { describe, expect, it } from 'vitest';
import { collectGarbage, type FlushSource, type Manifest } from '../../src/flusher/flusher.js';
import { objectKey } from '../../src/flusher/object-format.js';
import type { ObjectStore, StoredObject } from '../../src/flusher/object-store.js';
import type { ManifestEntry } from '../../src/fencing/keys.js';

const key = (firstId: number, lastId: number, epoch: number) => objectKey('', 'tern', 'gc', firstId, lastId, epoch);
const longAgo = new Date(Date.now() - 3_600_000);

function setup(objects: StoredObject[], recorded: ManifestEntry[]) {
  const deleted: string[] = [];
  const store = {
    list: async () => objects,
    delete: async (k: string) => void deleted.push(k),
  } as unknown as ObjectStore;
  const manifest = { manifest: () => recorded, retainedFrom: () => 0, forgetFlushed: async () => true } as unknown as Manifest;
  const src = { log: 'gc', epoch: 3, isCurrent: () => true } as unknown as FlushSource;
  const log = { info: () => {}, warn: () => {} };
  return { deleted, run: () => collectGarbage(src, manifest, store, { cluster: 'tern', prefix: '', maxBytes: 1, maxEntries: 1, intervalMs: 1, orphanGraceMs: 60_000 }, log) };
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
});
