/**
 * Request bodies of the client API, parsed and checked in full before
 * anything happens (no partial batch is ever proposed): appends in their
 * three media types, and the small JSON objects of the log commands
 * (retention policies and readers' positions included).
 */
import { TernError } from '../errors.js';
import { FRAMES_CONTENT_TYPE, FrameLimitError, decodeFrames } from '../frames.js';
import type { ClientAppend, ProducerRef } from '../peer/forwarded-appends.js';
import { isTimestamp } from '../quorum/entry-buffer.js';
import { PRODUCER_ID_PATTERN, isProducerSeq } from '../quorum/producers.js';
import type { RetentionPolicy } from '../fencing/keys.js';
import type { HttpLimits } from '../replica/api.js';

/**
 * Log names: what the routes accept in `{log}` and forwarded appends carry.
 * Not `.` or `..`: names become path segments of object keys.
 */
export const LOG_NAME_PATTERN = '^(?!\\.\\.?$)[A-Za-z0-9._-]{1,128}$';
/** The limits an append body is checked against. */
export type AppendLimits = Pick<HttpLimits, 'maxEntryBytes' | 'maxRequestEntries'>;
export const OCTETS = 'application/octet-stream';
export const JSON_TYPE = 'application/json';
/** The Content-Type of every JSON answer. */
export const JSON_UTF8 = 'application/json; charset=utf-8';
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** The media type of a Content-Type header: lower case, parameters dropped. */
export function mediaType(contentType: string | undefined): string {
  // The common case, a bare raw append, costs no string work: this runs up to twice per append.
  if (contentType === OCTETS) return OCTETS;
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase();
}

/** The entries of an append body; all-or-nothing validation so no partial batch is ever proposed. */
export function parseAppendBody(type: string, body: Buffer | undefined, limits: AppendLimits): ClientAppend {
  const { maxEntryBytes } = limits;
  const bytes = body ?? Buffer.alloc(0);
  let entries: Buffer[];
  if (type === OCTETS) {
    entries = [bytes];
  } else if (type === FRAMES_CONTENT_TYPE) {
    entries = framesOf(bytes, limits);
  } else if (type === JSON_TYPE) {
    entries = parseJsonBatch(bytes, limits.maxRequestEntries);
  } else {
    throw new TernError('UNSUPPORTED_MEDIA_TYPE', `content type "${type}" is not one of ${OCTETS}, ${JSON_TYPE}, ${FRAMES_CONTENT_TYPE}`);
  }
  if (type !== OCTETS && entries.length === 0) throw new TernError('BAD_REQUEST', 'a batch needs at least one entry');
  for (const e of entries) {
    if (e.length > maxEntryBytes) throw new TernError('TOO_LARGE', `entry of ${e.length} bytes is over the ${maxEntryBytes}-byte limit`);
  }
  return { entries, single: type === OCTETS };
}

/** The headers of an idempotent producer's append (Client API, Idempotent producer). */
export const PRODUCER_ID_HEADER = 'tern-producer-id';
export const PRODUCER_SEQ_HEADER = 'tern-producer-seq';

/**
 * The producer of an append of `count` entries from its headers: both or
 * neither, a valid id and a seq whose batch (seq..seq+count-1) stays a safe
 * integer. BAD_REQUEST otherwise.
 */
export function producerOf(headers: Record<string, string | string[] | undefined>, count: number): ProducerRef | undefined {
  const id = headers[PRODUCER_ID_HEADER];
  const seq = headers[PRODUCER_SEQ_HEADER];
  if (id === undefined && seq === undefined) return undefined;
  if (typeof id !== 'string' || typeof seq !== 'string') throw new TernError('BAD_REQUEST', 'Tern-Producer-Id and Tern-Producer-Seq go together, once each');
  return checkedProducer({ id, seq: /^\d{1,16}$/.test(seq) ? Number(seq) : Number.NaN }, count);
}

/** A producer id and seq as the headers must carry them; BAD_REQUEST otherwise. */
export function checkedProducer(producer: ProducerRef, count: number): ProducerRef {
  if (!PRODUCER_ID_PATTERN.test(producer.id)) throw new TernError('BAD_REQUEST', 'Tern-Producer-Id must be 1-128 characters of [A-Za-z0-9._:-]');
  if (!isProducerSeq(producer.seq) || !isProducerSeq(producer.seq + Math.max(0, count - 1))) throw new TernError('BAD_REQUEST', 'Tern-Producer-Seq must be a non-negative safe integer (seq + entries - 1 too)');
  return producer;
}

/** An append's own time (Client API, Timestamps): what callers with their own clock or oracle send. */
export const TIME_HEADER = 'tern-time-ms';

/** The time an append's headers give its entries (undefined: the leader's clock); BAD_REQUEST unless a non-negative safe integer, once. */
export function timeOf(headers: Record<string, string | string[] | undefined>): number | undefined {
  const t = headers[TIME_HEADER];
  if (t === undefined) return undefined;
  return checkedTime(typeof t === 'string' && /^\d{1,16}$/.test(t) ? Number(t) : Number.NaN);
}

/** An append's time as Tern-Time-Ms must carry it; BAD_REQUEST otherwise. */
export function checkedTime(timeMs: number): number {
  if (!isTimestamp(timeMs)) throw new TernError('BAD_REQUEST', 'Tern-Time-Ms must be a non-negative safe integer (ms since the Unix epoch), given once');
  return timeMs;
}

/** Frames as entries, with a frame over the entry limit or frames over the count limit reported as TOO_LARGE and any other damage as BAD_REQUEST. */
export function framesOf(bytes: Buffer, limits: AppendLimits): Buffer[] {
  try {
    return decodeFrames(bytes, limits.maxEntryBytes, limits.maxRequestEntries);
  } catch (err) {
    if (err instanceof FrameLimitError) throw new TernError('TOO_LARGE', err.message);
    throw new TernError('BAD_REQUEST', (err as Error).message);
  }
}

export function parseJsonObject(body: Buffer | undefined, required: string[]): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse((body ?? Buffer.alloc(0)).toString('utf8'));
  } catch (err) {
    throw new TernError('BAD_REQUEST', `body is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new TernError('BAD_REQUEST', 'body must be a JSON object');
  for (const key of required) if (!(key in parsed)) throw new TernError('BAD_REQUEST', `body needs "${key}"`);
  return parsed as Record<string, unknown>;
}

/** BAD_REQUEST when `obj` (described as `what`) has a field not in `known`: a misspelt limit must not pass as no limit. */
export function onlyFields(obj: Record<string, unknown>, known: readonly string[], what: string): Record<string, unknown> {
  for (const key of Object.keys(obj)) if (!known.includes(key)) throw new TernError('BAD_REQUEST', `${what} has an unknown field "${key}" (known: ${known.join(', ')})`);
  return obj;
}

const RETENTION_LIMITS = ['maxAgeMs', 'maxBytes', 'maxEntries'] as const;

/**
 * The body of PUT /v1/logs/{log}: none, or {"retention": {maxAgeMs?, maxBytes?,
 * maxEntries?}} with positive safe integers. Undefined when it names no policy.
 */
export function parseCreateBody(body: Buffer | undefined): RetentionPolicy | undefined {
  if (!body || body.length === 0) return undefined;
  const { retention } = onlyFields(parseJsonObject(body, []), ['retention'], 'the body');
  if (retention === undefined) return undefined;
  if (typeof retention !== 'object' || retention === null || Array.isArray(retention)) throw new TernError('BAD_REQUEST', '"retention" must be an object');
  const policy: RetentionPolicy = {};
  for (const [key, value] of Object.entries(onlyFields(retention as Record<string, unknown>, RETENTION_LIMITS, '"retention"'))) {
    if (!Number.isSafeInteger(value) || (value as number) <= 0) throw new TernError('BAD_REQUEST', `"retention.${key}" must be a positive integer`);
    policy[key as (typeof RETENTION_LIMITS)[number]] = value as number;
  }
  return policy;
}

/** The body of PUT /v1/logs/{log}/readers/{reader}: {"nextId": N, "holdsRetention"?: bool}. */
export function parseReaderBody(body: Buffer | undefined): { nextId: number; holdsRetention: boolean } {
  const { nextId, holdsRetention = false } = onlyFields(parseJsonObject(body, ['nextId']), ['nextId', 'holdsRetention'], 'the body');
  if (!Number.isSafeInteger(nextId) || (nextId as number) < 0) throw new TernError('BAD_REQUEST', '"nextId" must be a non-negative integer');
  if (typeof holdsRetention !== 'boolean') throw new TernError('BAD_REQUEST', '"holdsRetention" must be true or false');
  return { nextId: nextId as number, holdsRetention };
}

function parseJsonBatch(body: Buffer, maxEntries: number): Buffer[] {
  const list = parseJsonObject(body, []).entries;
  if (!Array.isArray(list)) throw new TernError('BAD_REQUEST', 'body must be {"entries": ["<base64>", ...]}');
  if (list.length > maxEntries) throw new TernError('TOO_LARGE', `${list.length} entries are over the ${maxEntries}-entry limit of a request`);
  return list.map((item, i) => {
    if (typeof item !== 'string' || !BASE64.test(item)) throw new TernError('BAD_REQUEST', `entries[${i}] is not a base64 string`);
    return Buffer.from(item, 'base64');
  });
}
