import { describe, expect, it } from 'vitest';
import { lowestHolder, readerLagEntries, retentionPoint, type RetentionInputs } from '../../src/control/retention.js';
import type { ManifestEntry } from '../../src/fencing/keys.js';
import { parseCreateBody, parseReaderBody } from '../../src/http/bodies.js';

const NOW = 1_000_000;

/** Objects of 10 entries and 100 bytes each, ids 0..10n-1; `times[i]` is object i's [first, last] entry time, if it has them. */
function objects(n: number, times: ([number, number] | undefined)[] = []): ManifestEntry[] {
  return Array.from({ length: n }, (_, i) => {
    const t = times[i];
    return { key: `o${i}`, firstId: i * 10, lastId: i * 10 + 9, epoch: 1, bytes: 100, ...(t ? { firstTimeMs: t[0], lastTimeMs: t[1] } : {}) };
  });
}

function inputs(over: Partial<RetentionInputs>): RetentionInputs {
  return { policy: undefined, manifest: objects(5), retainedFrom: 0, flushedId: 49, committedId: 59, readers: [], nowMs: NOW, ...over };
}

describe('retention point (pure)', () => {
  it.each<[string, Partial<RetentionInputs>, number]>([
    ['no policy keeps everything', {}, 0],
    ['an empty policy keeps everything', { policy: {} }, 0],
    // committedId 59: keeping 25 entries is before 35; flushed through 49, so no clamp.
    ['maxEntries at entry granularity', { policy: { maxEntries: 25 } }, 35],
    ['maxEntries over the log keeps everything', { policy: { maxEntries: 1000 } }, 0],
    // 500 bytes in 5 objects; at most 250: drop 3 whole objects (200 left), not 2 (300 left).
    ['maxBytes drops whole oldest objects while the rest are over', { policy: { maxBytes: 250 } }, 30],
    ['maxBytes exactly met drops nothing', { policy: { maxBytes: 500 } }, 0],
    ['maxBytes smaller than any object drops every object', { policy: { maxBytes: 1 } }, 50],
    // Objects 0-1 are truncated already: only 300 bytes count, so 250 drops one more (the third).
    ['maxBytes counts only objects not yet truncated', { policy: { maxBytes: 250 }, retainedFrom: 20 }, 30],
    // The one object partly truncated (retained from 15) still counts whole: 400 bytes, drop 2 objects.
    ['maxBytes counts a partly truncated object whole', { policy: { maxBytes: 250 }, retainedFrom: 15 }, 30],
    // Last entries at NOW-500, NOW-400, ..., NOW-100; older than 250 ms: the first three.
    ['maxAgeMs drops whole objects whose last entry is older', { policy: { maxAgeMs: 250 }, manifest: objects(5, [[0, NOW - 500], [0, NOW - 400], [0, NOW - 300], [0, NOW - 200], [0, NOW - 100]]) }, 30],
    ['maxAgeMs keeps an object exactly at the limit', { policy: { maxAgeMs: 300 }, manifest: objects(5, [[0, NOW - 500], [0, NOW - 400], [0, NOW - 300], [0, NOW - 200], [0, NOW - 100]]) }, 20],
    ['maxAgeMs keeps objects without times', { policy: { maxAgeMs: 1 }, manifest: objects(5) }, 0],
    // Objects 0-1 from before timestamps, 2 old, 3-4 young: age goes by the first young object.
    ['maxAgeMs removes untimed objects before an old timed one', { policy: { maxAgeMs: 250 }, manifest: objects(5, [undefined, undefined, [0, NOW - 300], [0, NOW - 200], [0, NOW - 100]]) }, 30],
    ['the furthest rule wins', { policy: { maxEntries: 45, maxBytes: 250 } }, 30],
    ['the furthest rule wins (the other way)', { policy: { maxEntries: 15, maxBytes: 250 } }, 45],
    // Committed through 59, flushed through 49: keeping 5 entries would remove 50..54, unflushed.
    ['never past the flush point', { policy: { maxEntries: 5 } }, 50],
    ['nothing flushed, nothing removed (object store down from the start)', { policy: { maxEntries: 1 }, manifest: [], flushedId: -1 }, 0],
    ['never lowers the retention point', { policy: { maxEntries: 50 }, retainedFrom: 20 }, 20],
    ['a reader that does not hold retention is passed', { policy: { maxEntries: 25 }, readers: [{ name: 'a', nextId: 3, holdsRetention: false }] }, 35],
    ['a holding reader ahead of the point does not stop it', { policy: { maxEntries: 25 }, readers: [{ name: 'a', nextId: 40, holdsRetention: true }] }, 35],
  ])('%s', (_name, over, beforeId) => {
    const decision = retentionPoint(inputs(over));
    expect(decision.beforeId).toBe(beforeId);
    expect(decision.heldBy).toBeUndefined();
  });

  it('stops at the lowest holding reader and says how much it holds back', () => {
    const readers = [
      { name: 'fast', nextId: 58, holdsRetention: true },
      { name: 'slow', nextId: 12, holdsRetention: true },
      { name: 'idle', nextId: 0, holdsRetention: false },
    ];
    expect(retentionPoint(inputs({ policy: { maxEntries: 25 }, readers }))).toEqual({ beforeId: 12, heldBy: { reader: 'slow', nextId: 12, entries: 23 } });
    // Held back by the flush point too: the reader holds only what the flush point would have let go.
    expect(retentionPoint(inputs({ policy: { maxEntries: 1 }, readers }))).toEqual({ beforeId: 12, heldBy: { reader: 'slow', nextId: 12, entries: 38 } });
  });

  it('counts what a holding reader below the retention point holds from that point', () => {
    const readers = [{ name: 'late', nextId: 5, holdsRetention: true }];
    expect(retentionPoint(inputs({ policy: { maxEntries: 25 }, retainedFrom: 20, readers }))).toEqual({ beforeId: 20, heldBy: { reader: 'late', nextId: 5, entries: 15 } });
  });

  it('names no holder when nothing is to be removed', () => {
    const readers = [{ name: 'r', nextId: 0, holdsRetention: true }];
    expect(retentionPoint(inputs({ policy: { maxEntries: 100 }, readers }))).toEqual({ beforeId: 0 });
    expect(retentionPoint(inputs({ readers }))).toEqual({ beforeId: 0 });
  });

  it('picks the lowest holding reader, ties by name', () => {
    const r = (name: string, nextId: number, holdsRetention = true) => ({ name, nextId, holdsRetention });
    expect(lowestHolder([r('b', 5), r('a', 5), r('c', 9)])?.name).toBe('a');
    expect(lowestHolder([r('x', 1, false), r('y', 7)])?.name).toBe('y');
    expect(lowestHolder([r('x', 1, false)])).toBeUndefined();
  });

  it("measures a reader's lag in entries, 0 once caught up", () => {
    expect([readerLagEntries(0, 9), readerLagEntries(10, 9), readerLagEntries(4, -1), readerLagEntries(7, 9)]).toEqual([10, 0, 0, 3]);
  });
});

describe('retention and reader bodies', () => {
  const body = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v));

  it('reads a policy, none when the body names none', () => {
    expect(parseCreateBody(undefined)).toBeUndefined();
    expect(parseCreateBody(Buffer.alloc(0))).toBeUndefined();
    expect(parseCreateBody(body({}))).toBeUndefined();
    expect(parseCreateBody(body({ retention: {} }))).toEqual({});
    expect(parseCreateBody(body({ retention: { maxAgeMs: 1, maxBytes: Number.MAX_SAFE_INTEGER, maxEntries: 3 } }))).toEqual({ maxAgeMs: 1, maxBytes: Number.MAX_SAFE_INTEGER, maxEntries: 3 });
  });

  it.each([
    ['a zero limit', { retention: { maxEntries: 0 } }],
    ['a fraction', { retention: { maxBytes: 2.5 } }],
    ['past safe integers', { retention: { maxBytes: 2 ** 53 } }],
    ['a string', { retention: { maxAgeMs: '60000' } }],
    ['null', { retention: { maxAgeMs: null } }],
    ['a misspelt limit', { retention: { maxAge: 60000 } }],
    ['a field beside retention', { retention: {}, replicas: 5 }],
    ['retention not an object', { retention: true }],
    ['not JSON', '{"retention"'],
  ])('refuses a policy with %s (400)', (_name, v) => {
    expect(() => parseCreateBody(body(v))).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
  });

  it("reads a reader's position; holdsRetention defaults to false", () => {
    expect(parseReaderBody(body({ nextId: 0 }))).toEqual({ nextId: 0, holdsRetention: false });
    expect(parseReaderBody(body({ nextId: 12, holdsRetention: true }))).toEqual({ nextId: 12, holdsRetention: true });
    for (const v of [{}, { nextId: -1 }, { nextId: 1.5 }, { nextId: '3' }, { nextId: 3, holdsRetention: 1 }, { nextId: 3, holds: true }]) {
      expect(() => parseReaderBody(body(v)), JSON.stringify(v)).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
    }
  });
});
