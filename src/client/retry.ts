/**
 * When to retry and how long to wait: pure, so the unit tests pin it.
 * Backoff is exponential with full jitter (a random wait in [0, min(max,
 * initial * 2^attempt))), as AWS's architecture blog recommends against
 * synchronized retry storms; a server's Retry-After is a floor.
 */
import { ConnectionError, TernClientError, TernServerError } from './errors.js';

export interface BackoffOptions {
  /** Upper bound of the first wait. @default 50 */
  initialMs: number;
  /** No wait is longer than this (Retry-After included). @default 2000 */
  maxMs: number;
}

export const DEFAULT_BACKOFF: Readonly<BackoffOptions> = Object.freeze({ initialMs: 50, maxMs: 2000 });

/** Full jitter: uniform in [0, min(maxMs, initialMs * 2^attempt)). `attempt` counts from 0. */
export function backoffDelayMs(attempt: number, options: BackoffOptions = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const ceiling = Math.min(options.maxMs, options.initialMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}

/** The wait before the next attempt after `err`: the jittered backoff, but never less than the server's Retry-After (capped by maxMs). */
export function retryDelayMs(err: unknown, attempt: number, options: BackoffOptions = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const backoff = backoffDelayMs(attempt, options, random);
  const retryAfter = err instanceof TernServerError ? err.retryAfterMs : undefined;
  return retryAfter === undefined ? backoff : Math.max(backoff, Math.min(retryAfter, options.maxMs));
}

/**
 * How an operation may be repeated:
 * - `safe`: repeating it is harmless (reads, create, truncate, an idempotent
 *   producer's batch, which the server recognises by its sequence): any
 *   transient failure is retried, whatever its outcome.
 * - `unsafe`: a repeat could apply it twice (a plain append, a handoff): only
 *   failures that certainly did not apply it are retried.
 */
export type RetryMode = 'safe' | 'unsafe';

/** Server codes that say "try again later or elsewhere": the log's leadership is moving, the replica is busy or starting. */
const TRANSIENT_CODES = new Set(['NOT_READY', 'NO_QUORUM', 'ACK_TIMEOUT', 'BUFFER_FULL', 'TOO_MANY', 'STORE_UNAVAILABLE', 'FENCED', 'REQUEST_TIMEOUT']);

/** Whether `err` is a passing condition worth another attempt (on this or another replica). */
export function isTransient(err: unknown): boolean {
  if (err instanceof ConnectionError) return true;
  if (err instanceof TernServerError) return TRANSIENT_CODES.has(err.code) || err.status === 502 || err.status === 503 || err.status === 504;
  return false;
}

/** Whether to try `err`'s operation again, given how it may be repeated. */
export function shouldRetry(err: unknown, mode: RetryMode): boolean {
  if (!isTransient(err)) return false;
  if (mode === 'safe') return true;
  // A 503 without maybeApplied was refused before it got an id (README, Errors).
  return (err as TernClientError).maybeApplied !== true;
}

/** Whether `err` says the log's leader may have moved (the cached leader is stale). */
export function leaderMayHaveMoved(err: unknown): boolean {
  return err instanceof ConnectionError || (err instanceof TernServerError && (err.code === 'FENCED' || err.code === 'NOT_READY' || err.code === 'NO_QUORUM' || err.code === 'ACK_TIMEOUT'));
}
