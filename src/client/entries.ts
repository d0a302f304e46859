/**
 * Entries as the client reads them, and where a read starts. Reads and tails
 * ask for timed frames (each entry with its time, no base64); a replica that
 * predates timestamps answers plain frames instead, whose entries read as
 * time 0 (as the server reads entries written before timestamps).
 */
import { FRAMES_CONTENT_TYPE, TIMED_FRAMES_CONTENT_TYPE, FrameStreamDecoder, decodeFrames, decodeTimedFrames } from '../frames.js';
import { TernClientError } from './errors.js';
import { header, type Answer } from './transport.js';
import type { Entry, ReadStart } from './types.js';

/** The Accept of reads and tails: timed frames, else plain frames. */
export const ENTRIES_ACCEPT = `${TIMED_FRAMES_CONTENT_TYPE}, ${FRAMES_CONTENT_TYPE};q=0.5`;

type Headers = Answer['headers'];

function isTimed(headers: Headers): boolean {
  return header(headers, 'content-type')?.startsWith(TIMED_FRAMES_CONTENT_TYPE) === true;
}

/** The decoder of a tail's body, timed or not as its Content-Type says. */
export function frameStreamDecoder(headers: Headers): FrameStreamDecoder {
  return new FrameStreamDecoder(Infinity, isTimed(headers));
}

/** A read's entries, the first numbered `fromId`. */
export function entriesOf(answer: Answer, fromId: number): Entry[] {
  try {
    if (!isTimed(answer.headers)) return decodeFrames(answer.body).map((data, i) => ({ id: fromId + i, timeMs: 0, data }));
    const { entries, times } = decodeTimedFrames(answer.body);
    return entries.map((data, i) => ({ id: fromId + i, timeMs: times[i]!, data }));
  } catch (err) {
    throw new TernClientError('BAD_ANSWER', `a read's frames do not parse: ${(err as Error).message}`, { cause: err });
  }
}

/** A time as the server takes it (ms since the Unix epoch, a non-negative integer); BAD_ARGUMENT otherwise. */
export function checkedTime(timeMs: number, name: string): number {
  if (!Number.isSafeInteger(timeMs) || timeMs < 0) throw new TernClientError('BAD_ARGUMENT', `${name} must be a non-negative integer of ms since the Unix epoch, got ${timeMs}`);
  return timeMs;
}

/** The query that says where a read starts: `from` (default 0) or `fromTime`, never both. */
export function startQuery(start: ReadStart): URLSearchParams {
  if (start.fromTime === undefined) return new URLSearchParams({ from: String(start.from ?? 0) });
  if (start.from !== undefined) throw new TernClientError('BAD_ARGUMENT', 'from and fromTime say where to start in two ways: give one');
  return new URLSearchParams({ fromTime: String(checkedTime(start.fromTime, 'fromTime')) });
}
