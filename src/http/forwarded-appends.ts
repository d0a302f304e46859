/**
 * Owns the leader's answer to forwarded appends (the follower's side is
 * src/peer/append-forwarder.ts, the format src/peer/forwarded-appends.ts):
 * carries out every append of a batch (proposed in batch order, so they
 * share the next replication round) and answers each as the client API would
 * have.
 */
import { TernError } from '../errors.js';
import { isEtcdUnavailable } from '../etcd-unavailable.js';
import { decodeForwardedAppend, encodeForwardedAnswers, splitForwardedAppends, type ClientAppend, type ForwardedAnswer } from '../peer/forwarded-appends.js';
import type { ReplicaApi } from '../replica/api.js';
import { appendHere } from './append.js';
import { LOG_NAME_PATTERN, checkedProducer, checkedTime, framesOf, type AppendLimits } from './bodies.js';
import { toTernError } from './error-handler.js';

const LOG_NAME = new RegExp(LOG_NAME_PATTERN);

/**
 * The answer body for a request body of forwarded appends; throws only when
 * the batch itself cannot be read. `heldBy`: the forwarding replica, which
 * takes held answers (peer/forwarded-appends.ts).
 */
export async function answerForwardedAppends(replica: ReplicaApi, limits: AppendLimits, body: Buffer, heldBy: string | undefined): Promise<Buffer> {
  const items = splitForwardedAppends(body);
  return encodeForwardedAnswers(await Promise.all(items.map((item) => answerOne(replica, limits, item, heldBy))));
}

async function answerOne(replica: ReplicaApi, limits: AppendLimits, item: Buffer, heldBy: string | undefined): Promise<ForwardedAnswer> {
  try {
    const { log, append } = checkedAppend(item, limits);
    const { answer, held } = await appendHere(replica, log, append, heldBy);
    return held ? { status: 200, json: JSON.stringify(answer), held } : { status: 200, json: JSON.stringify(answer) };
  } catch (err) {
    if (isEtcdUnavailable(err)) replica.metrics.etcdFailed('request');
    const te = toTernError(err);
    return { status: te.status, json: JSON.stringify(te.toBody()) };
  }
}

/** One forwarded append, checked again against this replica's own limits. */
function checkedAppend(item: Buffer, limits: AppendLimits): { log: string; append: ClientAppend } {
  const { log, single, producer, timeMs, frames } = decodeForwardedAppend(item);
  if (!LOG_NAME.test(log)) throw new TernError('BAD_REQUEST', `forwarded append: bad log name "${log}"`);
  const entries = framesOf(frames, limits);
  if (single ? entries.length !== 1 : entries.length === 0) throw new TernError('BAD_REQUEST', 'forwarded append: wrong number of entries');
  const append: ClientAppend = { entries, single };
  if (producer) append.producer = checkedProducer(producer, entries.length);
  if (timeMs !== undefined) append.timeMs = checkedTime(timeMs);
  return { log, append };
}
