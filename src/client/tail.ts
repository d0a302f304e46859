/**
 * The streaming tail: `GET /v1/logs/{log}/entries?from=ID&follow=true`
 * answers a chunked body of timed frames that grows as entries commit, on any
 * replica. A tail from a time asks `fromTime=T` until a stream has started,
 * whose `tern-from-id` says the id that time begins at; from then on it goes
 * by id. The stream may end at any time (failover, the replica stopping, a
 * slow reader cut off); the tail then resumes from the last id seen + 1, on
 * the next replica after a failure. Only answers that no retry can change end it:
 * the log does not exist, the ids are truncated, the token is refused.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { ClosedError, ConnectionError, TernClientError, TernServerError } from './errors.js';
import { backoffDelayMs, isTransient, retryDelayMs } from './retry.js';
import { header, jsonOf } from './transport.js';
import { ENTRIES_ACCEPT, frameStreamDecoder, startQuery } from './entries.js';
import type { Entry, ReadStart } from './types.js';
import type { TernClient } from './client.js';

/** Where the tail starts: `from` (the first id to deliver, default 0) or `fromTime` (the first entry at or after it). */
export interface TailOptions extends ReadStart {
  /** Ends the tail (the iterator returns). */
  signal?: AbortSignal;
  /** A stream silent this long (no entry, no keep-alive) is presumed dead and reopened. @default 30000 */
  idleTimeoutMs?: number;
}

const DEFAULT_IDLE_TIMEOUT_MS = 30_000;

export async function* tail(client: TernClient, log: string, options: TailOptions): AsyncGenerator<Entry> {
  /** The next id to deliver; undefined until a stream from `fromTime` has said where that time begins. */
  let next = options.fromTime === undefined ? (options.from ?? 0) : undefined;
  const first = startQuery(options);
  let failures = 0;
  let replica = 0;
  const path = () => {
    const q = next === undefined ? first : new URLSearchParams({ from: String(next) });
    q.set('follow', 'true');
    return `/v1/logs/${encodeURIComponent(log)}/entries?${q}`;
  };
  while (!options.signal?.aborted) {
    client.checkOpen();
    const url = client.replicaUrl(replica);
    const abort = new AbortController();
    const onAbort = () => abort.abort();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    let delivered = 0;
    try {
      const res = await client.transport.stream(url, path(), {
        headers: { accept: ENTRIES_ACCEPT },
        headersTimeoutMs: client.options.requestTimeoutMs,
        idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
        signal: abort.signal,
      });
      if (res.status >= 400) {
        const chunks: Buffer[] = [];
        for await (const c of res.body) chunks.push(c);
        jsonOf({ status: res.status, headers: res.headers, body: Buffer.concat(chunks) });
      }
      // Ids are implied: the first is the tern-from-id header's (else the `from` asked for), each entry the next.
      const fromId = header(res.headers, 'tern-from-id') ?? next;
      if (fromId === undefined) throw new TernClientError('BAD_ANSWER', 'a tail from a time answered without tern-from-id');
      let id = Number(fromId);
      next ??= id;
      const decoder = frameStreamDecoder(res.headers);
      for await (const chunk of res.body) {
        const { entries, times } = decoder.push(chunk);
        for (let i = 0; i < entries.length; i++) {
          const entryId = id++;
          // A replica that trails may start below what was delivered: never deliver an id twice.
          if (entryId < next) continue;
          next = entryId + 1;
          delivered++;
          failures = 0;
          // A copy, so an entry the caller keeps does not pin the whole chunk.
          yield { id: entryId, timeMs: times?.[i] ?? 0, data: Buffer.from(entries[i]!) };
        }
      }
      // A clean end (the server closed the stream). With nothing delivered it may be a
      // server without follow, answering one read: wait before asking again, as a poll.
      if (delivered === 0) await pause(backoffDelayMs(failures++, client.options.backoff), options.signal);
    } catch (err) {
      if (options.signal?.aborted) return;
      if (err instanceof ClosedError) throw err;
      const retryable = isTransient(err) || err instanceof ConnectionError || !(err instanceof TernServerError);
      if (!retryable) throw err;
      replica++;
      await pause(retryDelayMs(err, failures++, client.options.backoff), options.signal);
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
      abort.abort();
    }
  }
}

function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return sleep(ms, undefined, signal ? { signal } : undefined).catch(() => undefined);
}
