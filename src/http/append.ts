/**
 * An append carried out on the replica that leads the log: the one path both
 * a client's own request and an append forwarded by another replica take, so
 * both get the same answer and are counted once, where they are processed.
 */
import type { ClientAppend } from '../peer/forwarded-appends.js';
import type { ReplicaApi } from '../replica/api.js';
import { toTernError } from './error-handler.js';

/** The 200 body: `{id, epoch, timeMs}` for a single raw entry, `{firstId, lastId, epoch, timeMs}` for a batch; `duplicate: true` when a producer's retry got the ids of the batch it repeats. */
export type AppendAnswer = ({ id: number; epoch: number } | { firstId: number; lastId: number; epoch: number }) & { timeMs?: number; duplicate?: true };

/** Resolves once a quorum holds the entries; throws what the client must be told otherwise. */
export async function appendHere(replica: ReplicaApi, name: string, append: ClientAppend): Promise<AppendAnswer> {
  const bytes = entryBytes(append.entries);
  try {
    const r = await replica.append(name, append.entries, append.producer, append.timeMs);
    replica.metrics.appended(name, 'ok', append.entries.length, bytes);
    const answer: AppendAnswer = append.single ? { id: r.firstId, epoch: r.epoch } : { firstId: r.firstId, lastId: r.lastId, epoch: r.epoch };
    if (r.timeMs !== undefined) answer.timeMs = r.timeMs;
    if (r.duplicate) answer.duplicate = true;
    return answer;
  } catch (err) {
    replica.metrics.appended(name, toTernError(err).code, append.entries.length, bytes);
    throw err;
  }
}

export function entryBytes(entries: readonly Buffer[]): number {
  let bytes = 0;
  for (const e of entries) bytes += e.length;
  return bytes;
}
