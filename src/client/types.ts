/** The shapes the server answers (README, Client API (v1)). Ids are integers; -1 means none. */

import type { LogStatus } from '../replica/types.js';

/** A log's status (`GET /v1/logs/{log}`): the replica's own answer type, one definition for both sides. */
export type { LogStatus };
export type SegmentStatus = LogStatus['segments'][number];

/** An entry of a log: its id and its bytes. */
export interface Entry {
  id: number;
  data: Buffer;
}

export interface ReadPage {
  entries: { id: number; data: Buffer }[];
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
  duplicate?: boolean;
}

/** What `append` accepts as an entry: bytes, or a string sent as UTF-8. */
export type EntryData = Buffer | Uint8Array | string;

export function toBuffer(data: EntryData): Buffer {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}
