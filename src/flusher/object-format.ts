/**
 * The format of a flushed object: one object per batch of consecutive
 * entries of one log. All integers big-endian.
 *
 *   header  (24 B)  "TERN" | u8 version (3) | u8 0 | u16 0 | u32 epoch | i48 firstId | u16 0 | u32 count
 *   records         per entry: u32 length | u32 CRC-32C of the data | data
 *   index           per entry: u32 offset of its record from the start of the object
 *   times           (version 3) the entries' timestamps as runs of one time,
 *                   the time index: u32 runs | per run: u32 index of its first
 *                   entry in the object | f64 timeMs; runs ascending in both,
 *                   the first at entry 0 (none: times unknown)
 *   snapshot        (version 2, optional in 3) the idempotent producers' table as it stands at
 *                   the object's last id (quorum/producers.ts): i48 throughId |
 *                   u32 producers | per producer (least recently used first):
 *                   u8 id length | id (ASCII) | f64 lastTimeMs | u8 batches |
 *                   per batch: f64 firstSeq | u32 count | i48 firstId
 *   trailer (16 B)  u32 index offset | u32 count | u32 CRC-32C of header, index (and snapshot) | "TIDX"
 *
 * Versions 1 (no snapshot: index and trailer meet) and 2 (no times) are
 * still read: their entries read as time UNKNOWN_TIME_MS, and a new leader
 * that finds an object without a snapshot at its flushed point starts with an
 * empty producer table.
 *
 * A reader that knows the index (the trailer and index are one suffix-ranged
 * GET, cacheable) fetches entries i..j with one ranged GET of
 * [offset(i), offset(j+1)). Every entry is checked against its CRC-32C;
 * corruption is an error, never data.
 */
import { crc32c } from '@node-rs/crc32';
import { UNKNOWN_TIME_MS, type TimeRun } from '../quorum/entry-buffer.js';
import type { ProducerSnapshot } from '../quorum/producers.js';

const MAGIC = Buffer.from('TERN');
const TRAILER_MAGIC = Buffer.from('TIDX');
const VERSION = 3;
const V1 = 1;
const V2 = 2;
const TIME_RUN_BYTES = 4 + 8;
export const HEADER_BYTES = 24;
export const TRAILER_BYTES = 16;
const RECORD_OVERHEAD = 8;

export class CorruptObjectError extends Error {
  override name = 'CorruptObjectError';
}

export interface DecodedObject {
  epoch: number;
  firstId: number;
  entries: Buffer[];
  /** The snapshot section (decodeSnapshot), checked by the object's checksum but not parsed: readers of entries never need it. Undefined when the object has none. */
  snapshotSection?: Buffer;
  /** The entries' times as runs with ids (the first at firstId); empty in an object of version 1 or 2 (times unknown). */
  times: TimeRun[];
}

/** The optional sections of an object: the producers' snapshot (encodeSnapshot's bytes) and the entries' times as runs (ids absolute, the first at the object's firstId). */
export interface ObjectSections {
  snapshot?: Buffer | undefined;
  times?: readonly TimeRun[] | undefined;
}

/** Bytes of the object that holds `count` entries of `entryBytes` bytes in all, and `sections`. */
export function encodedSize(count: number, entryBytes: number, sections: ObjectSections = {}): number {
  const timesBytes = sections.times ? 4 + TIME_RUN_BYTES * sections.times.length : 0;
  return HEADER_BYTES + TRAILER_BYTES + (4 + RECORD_OVERHEAD) * count + entryBytes + timesBytes + (sections.snapshot?.length ?? 0);
}

/**
 * The object, written at the start of `into` when it is big enough (a view
 * of it), else in a new buffer. With times a version 3 object; without, a
 * version 2 one with a snapshot, else version 1 (what the tests of old objects write).
 */
export function encodeObject(epoch: number, firstId: number, entries: readonly Buffer[], into?: Buffer, sections: ObjectSections = {}): Buffer {
  const { snapshot, times } = sections;
  let entryBytes = 0;
  for (const e of entries) entryBytes += e.length;
  const size = encodedSize(entries.length, entryBytes, sections);
  const out = into && into.length >= size ? into.subarray(0, size) : Buffer.allocUnsafe(size);
  MAGIC.copy(out, 0);
  out.writeUInt8(times ? VERSION : snapshot ? V2 : V1, 4);
  out.writeUInt8(0, 5);
  out.writeUInt16BE(0, 6);
  out.writeUInt32BE(epoch, 8);
  out.writeIntBE(firstId, 12, 6);
  out.writeUInt16BE(0, 18);
  out.writeUInt32BE(entries.length, 20);
  let o = HEADER_BYTES;
  const offsets: number[] = [];
  for (const e of entries) {
    offsets.push(o);
    out.writeUInt32BE(e.length, o);
    out.writeUInt32BE(crc32c(e), o + 4);
    e.copy(out, o + RECORD_OVERHEAD);
    o += RECORD_OVERHEAD + e.length;
  }
  const indexOffset = o;
  for (const off of offsets) o = out.writeUInt32BE(off, o);
  if (times) {
    o = out.writeUInt32BE(times.length, o);
    for (const t of times) {
      o = out.writeUInt32BE(t.firstId - firstId, o);
      o = out.writeDoubleBE(t.timeMs, o);
    }
  }
  if (snapshot) o += snapshot.copy(out, o);
  out.writeUInt32BE(indexOffset, o);
  out.writeUInt32BE(entries.length, o + 4);
  out.writeUInt32BE(metaChecksum(out.subarray(0, HEADER_BYTES), out.subarray(indexOffset, o)), o + 8);
  TRAILER_MAGIC.copy(out, o + 12);
  return out;
}

/** Decodes and verifies a whole object; entries are views into `body`. */
export function decodeObject(body: Buffer): DecodedObject {
  if (body.length < HEADER_BYTES + TRAILER_BYTES) throw new CorruptObjectError(`object of ${body.length} bytes is too short`);
  const { indexOffset, count } = readTrailer(body.subarray(body.length - TRAILER_BYTES));
  const header = body.subarray(0, HEADER_BYTES);
  const version = header.readUInt8(4);
  const indexEnd = indexOffset + 4 * count;
  if (version === V1 ? indexEnd + TRAILER_BYTES !== body.length : indexEnd + TRAILER_BYTES > body.length) throw new CorruptObjectError('index does not end where the trailer starts');
  const meta = body.subarray(indexOffset, body.length - TRAILER_BYTES);
  if (metaChecksum(header, meta) !== body.readUInt32BE(body.length - 8)) throw new CorruptObjectError('header or index checksum mismatch');
  if (!header.subarray(0, 4).equals(MAGIC) || version < V1 || version > VERSION) throw new CorruptObjectError('not a Tern object of a known version');
  if (header.readUInt32BE(20) !== count) throw new CorruptObjectError('header and trailer disagree on the entry count');
  const entries = decodeRecords(body, HEADER_BYTES, indexOffset, count);
  const firstId = header.readIntBE(12, 6);
  const object: DecodedObject = { epoch: header.readUInt32BE(8), firstId, entries, times: [] };
  let sectionsAt = indexEnd;
  if (version >= VERSION) {
    object.times = decodeTimes(body.subarray(indexEnd, body.length - TRAILER_BYTES), firstId, count);
    sectionsAt += 4 + TIME_RUN_BYTES * object.times.length;
  }
  if (version === V2 || (version >= VERSION && sectionsAt < body.length - TRAILER_BYTES)) object.snapshotSection = body.subarray(sectionsAt, body.length - TRAILER_BYTES);
  return object;
}

/** The time index of a version 3 object (at the start of `section`), as runs with absolute ids. */
function decodeTimes(section: Buffer, firstId: number, count: number): TimeRun[] {
  if (section.length < 4) throw new CorruptObjectError('time index is cut short');
  const n = section.readUInt32BE(0);
  if (section.length < 4 + TIME_RUN_BYTES * n) throw new CorruptObjectError('time index is cut short');
  const times: TimeRun[] = [];
  for (let i = 0, o = 4; i < n; i++, o += TIME_RUN_BYTES) {
    const index = section.readUInt32BE(o);
    const timeMs = section.readDoubleBE(o + 4);
    const prev = times[i - 1];
    if (index >= count || (prev ? index <= prev.firstId - firstId || timeMs < prev.timeMs : index !== 0)) throw new CorruptObjectError(`time run ${i} is out of order`);
    times.push({ firstId: firstId + index, timeMs });
  }
  return times;
}

/** The time of entry `id` of a decoded object (UNKNOWN_TIME_MS in an object without times). */
export function timeInObject(object: DecodedObject, id: number): number {
  let t = UNKNOWN_TIME_MS;
  for (const run of object.times) {
    if (run.firstId > id) break;
    t = run.timeMs;
  }
  return t;
}

/** The snapshot section of a version 2 object. */
export function encodeSnapshot(snapshot: ProducerSnapshot): Buffer {
  let size = 6 + 4;
  for (const p of snapshot.producers) size += 1 + p.producerId.length + 8 + 1 + p.batches.length * (8 + 4 + 6);
  const out = Buffer.allocUnsafe(size);
  let o = out.writeIntBE(snapshot.throughId, 0, 6);
  o = out.writeUInt32BE(snapshot.producers.length, o);
  for (const p of snapshot.producers) {
    o = out.writeUInt8(p.producerId.length, o);
    o += out.write(p.producerId, o, 'latin1');
    o = out.writeDoubleBE(p.lastTimeMs, o);
    o = out.writeUInt8(p.batches.length, o);
    for (const b of p.batches) {
      o = out.writeDoubleBE(b.firstSeq, o);
      o = out.writeUInt32BE(b.count, o);
      o = out.writeIntBE(b.firstId, o, 6);
    }
  }
  return out;
}

export function decodeSnapshot(section: Buffer): ProducerSnapshot {
  let o = 0;
  const need = (n: number) => {
    if (o + n > section.length) throw new CorruptObjectError('producer snapshot is cut short');
  };
  need(10);
  const throughId = section.readIntBE(0, 6);
  const n = section.readUInt32BE(6);
  o = 10;
  const producers: ProducerSnapshot['producers'] = [];
  for (let i = 0; i < n; i++) {
    need(1);
    const idLength = section.readUInt8(o++);
    need(idLength + 9);
    const producerId = section.toString('latin1', o, o + idLength);
    o += idLength;
    const lastTimeMs = section.readDoubleBE(o);
    const batchCount = section.readUInt8(o + 8);
    o += 9;
    need(batchCount * 18);
    const batches = [];
    for (let b = 0; b < batchCount; b++, o += 18) batches.push({ firstSeq: section.readDoubleBE(o), count: section.readUInt32BE(o + 8), firstId: section.readIntBE(o + 12, 6) });
    producers.push({ producerId, lastTimeMs, batches });
  }
  if (o !== section.length) throw new CorruptObjectError('producer snapshot has trailing bytes');
  return { throughId, producers };
}

/** Parses the fixed trailer (the last TRAILER_BYTES of an object). */
export function readTrailer(trailer: Buffer): { indexOffset: number; count: number } {
  if (trailer.length !== TRAILER_BYTES || !trailer.subarray(12).equals(TRAILER_MAGIC)) throw new CorruptObjectError('bad trailer');
  return { indexOffset: trailer.readUInt32BE(0), count: trailer.readUInt32BE(4) };
}

/** Byte range [start, end) holding the records of entries i..j (0-based, inclusive) given the index offsets. */
export function recordRange(offsets: readonly number[], indexOffset: number, i: number, j: number): { start: number; end: number } {
  if (i < 0 || j >= offsets.length || i > j) throw new RangeError(`entries ${i}..${j} outside 0..${offsets.length - 1}`);
  return { start: offsets[i]!, end: j + 1 < offsets.length ? offsets[j + 1]! : indexOffset };
}

/** Verifies and splits consecutive records read from [start, end) of an object (e.g. one ranged GET). */
export function decodeRecords(bytes: Buffer, start: number, end: number, count: number): Buffer[] {
  const out: Buffer[] = [];
  let o = start;
  for (let n = 0; n < count; n++) {
    if (o + RECORD_OVERHEAD > end) throw new CorruptObjectError(`record ${n} is cut short`);
    const len = bytes.readUInt32BE(o);
    const sum = bytes.readUInt32BE(o + 4);
    if (o + RECORD_OVERHEAD + len > end) throw new CorruptObjectError(`record ${n} runs past its object`);
    const data = bytes.subarray(o + RECORD_OVERHEAD, o + RECORD_OVERHEAD + len);
    if (crc32c(data) !== sum) throw new CorruptObjectError(`record ${n} fails its CRC-32C`);
    out.push(data);
    o += RECORD_OVERHEAD + len;
  }
  if (o !== end) throw new CorruptObjectError('records do not fill their range');
  return out;
}

/** CRC-32C of header then index (and snapshot), carried on from one to the other: no concatenated copy of the two. */
function metaChecksum(header: Buffer, index: Buffer): number {
  return crc32c(index, crc32c(header));
}

/**
 * Object keys sort by first id and carry the epoch of the leader that wrote
 * them, so a stale leader's upload can never replace a recorded object:
 *   <prefix><cluster>/<log>/<uid>/<firstId, 16 digits>-<lastId, 16 digits>-e<epoch, 10 digits>.tern
 * `uid` is the log's creation (LogMeta.uid); a log created before uids has
 * its objects right under <prefix><cluster>/<log>/.
 */
export function objectKey(prefix: string, cluster: string, log: string, firstId: number, lastId: number, epoch: number, uid?: string): string {
  return `${logPrefix(prefix, cluster, log, uid)}${pad(firstId, 16)}-${pad(lastId, 16)}-e${pad(epoch, 10)}.tern`;
}

/** The epoch of the leader that wrote an object, from its key; undefined for a key this format did not make. */
export function epochOfKey(key: string): number | undefined {
  const m = /-e(\d{10})\.tern$/.exec(key);
  return m ? Number(m[1]) : undefined;
}

/** Where the objects of one creation of a log are (see objectKey). */
export function logPrefix(prefix: string, cluster: string, log: string, uid?: string): string {
  return `${prefix}${cluster}/${log}/${uid === undefined ? '' : `${uid}/`}`;
}

/**
 * Whether `key`, listed under `prefix` (a logPrefix), is an object of that creation: a
 * log created before uids has later creations' objects in folders below its
 * prefix, which its sweeps must never touch.
 */
export function isObjectUnder(prefix: string, key: string): boolean {
  return key.startsWith(prefix) && !key.includes('/', prefix.length);
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}
