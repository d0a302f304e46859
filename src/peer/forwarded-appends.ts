/**
 * Owns the forwarded-appends format (pure: no I/O), the body a follower
 * sends a log's leader for the appends it took (append-forwarder.ts) and
 * the leader's answer (http/forwarded-appends.ts).
 *
 * Request (content type application/vnd.tern.forwarded-appends): frames
 * (frames.ts), one per append: u8 kind (bit 0: a single raw entry, else a
 * batch; bit 1: from an idempotent producer; bit 2: with its own time), u8
 * log name length, the log name (ASCII), with bit 1 u8 producer id length,
 * the producer id (ASCII) and f64 seq (a safe integer, exact in a float64),
 * with bit 2 f64 timeMs, then the entries as frames. A leader that predates
 * a bit answers its kinds 400: the producer's and time headers are never
 * dropped on the way.
 * Answer: frames, one per append in the same order: u16 big-endian HTTP
 * status, then the JSON body the client gets. A held answer (a 200 the
 * follower gives once it holds the ids) has status HELD_STATUS, then u32
 * epoch and f64 last id before the JSON. A leader gives held answers only to
 * a follower whose request's content type names it (`held=<replica id>`): a
 * leader that predates them ignores the parameter and answers at commit.
 */
import { TernError } from '../errors.js';
import { decodeFrames, encodeFrames } from '../frames.js';
import { FORWARDED_APPENDS_CONTENT_TYPE } from './paths.js';

/** An idempotent producer's append: its id and the seq of its first entry (quorum/producers.ts). */
export interface ProducerRef {
  id: string;
  seq: number;
}

/** An append as the client meant it: its entries, whether it was a single raw entry (answered `{id}`) or a batch (`{firstId, lastId}`), and its producer, if any. */
export interface ClientAppend {
  entries: Buffer[];
  single: boolean;
  producer?: ProducerRef;
  /** The entries' own time (Tern-Time-Ms); absent: the leader's clock. */
  timeMs?: number;
}

/** The ids a held answer gave (replica/appends.ts), in the epoch of the leader that gave them. */
export interface HeldIds {
  epoch: number;
  lastId: number;
}

/**
 * What the client of a forwarded append is answered: the leader's status and
 * JSON body, relayed as they are; with `held`, only once the follower holds
 * those ids itself (200 then).
 */
export interface ForwardedAnswer {
  status: number;
  json: string;
  held?: HeldIds;
}

/** One forwarded append as read by the leader; its entries are still frames, to be checked against the leader's own limits. */
export interface ForwardedItem {
  log: string;
  single: boolean;
  producer?: ProducerRef;
  timeMs?: number;
  frames: Buffer;
}

const KIND_BATCH = 0;
/** A producer's kinds are the plain ones plus this. */
const KIND_PRODUCER = 2;
/** An append with its own time: plus this. */
const KIND_TIMED = 4;
/** The range of an answer's status: HTTP's. */
const MIN_HTTP_STATUS = 100;
const MAX_HTTP_STATUS = 599;
const KIND_SINGLE = 1;
/** An answer's status that no HTTP status is: a held answer. */
const HELD_STATUS = 1;
/** The content type's parameter that asks for held answers, naming the forwarding replica. */
const HELD_PARAMETER = 'held=';

/** The content type of a forwarded batch from `replica`, which takes held answers. */
export function forwardedAppendsType(replica: string): string {
  return `${FORWARDED_APPENDS_CONTENT_TYPE}; ${HELD_PARAMETER}${replica}`;
}

/** The replica a forwarded batch's content type says takes held answers, if any. */
export function heldAnswersFor(contentType: string | undefined): string | undefined {
  const at = contentType?.indexOf(HELD_PARAMETER) ?? -1;
  if (at < 0) return undefined;
  const end = contentType!.indexOf(';', at);
  return contentType!.slice(at + HELD_PARAMETER.length, end < 0 ? undefined : end).trim() || undefined;
}

/** One append as its frame of the request: chunks to write in order (entries referenced, not copied) and their total. */
export function encodeForwardedAppend(log: string, append: ClientAppend): { chunks: Buffer[]; bytes: number } {
  const name = Buffer.from(log, 'latin1');
  const producer = append.producer;
  const timed = append.timeMs !== undefined;
  const head = Buffer.allocUnsafe(6 + name.length + (producer ? 1 + producer.id.length + 8 : 0) + (timed ? 8 : 0));
  head.writeUInt8((append.single ? KIND_SINGLE : KIND_BATCH) + (producer ? KIND_PRODUCER : 0) + (timed ? KIND_TIMED : 0), 4);
  head.writeUInt8(name.length, 5);
  let o = 6 + name.copy(head, 6);
  if (producer) {
    o = head.writeUInt8(producer.id.length, o);
    o += head.write(producer.id, o, 'latin1');
    o = head.writeDoubleBE(producer.seq, o);
  }
  if (timed) head.writeDoubleBE(append.timeMs!, o);
  const chunks = [head, ...encodeFrames(append.entries)];
  let bytes = 0;
  for (const c of chunks) bytes += c.length;
  // The item's own frame length, written into the space left at the front of its head.
  head.writeUInt32BE(bytes - 4, 0);
  return { chunks, bytes };
}

/** The appends of a request body, each still in its own format (decodeForwardedAppend). */
export function splitForwardedAppends(body: Buffer): Buffer[] {
  try {
    return decodeFrames(body);
  } catch (err) {
    throw new TernError('BAD_REQUEST', `forwarded appends: ${(err as Error).message}`);
  }
}

/** One append of a request; the producer's id and seq and the time are returned unchecked (the leader checks them as a client's). */
export function decodeForwardedAppend(item: Buffer): ForwardedItem {
  if (item.length < 2 || item.length < 2 + item[1]!) throw new TernError('BAD_REQUEST', 'forwarded append: truncated header');
  const kind = item[0]!;
  if (kind > KIND_TIMED + KIND_PRODUCER + KIND_SINGLE) throw new TernError('BAD_REQUEST', `forwarded append: unknown kind ${kind}`);
  const decoded: ForwardedItem = { log: item.toString('latin1', 2, 2 + item[1]!), single: (kind & KIND_SINGLE) !== 0, frames: item };
  let o = 2 + item[1]!;
  if ((kind & KIND_PRODUCER) !== 0) {
    if (item.length < o + 1 || item.length < o + 1 + item[o]! + 8) throw new TernError('BAD_REQUEST', 'forwarded append: truncated producer');
    const id = item.toString('latin1', o + 1, o + 1 + item[o]!);
    o += 1 + item[o]!;
    decoded.producer = { id, seq: item.readDoubleBE(o) };
    o += 8;
  }
  if ((kind & KIND_TIMED) !== 0) {
    if (item.length < o + 8) throw new TernError('BAD_REQUEST', 'forwarded append: truncated time');
    decoded.timeMs = item.readDoubleBE(o);
    o += 8;
  }
  decoded.frames = item.subarray(o);
  return decoded;
}

/** Bytes of a held answer's ids: u32 epoch, f64 last id. */
const HELD_BYTES = 12;

/** The answer body, written once into one buffer: each frame is its u32 length, the u16 status, a held answer's ids, the JSON. */
export function encodeForwardedAnswers(answers: readonly ForwardedAnswer[]): Buffer {
  let size = 0;
  for (const a of answers) size += 4 + 2 + (a.held ? HELD_BYTES : 0) + Buffer.byteLength(a.json);
  const out = Buffer.allocUnsafe(size);
  let o = 0;
  for (const a of answers) {
    const len = Buffer.byteLength(a.json);
    o = out.writeUInt32BE(2 + (a.held ? HELD_BYTES : 0) + len, o);
    if (a.held) {
      o = out.writeUInt16BE(HELD_STATUS, o);
      o = out.writeUInt32BE(a.held.epoch, o);
      o = out.writeDoubleBE(a.held.lastId, o);
    } else {
      o = out.writeUInt16BE(a.status, o);
    }
    o += out.write(a.json, o, 'utf8');
  }
  return out;
}

/** Throws on an answer too short for its status or whose status is no HTTP status: it is relayed to a client as it is. */
export function decodeForwardedAnswers(body: Buffer): ForwardedAnswer[] {
  return decodeFrames(body).map((a) => {
    const status = a.length >= 2 ? a.readUInt16BE(0) : 0;
    if (status === HELD_STATUS && a.length >= 2 + HELD_BYTES) {
      return { status: 200, json: a.toString('utf8', 2 + HELD_BYTES), held: { epoch: a.readUInt32BE(2), lastId: a.readDoubleBE(6) } };
    }
    if (status < MIN_HTTP_STATUS || status > MAX_HTTP_STATUS) throw new Error(`forwarded answer: no HTTP status (${a.length} bytes, status ${status})`);
    return { status, json: a.toString('utf8', 2) };
  });
}
