/** The shapes the server answers (README, Client API (v1)). Ids are integers; -1 means none. */

import type { LogStatus } from '../replica/types.js';
import type { ReaderInfo, RetentionPolicy } from '../fencing/keys.js';
import type { ReaderStatus } from '../replica/retention.js';

/** A log's status (`GET /v1/logs/{log}`): the replica's own answer type, one definition for both sides. */
export type { LogStatus };
/** A log's retention policy (`{maxAgeMs?, maxBytes?, maxEntries?}`, positive integers, absent for no limit): the server's own type. */
export type { RetentionPolicy };
/** A named reader as a commit answers it (`{name, nextId, holdsRetention, updatedAt}`), and as reads and the status list it (with `lagEntries`): the server's own types. */
export type { ReaderInfo, ReaderStatus };
export type SegmentStatus = LogStatus['segments'][number];

/** An entry of a log: its id, its time and its bytes. */
export interface Entry {
  id: number;
  /** Milliseconds since the Unix epoch, given by the leader when it gave the id (never decreasing in id order); 0 for entries written before timestamps. */
  timeMs: number;
  data: Buffer;
}

/** Where a read or tail starts: at an id, or at the first entry whose time is at least `fromTime` (ms since the Unix epoch). At most one of them. */
export interface ReadStart {
  /** The first id. @default 0 */
  from?: number;
  /** The first entry at or after this time (ms since the Unix epoch), as `offsetForTime` finds it. */
  fromTime?: number;
}

/** `GET /v1/logs/{log}/offsets?time=T`: the first retained, committed entry at or after `time`, or (none yet) the next id to commit and `timeMs: null`. */
export interface TimeOffset {
  log: string;
  time: number;
  id: number;
  timeMs: number | null;
}

export interface ReadPage {
  entries: Entry[];
  /** The id to read from next. */
  nextId: number;
  /** The highest committed id the serving replica knows. */
  committedId: number;
}

export interface RecoverAnswer {
  log: string;
  epoch: number;
  recoveredId: number;
  warning: string;
}

/** An append's answer: one entry (`id`) or an atomic batch (`firstId`..`lastId`); `duplicate` when a producer's retry was already applied. */
export interface AppendAnswer {
  id?: number;
  firstId?: number;
  lastId?: number;
  epoch: number;
  /** The entries' time; absent on a duplicate whose entries the leader no longer holds in memory. */
  timeMs?: number;
  duplicate?: boolean;
}

/** What `Producer.send` resolves with: the entry's id and time (see AppendAnswer.timeMs for when it is absent). */
export interface Appended {
  id: number;
  timeMs?: number;
}

/** What `append` accepts as an entry: bytes, or a string sent as UTF-8. */
export type EntryData = Buffer | Uint8Array | string;

export function toBuffer(data: EntryData): Buffer {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}
