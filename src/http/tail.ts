/**
 * The streaming tail's way out (`GET /v1/logs/{log}/entries?follow=true`):
 * one chunked HTTP/1.1 response kept open, carrying frames
 * (`application/vnd.tern.frames`, with keep-alive frames of length
 * 0xFFFFFFFF) or, for `Accept: application/json`, newline-delimited JSON
 * (`application/x-ndjson`). Why not server-sent events: entries are binary,
 * and SSE is text, so every entry would pay base64 and every client a text
 * parser (README, Client API). What to send and when is the replica's
 * (src/replica/tail-stream.ts); this file only adapts the Node response to
 * the stream's TailSink and ends it: with the trailer `tern-end` saying why
 * when it ends cleanly, by cutting the connection when the reader was too
 * slow (its connection would not take a trailer anyway).
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { TernError } from '../errors.js';
import { FRAMES_CONTENT_TYPE, TIMED_FRAMES_CONTENT_TYPE } from '../frames.js';
import type { ReplicaApi } from '../replica/api.js';
import type { TailEnd, TailFormat, TailSink } from '../replica/tail-stream.js';
import { JSON_TYPE } from './bodies.js';

export const NDJSON_TYPE = 'application/x-ndjson';
/** The trailer that says why a stream ended. */
export const TAIL_END_TRAILER = 'tern-end';
/** Query parameters of a plain read that mean nothing to a stream (400 with follow=true). */
const READ_ONLY_PARAMS = ['limit', 'waitMs'];

/** The format a reader asks for: timed frames when it names them, NDJSON when it accepts JSON (curl users), frames otherwise. */
export function tailFormatOf(accept: string | undefined): TailFormat {
  const a = accept ?? '';
  if (a.includes(TIMED_FRAMES_CONTENT_TYPE)) return 'timed-frames';
  return a.includes(NDJSON_TYPE) || a.includes(JSON_TYPE) ? 'ndjson' : 'frames';
}

const CONTENT_TYPES: Record<TailFormat, string> = { frames: FRAMES_CONTENT_TYPE, 'timed-frames': TIMED_FRAMES_CONTENT_TYPE, ndjson: NDJSON_TYPE };

/** Streams `log` from `from` to the reader of `req` until the stream ends. */
export async function streamTail(replica: ReplicaApi, req: FastifyRequest, reply: FastifyReply, log: string, from: number): Promise<void> {
  const given = new URLSearchParams(req.url.slice(req.url.indexOf('?') + 1));
  const extra = READ_ONLY_PARAMS.filter((p) => given.has(p));
  if (extra.length > 0) throw new TernError('BAD_REQUEST', `follow=true streams until the stream ends: ${extra.join(' and ')} do not apply`);
  const format = tailFormatOf(req.headers.accept);
  // Checked before the answer starts, so these errors are ordinary answers (404, 410, 503).
  const stream = await replica.openTail(log, from, format);
  const res = reply.raw;
  void reply.hijack();
  res.socket?.setNoDelay(true);
  res.writeHead(200, {
    'content-type': CONTENT_TYPES[format],
    'cache-control': 'no-store',
    'tern-from-id': String(from),
    trailer: TAIL_END_TRAILER,
    // Proxies that buffer answers (nginx) pass this one through as it comes.
    'x-accel-buffering': 'no',
    ...(replica.isStopping ? { connection: 'close' } : {}),
  });
  res.flushHeaders();
  let closed = false;
  res.once('close', () => (closed = true));
  const sink: TailSink = {
    write: (chunk) => void res.write(chunk),
    get buffered() {
      return res.writableLength;
    },
    get closed() {
      return closed || res.destroyed;
    },
    onProgress(listener) {
      res.on('drain', listener);
      res.on('close', listener);
      return () => {
        res.off('drain', listener);
        res.off('close', listener);
      };
    },
  };
  let end: TailEnd;
  try {
    end = await stream.run(sink);
  } catch (err) {
    req.log.error({ err, log }, 'tail stream failed');
    end = 'error';
  }
  if (end === 'too-slow' || end === 'error') {
    res.destroy();
    return;
  }
  if (res.destroyed || res.writableEnded) return;
  res.addTrailers({ [TAIL_END_TRAILER]: end });
  res.end();
}
