/**
 * An append carried out on the replica that leads the log: the one path both
 * a client's own request and an append forwarded by another replica take, so
 * both get the same answer and are counted once, where they are processed.
 */
import type { ClientAppend, HeldIds } from '../peer/forwarded-appends.js';
import type { ReplicaApi } from '../replica/api.js';
import { toTernError } from './error-handler.js';

/** The 200 body: `{id, epoch, timeMs}` for a single raw entry, `{firstId, lastId, epoch, timeMs}` for a batch; `duplicate: true` when a producer's retry got the ids of the batch it repeats. */
export type AppendAnswer = ({ id: number; epoch: number } | { firstId: number; lastId: number; epoch: number }) & { timeMs?: number; duplicate?: true };

/**
 * Resolves once a quorum holds the entries, or, with `heldBy` (the follower
 * that forwarded the append), once they have ids if that follower keeps up:
 * then `held` names them, for it to wait for (replica/appends.ts). Throws
 * what the client must be told otherwise.
 */
export async function appendHere(replica: ReplicaApi, name: string, append: ClientAppend, heldBy?: string): Promise<{ answer: AppendAnswer; held?: HeldIds }> {
  const bytes = entryBytes(append.entries);
  try {
    const r = await replica.append(name, append, heldBy);
    replica.metrics.appended(name, 'ok', append.entries.length, bytes);
    const answer: AppendAnswer = append.single ? { id: r.firstId, epoch: r.epoch } : { firstId: r.firstId, lastId: r.lastId, epoch: r.epoch };
    if (r.timeMs !== undefined) answer.timeMs = r.timeMs;
    if (r.duplicate) answer.duplicate = true;
    return r.held ? { answer, held: { epoch: r.epoch, lastId: r.lastId } } : { answer };
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
