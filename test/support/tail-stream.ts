/**
 * A reader of a streaming tail (`GET /v1/logs/{log}/entries?follow=true`) for
 * the tests and the tail benchmark: opens the stream with undici, decodes its
 * frames as they arrive (src/frames.ts FrameStreamDecoder) and calls
 * `onEntry` with each entry's id (counted from the stream's `from`) at the
 * moment its bytes arrived. `ended` resolves with the `tern-end` trailer (or
 * why the stream broke off).
 */
import { request, type Dispatcher } from 'undici';
import { FrameStreamDecoder } from '../../src/frames.js';

export interface TailEntry {
  id: number;
  data: Buffer;
}

export interface OpenTail {
  /** Status and headers of the answer (a refused stream has its error body in `errorBody`). */
  status: number;
  headers: Record<string, string | string[] | undefined>;
  errorBody?: string;
  entries: TailEntry[];
  keepAlives: number;
  /** Resolves when the stream ends: its `tern-end` trailer, or `broken: <error>` when cut off. */
  ended: Promise<string>;
  close(): void;
}

export interface TailOptions {
  onEntry?: (entry: TailEntry) => void;
  token?: string;
  dispatcher?: Dispatcher;
  /** Keep no copy of the entries (a long benchmark run). */
  keep?: boolean;
}

export async function openTail(baseUrl: string, log: string, from: number, options: TailOptions = {}): Promise<OpenTail> {
  const abort = new AbortController();
  const headers: Record<string, string> = { accept: 'application/vnd.tern.frames' };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  const res = await request(`${baseUrl}/v1/logs/${log}/entries?from=${from}&follow=true`, {
    headers,
    signal: abort.signal,
    bodyTimeout: 0,
    headersTimeout: 10_000,
    ...(options.dispatcher ? { dispatcher: options.dispatcher } : {}),
  });
  const tail: OpenTail = { status: res.statusCode, headers: res.headers, entries: [], keepAlives: 0, ended: Promise.resolve('refused'), close: () => abort.abort() };
  if (res.statusCode !== 200) {
    tail.errorBody = await res.body.text();
    return tail;
  }
  const decoder = new FrameStreamDecoder();
  let next = from;
  tail.ended = (async () => {
    try {
      for await (const chunk of res.body) {
        const got = decoder.push(chunk as Buffer);
        tail.keepAlives += got.keepAlives;
        for (const data of got.entries) {
          const entry = { id: next++, data };
          if (options.keep !== false) tail.entries.push(entry);
          options.onEntry?.(entry);
        }
      }
      const end = res.trailers['tern-end'];
      return typeof end === 'string' ? end : 'no trailer';
    } catch (err) {
      return `broken: ${(err as Error).message}`;
    }
  })();
  return tail;
}
