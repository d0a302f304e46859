/**
 * Owns the binary encoding of the replication messages (pure: no I/O). Replication bodies carry raw entry
 * bytes, so JSON or base64 would cost a copy and a third more bytes per entry.
 *
 * AppendRequest (all integers big-endian; ids are signed 48-bit, enough for
 * 1.4e14 entries per log, and exact in a JS number):
 *   u8  version (1)      u8  log name length   bytes log name (ASCII)
 *   u8  leader id length bytes leader id
 *   u32 epoch            u32 seq              i48 firstId
 *   i32 prevEpoch        u32 entryEpoch       i48 commitId   u32 entry count
 *   per entry: u32 length, bytes
 *   version 3 adds, after the entry lengths and before the entries: u32 mark
 *   count, per mark (a producer batch whose first entry is in this message,
 *   quorum/producers.ts): u8 producer id length, producer id (ASCII),
 *   f64 firstSeq, i48 firstId, u32 count, f64 timeMs (seqs and times are safe
 *   integers, exact in a float64)
 *   version 4 adds, after the marks: u32 time run count, per run (entries from
 *   firstId on carry timeMs, quorum/entry-buffer.ts): i48 firstId, f64 timeMs;
 *   the first run at the message's firstId, runs ascending in ids and times
 * AppendReply:
 *   u8 version (1)  u8 status  u32 epoch  u32 seq  i48 lastId
 *   version 2 adds: u32 incarnation tag of the answering replica
 *   version 3 adds: u8 flags (bit 0: following, the replica has tail readers
 *                   of the log and asks for each commit point at once)
 *
 * Requests are the same in versions 1 to 3 but for version 3's marks: a
 * version N request says "this leader reads version N replies", and a
 * follower answers in the request's version (or its own, if older). A
 * replica of an older release refuses a newer request as unknown (400
 * UNSUPPORTED_VERSION_MESSAGE, before applying anything); the sender
 * (transport.ts) then sends it again one version older, without the marks
 * below version 3 and without the times below version 4 (such a replica's
 * entries keep the time of the entry before them, entry-buffer.ts), so
 * replicas of every version replicate to each other
 * during a rolling update (an idempotent producer's batches need every
 * replica at version 3 to be judged after a failover). Recovery fetches
 * (entry runs) are version 4 when they carry times, 3 with marks only, else 1.
 *
 * Decoding also checks what the fields' widths allow but the protocol does
 * not: ids below -1 (below 0 for an entry), an entry id past MAX_ID, a
 * prevEpoch below -1, entries of a later epoch than their sender's. Epochs
 * need no check: a u32 cannot exceed MAX_EPOCH.
 *
 * Reply status 3 (Full) is newer than both: a leader that does not know it
 * reads it as a failed delivery and resends after its backoff, which is what
 * Full asks for.
 */
import { isTimestamp, type TimeRun } from '../quorum/entry-buffer.js';
import { MAX_ID, ReplyStatus, type AppendReply, type AppendRequest, type EntryRun } from '../quorum/messages.js';
import { PRODUCER_ID_PATTERN, isProducerSeq, type ProducerMark } from '../quorum/producers.js';

const VERSION = 4;
/** The newest and the oldest request versions this replica speaks (a sender steps down to an older peer's, transport.ts). */
export const NEWEST_WIRE_VERSION = VERSION;
export const OLDEST_WIRE_VERSION = 1;
/** What a replica of any version says of a request version it does not know (the sender then steps down one). */
export const UNSUPPORTED_VERSION_MESSAGE = 'unsupported peer message version';
const V1 = 1;
const V2 = 2;
/** The first request version with producer marks. */
const MARKS_VERSION = 3;
/** The first request version with time runs: a replica that takes it also reads objects with times (object format 3). */
export const TIMES_VERSION = 4;
const TIME_RUN_BYTES = 6 + 8;
/** Bytes of a mark besides its producer id. */
const MARK_BYTES = 1 + 8 + 6 + 4 + 8;
const V1_REPLY_BYTES = 1 + 1 + 4 + 4 + 6;
const FOLLOWING_FLAG = 0x01;

export class WireError extends Error {}

/** Encoded request as a list of chunks whose total is `length`: entries are referenced, not copied. */
export function encodeAppendRequest(req: AppendRequest, version: number = VERSION): { chunks: Buffer[]; length: number } {
  const log = Buffer.from(req.log, 'latin1');
  const leader = Buffer.from(req.leader, 'latin1');
  const withMarks = version >= MARKS_VERSION;
  const marks = withMarks ? (req.marks ?? []) : [];
  let marksBytes = 0;
  if (withMarks) {
    marksBytes = 4;
    for (const m of marks) marksBytes += MARK_BYTES + m.producerId.length;
  }
  const times = version >= TIMES_VERSION ? (req.times ?? []) : undefined;
  const timesBytes = times ? 4 + TIME_RUN_BYTES * times.length : 0;
  const header = Buffer.allocUnsafe(1 + 1 + log.length + 1 + leader.length + 4 + 4 + 6 + 4 + 4 + 6 + 4 + 4 * req.entries.length + marksBytes + timesBytes);
  let o = header.writeUInt8(version, 0);
  o = header.writeUInt8(log.length, o);
  o += log.copy(header, o);
  o = header.writeUInt8(leader.length, o);
  o += leader.copy(header, o);
  o = header.writeUInt32BE(req.epoch, o);
  o = header.writeUInt32BE(req.seq >>> 0, o);
  o = header.writeIntBE(req.firstId, o, 6);
  o = header.writeInt32BE(req.prevEpoch, o);
  o = header.writeUInt32BE(req.entryEpoch, o);
  o = header.writeIntBE(req.commitId, o, 6);
  o = header.writeUInt32BE(req.entries.length, o);
  // Lengths go up front in the header so the whole message is header + raw entries.
  let length = header.length;
  for (const entry of req.entries) {
    o = header.writeUInt32BE(entry.length, o);
    length += entry.length;
  }
  if (withMarks) {
    o = header.writeUInt32BE(marks.length, o);
    for (const m of marks) {
      o = header.writeUInt8(m.producerId.length, o);
      o += header.write(m.producerId, o, 'latin1');
      o = header.writeDoubleBE(m.firstSeq, o);
      o = header.writeIntBE(m.firstId, o, 6);
      o = header.writeUInt32BE(m.count, o);
      o = header.writeDoubleBE(m.timeMs, o);
    }
  }
  if (times) {
    o = header.writeUInt32BE(times.length, o);
    for (const t of times) {
      o = header.writeIntBE(t.firstId, o, 6);
      o = header.writeDoubleBE(t.timeMs, o);
    }
  }
  return { chunks: [header, ...req.entries], length };
}

/** Decodes a request; entries are views into `body`, which must stay unmodified. */
export function decodeAppendRequest(body: Buffer): AppendRequest {
  const r = new Reader(body);
  const version = r.u8();
  if (version < V1 || version > VERSION) throw new WireError(UNSUPPORTED_VERSION_MESSAGE);
  const log = r.bytes(r.u8()).toString('latin1');
  const leader = r.bytes(r.u8()).toString('latin1');
  const epoch = r.u32();
  const seq = r.u32();
  const firstId = r.i48();
  const prevEpoch = r.i32();
  const entryEpoch = r.u32();
  const commitId = r.i48();
  const count = r.u32();
  const lengths = new Array<number>(count);
  for (let i = 0; i < count; i++) lengths[i] = r.u32();
  const marks = version >= MARKS_VERSION ? readMarks(r, firstId, count) : undefined;
  const times = version >= TIMES_VERSION ? readTimes(r, firstId, count) : undefined;
  const entries = new Array<Buffer>(count);
  for (let i = 0; i < count; i++) entries[i] = r.bytes(lengths[i]!);
  r.end();
  if (firstId < 0 || firstId + count - 1 > MAX_ID) throw new WireError(`ids ${firstId}+${count} out of range`);
  if (commitId < -1 || prevEpoch < -1) throw new WireError(`commitId ${commitId} or prevEpoch ${prevEpoch} out of range`);
  if (entryEpoch > epoch) throw new WireError(`entries of epoch ${entryEpoch} sent in epoch ${epoch}`);
  const req: AppendRequest = { log, leader, epoch, seq, firstId, prevEpoch, entryEpoch, commitId, entries };
  if (marks && marks.length > 0) req.marks = marks;
  if (times && times.length > 0) req.times = times;
  return req;
}

/** The time runs of a request of TIMES_VERSION or later: the first at firstId, each later one inside the message, ascending in ids and times, every time a safe integer. */
function readTimes(r: Reader, firstId: number, count: number): TimeRun[] {
  const n = r.u32();
  const times: TimeRun[] = [];
  for (let i = 0; i < n; i++) {
    const run: TimeRun = { firstId: r.i48(), timeMs: r.f64() };
    const prev = times[i - 1];
    if (!isTimestamp(run.timeMs)) throw new WireError('bad entry time');
    if (prev ? run.firstId <= prev.firstId || run.firstId >= firstId + count || run.timeMs < prev.timeMs : run.firstId !== firstId) throw new WireError(`time run at ${run.firstId} outside or out of order`);
    times.push(run);
  }
  return times;
}

/** The marks of a request of MARKS_VERSION or later: each must name a valid producer and a batch that starts among the message's entries, in ascending order. */
function readMarks(r: Reader, firstId: number, count: number): ProducerMark[] {
  const n = r.u32();
  const marks: ProducerMark[] = [];
  let after = firstId - 1;
  for (let i = 0; i < n; i++) {
    const producerId = r.bytes(r.u8()).toString('latin1');
    const mark: ProducerMark = { producerId, firstSeq: r.f64(), firstId: r.i48(), count: r.u32(), timeMs: r.f64() };
    if (!PRODUCER_ID_PATTERN.test(producerId) || !isProducerSeq(mark.firstSeq) || !isProducerSeq(mark.timeMs) || mark.count < 1) throw new WireError('bad producer mark');
    if (mark.firstId <= after || mark.firstId >= firstId + count) throw new WireError(`producer mark at ${mark.firstId} outside or out of order`);
    after = mark.firstId + mark.count - 1;
    marks.push(mark);
  }
  return marks;
}

/** The version of an encoded request: its reply must be encoded in the same one. */
export function requestVersion(body: Buffer): number {
  return body[0] ?? V1;
}

export function encodeAppendReply(reply: AppendReply, version: number = VERSION): Buffer {
  const v = Math.max(V1, Math.min(version, VERSION));
  const b = Buffer.allocUnsafe(V1_REPLY_BYTES + (v >= V2 ? 4 : 0) + (v >= 3 ? 1 : 0));
  let o = b.writeUInt8(v, 0);
  o = b.writeUInt8(reply.status, o);
  o = b.writeUInt32BE(reply.epoch, o);
  o = b.writeUInt32BE(reply.seq >>> 0, o);
  o = b.writeIntBE(reply.lastId, o, 6);
  if (v >= V2) o = b.writeUInt32BE((reply.incarnation ?? 0) >>> 0, o);
  if (v >= 3) b.writeUInt8(reply.following ? FOLLOWING_FLAG : 0, o);
  return b;
}

export function decodeAppendReply(body: Buffer): AppendReply {
  const r = new Reader(body);
  const version = r.u8();
  if (version < V1 || version > VERSION) throw new WireError('unsupported peer reply version');
  const status = r.u8();
  if (status > ReplyStatus.Full) throw new WireError(`unknown reply status ${status}`);
  const reply: AppendReply = { status: status as ReplyStatus, epoch: r.u32(), seq: r.u32(), lastId: r.i48() };
  if (version >= V2) reply.incarnation = r.u32();
  if (version >= 3 && (r.u8() & FOLLOWING_FLAG) !== 0) reply.following = true;
  r.end();
  if (reply.lastId < -1) throw new WireError(`lastId ${reply.lastId} out of range`);
  return reply;
}

class Reader {
  private o = 0;
  constructor(private readonly b: Buffer) {}
  private need(n: number): void {
    if (this.o + n > this.b.length) throw new WireError('truncated peer message');
  }
  u8(): number {
    this.need(1);
    return this.b.readUInt8(this.o++);
  }
  u32(): number {
    this.need(4);
    const v = this.b.readUInt32BE(this.o);
    this.o += 4;
    return v;
  }
  i32(): number {
    this.need(4);
    const v = this.b.readInt32BE(this.o);
    this.o += 4;
    return v;
  }
  f64(): number {
    this.need(8);
    const v = this.b.readDoubleBE(this.o);
    this.o += 8;
    return v;
  }
  i48(): number {
    this.need(6);
    const v = this.b.readIntBE(this.o, 6);
    this.o += 6;
    return v;
  }
  bytes(n: number): Buffer {
    this.need(n);
    const v = this.b.subarray(this.o, this.o + n);
    this.o += n;
    return v;
  }
  end(): void {
    if (this.o !== this.b.length) throw new WireError('trailing bytes in peer message');
  }
}

/** Runs as a sequence of (u32 length, AppendRequest-encoded run) frames. */
export function encodeEntryRuns(log: string, runs: readonly EntryRun[]): Buffer {
  const parts: Buffer[] = [];
  for (const run of runs) {
    const req: AppendRequest = { log, epoch: run.epoch, leader: '', seq: 0, firstId: run.firstId, prevEpoch: -1, entryEpoch: run.epoch, commitId: -1, entries: run.entries };
    if (run.marks && run.marks.length > 0) req.marks = run.marks;
    if (run.times && run.times.length > 0) req.times = run.times;
    const { chunks, length } = encodeAppendRequest(req, req.times ? TIMES_VERSION : req.marks ? MARKS_VERSION : V1);
    const len = Buffer.allocUnsafe(4);
    len.writeUInt32BE(length, 0);
    parts.push(len, ...chunks);
  }
  return Buffer.concat(parts);
}

export function decodeEntryRuns(body: Buffer): EntryRun[] {
  const runs: EntryRun[] = [];
  for (let o = 0; o < body.length; ) {
    if (o + 4 > body.length) throw new WireError('truncated run frame');
    const len = body.readUInt32BE(o);
    if (o + 4 + len > body.length) throw new WireError('truncated run');
    const req = decodeAppendRequest(body.subarray(o + 4, o + 4 + len));
    const run: EntryRun = { firstId: req.firstId, epoch: req.entryEpoch, entries: req.entries };
    if (req.marks) run.marks = req.marks;
    if (req.times) run.times = req.times;
    runs.push(run);
    o += 4 + len;
  }
  return runs;
}
