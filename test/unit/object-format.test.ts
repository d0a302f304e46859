import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ObjectBuffers } from '../../src/flusher/flusher.js';
import { CorruptObjectError, HEADER_BYTES, TRAILER_BYTES, decodeObject, decodeRecords, decodeSnapshot, encodeObject, encodeSnapshot, encodedSize, objectKey, readTrailer, recordRange, timeInObject } from '../../src/flusher/object-format.js';
import type { ProducerSnapshot } from '../../src/quorum/producers.js';

const entries = [Buffer.from('first'), Buffer.alloc(0), randomBytes(3000), Buffer.from([0, 255, 0])];

describe('flushed object format', () => {
  it('round-trips entries, epoch and first id', () => {
    const body = encodeObject(7, 2 ** 40, entries);
    const obj = decodeObject(body);
    expect(obj.epoch).toBe(7);
    expect(obj.firstId).toBe(2 ** 40);
    expect(obj.entries.map((e) => e.toString('hex'))).toEqual(entries.map((e) => e.toString('hex')));
  });

  it('encodes into a reused buffer the same bytes as into a new one, leaving the rest of it alone', () => {
    const fresh = encodeObject(7, 5, entries);
    expect(encodedSize(entries.length, entries.reduce((n, e) => n + e.length, 0))).toBe(fresh.length);
    const scratch = Buffer.alloc(fresh.length + 100, 0xee);
    const body = encodeObject(7, 5, entries, scratch);
    expect(body.equals(fresh)).toBe(true);
    expect(body.buffer).toBe(scratch.buffer); // written in place, not copied
    expect(scratch.subarray(fresh.length).every((b) => b === 0xee)).toBe(true);
    // Too small to hold it: a new buffer, the scratch untouched.
    const small = Buffer.alloc(10, 0xee);
    expect(encodeObject(7, 5, entries, small).equals(fresh)).toBe(true);
    expect(small.every((b) => b === 0xee)).toBe(true);
  });

  it('lets a reader fetch a range of entries with one ranged read, given the index', () => {
    const body = encodeObject(1, 0, entries);
    const { indexOffset, count } = readTrailer(body.subarray(body.length - TRAILER_BYTES));
    expect(count).toBe(4);
    const offsets = Array.from({ length: count }, (_, i) => body.readUInt32BE(indexOffset + 4 * i));
    const { start, end } = recordRange(offsets, indexOffset, 1, 2);
    const ranged = body.subarray(start, end); // what a ranged GET returns
    expect(decodeRecords(ranged, 0, ranged.length, 2).map((e) => e.length)).toEqual([0, 3000]);
  });

  it('reports a flipped data byte as corruption, never as data', () => {
    const body = encodeObject(1, 0, entries);
    body[HEADER_BYTES + 8 + 2]! ^= 0xff; // inside "first"
    expect(() => decodeObject(body)).toThrow(CorruptObjectError);
  });

  it('reports a damaged header, index or trailer, and truncation', () => {
    const make = () => encodeObject(1, 0, entries);
    const header = make();
    header[9]! ^= 1;
    expect(() => decodeObject(header)).toThrow(/checksum/);
    const index = make();
    index[index.length - TRAILER_BYTES - 1]! ^= 1;
    expect(() => decodeObject(index)).toThrow(CorruptObjectError);
    const trailer = make();
    trailer[trailer.length - 1]! ^= 1;
    expect(() => decodeObject(trailer)).toThrow(/trailer/);
    const full = make();
    expect(() => decodeObject(full.subarray(0, full.length - 5))).toThrow(CorruptObjectError);
  });

  it('names objects so they sort by first id and carry the epoch', () => {
    const keys = [objectKey('p/', 'c', 'log', 100, 199, 3), objectKey('p/', 'c', 'log', 9, 99, 2), objectKey('p/', 'c', 'log', 1000, 1001, 3)];
    expect([...keys].sort()).toEqual([keys[1], keys[0], keys[2]]);
    expect(keys[0]).toBe('p/c/log/0000000000000100-0000000000000199-e0000000003.tern');
    expect(objectKey('p/', 'c', 'log', 100, 199, 3, 'ab12')).toBe('p/c/log/ab12/0000000000000100-0000000000000199-e0000000003.tern');
  });
});

describe('version 2: the producers snapshot', () => {
  const snapshot: ProducerSnapshot = {
    throughId: 2 ** 40 + 3,
    producers: [
      { producerId: 'a', lastTimeMs: 1_800_000_000_000, batches: [{ firstSeq: 0, count: 2, firstId: 5 }] },
      { producerId: 'x'.repeat(128), lastTimeMs: 1_800_000_000_123, batches: [{ firstSeq: 2 ** 53 - 10, count: 1, firstId: 2 ** 40 }, { firstSeq: 2 ** 53 - 9, count: 3, firstId: 2 ** 40 + 1 }] },
      { producerId: 'empty', lastTimeMs: 0, batches: [] },
    ],
  };

  it('round-trips a snapshot section', () => {
    expect(decodeSnapshot(encodeSnapshot(snapshot))).toEqual(snapshot);
    expect(decodeSnapshot(encodeSnapshot({ throughId: -1, producers: [] }))).toEqual({ throughId: -1, producers: [] });
  });

  it('round-trips entries and the snapshot in one object, and sizes it', () => {
    const section = encodeSnapshot(snapshot);
    const body = encodeObject(7, 2 ** 40, entries, undefined, { snapshot: section });
    expect(body.length).toBe(encodedSize(entries.length, entries.reduce((n, e) => n + e.length, 0), { snapshot: section }));
    expect(body.readUInt8(4)).toBe(2);
    const obj = decodeObject(body);
    expect(obj.entries.map((e) => e.toString('hex'))).toEqual(entries.map((e) => e.toString('hex')));
    expect(decodeSnapshot(obj.snapshotSection!)).toEqual(snapshot);
  });

  it('still reads version 1 objects, which have no snapshot', () => {
    const body = encodeObject(7, 5, entries);
    expect(body.readUInt8(4)).toBe(1);
    expect(decodeObject(body).snapshotSection).toBeUndefined();
  });

  it('a ranged read by the index is the same in version 2 (the snapshot follows the index)', () => {
    const body = encodeObject(1, 0, entries, undefined, { snapshot: encodeSnapshot(snapshot) });
    const { indexOffset, count } = readTrailer(body.subarray(body.length - TRAILER_BYTES));
    const offsets = Array.from({ length: count }, (_, i) => body.readUInt32BE(indexOffset + 4 * i));
    const { start, end } = recordRange(offsets, indexOffset, 2, 3);
    expect(decodeRecords(body.subarray(start, end), 0, end - start, 2).map((e) => e.length)).toEqual([3000, 3]);
  });

  it('writes version 3 with a time index, alone or before the snapshot, and reads both back', () => {
    const times = [
      { firstId: 100, timeMs: 1_700_000_000_000 },
      { firstId: 102, timeMs: 1_700_000_000_005 },
    ];
    const section = encodeSnapshot(snapshot);
    for (const sections of [{ times }, { times, snapshot: section }]) {
      const body = encodeObject(7, 100, entries, undefined, sections);
      expect(body.readUInt8(4)).toBe(3);
      expect(body.length).toBe(encodedSize(entries.length, entries.reduce((n, e) => n + e.length, 0), sections));
      const obj = decodeObject(body);
      expect(obj.times).toEqual(times);
      expect(obj.entries.map((e) => e.length)).toEqual(entries.map((e) => e.length));
      expect(obj.snapshotSection && decodeSnapshot(obj.snapshotSection)).toEqual(sections.snapshot ? snapshot : undefined);
      expect([100, 101, 102, 103].map((id) => timeInObject(obj, id))).toEqual([1_700_000_000_000, 1_700_000_000_000, 1_700_000_000_005, 1_700_000_000_005]);
    }
    expect(decodeObject(encodeObject(7, 5, entries)).times).toEqual([]);
  });

  it('refuses a time index out of order as corruption, checksum or not', () => {
    const body = encodeObject(1, 0, entries, undefined, { times: [{ firstId: 0, timeMs: 5 }, { firstId: 2, timeMs: 4 }] });
    expect(() => decodeObject(body)).toThrow(/out of order/);
  });

  it('reports a damaged snapshot as corruption', () => {
    const body = encodeObject(1, 0, entries, undefined, { snapshot: encodeSnapshot(snapshot) });
    body[body.length - TRAILER_BYTES - 3]! ^= 1;
    expect(() => decodeObject(body)).toThrow(/checksum/);
    expect(() => decodeSnapshot(encodeSnapshot(snapshot).subarray(0, 20))).toThrow(CorruptObjectError);
  });
});

describe('object buffers of the flushers', () => {
  it('hands back the smallest waiting buffer that fits, else a new one with room to spare', () => {
    const pool = new ObjectBuffers(3);
    const big = pool.take(4 * 1024 * 1024);
    const small = pool.take(100_000);
    expect(big.length).toBeGreaterThan(4 * 1024 * 1024);
    expect(small.length).toBeGreaterThanOrEqual(100_000);
    expect(small.length).toBeLessThan(big.length);
    pool.give(big);
    pool.give(small);
    expect(pool.take(50_000)).toBe(small);
    expect(pool.take(50_000)).toBe(big); // the only one left that fits
    expect(pool.take(50_000)).not.toBe(big); // taken: never handed out twice
  });

  it('keeps at most its limit, dropping the smallest', () => {
    const pool = new ObjectBuffers(2);
    const [a, b, c] = [pool.take(1 << 20), pool.take(2 << 20), pool.take(3 << 20)];
    for (const x of [a, b, c]) pool.give(x);
    expect(pool.take(1)).toBe(b);
    expect(pool.take(1)).toBe(c);
    expect([a, b, c]).not.toContain(pool.take(1));
  });
});
