/**
 * Owns a client's append request from its parts to its answer, whichever way
 * it came in: the fastify route (client-api.ts) or the direct path
 * (direct-routes.ts). It checks the body where it arrived (bad input never
 * crosses the network), carries the append out here when this replica leads
 * the log, or forwards it to the leader, and counts it once.
 */
import { performance } from 'node:perf_hooks';
import { RETRY_AFTER_SECONDS } from '../errors.js';
import type { AppendForwarder } from '../peer/append-forwarder.js';
import type { ClientAppend } from '../peer/forwarded-appends.js';
import type { AppendLimits } from './bodies.js';
import type { ReplicaApi } from '../replica/api.js';
import { appendHere, entryBytes } from './append.js';
import { JSON_UTF8, mediaType, parseAppendBody, producerOf, timeOf } from './bodies.js';
import type { DirectReply } from './direct-routes.js';
import { toTernError } from './error-handler.js';

/**
 * Every acknowledged append names the replica that led the log for it, so a
 * client that sent it elsewhere (a load balancer, a stale cache after a
 * failover) can go straight to the leader next time and save the forwarding hop.
 */
const LEADER_HEADER = 'tern-leader';

export type AppendHeaders = Record<string, string | string[] | undefined>;

/** Resolves to the answer; throws a client error (bad body, unknown log, no leader) for the error handler to map. */
export async function answerAppend(replica: ReplicaApi, forwarder: AppendForwarder, limits: AppendLimits, name: string, headers: AppendHeaders, body: Buffer | undefined): Promise<DirectReply> {
  const started = performance.now();
  const metrics = replica.metrics;
  let append: ClientAppend | undefined;
  let counted = false;
  try {
    append = parseAppendBody(mediaType(headers['content-type'] as string | undefined), body, limits);
    const producer = producerOf(headers, append.entries.length);
    if (producer) append.producer = producer;
    const timeMs = timeOf(headers);
    if (timeMs !== undefined) append.timeMs = timeMs;
    const leader = await replica.leaderElsewhere(name);
    if (!leader) {
      counted = true;
      const { answer } = await appendHere(replica, name, append);
      metrics.acknowledged((performance.now() - started) / 1000);
      return { status: 200, body: JSON.stringify(answer), headers: { 'content-type': JSON_UTF8, [LEADER_HEADER]: replica.id } };
    }
    const answer = await forwarder.forward(leader.peerUrl, name, append);
    // Counted where it was processed (the leader); relayed as the leader wrote it.
    counted = true;
    if (answer.held) await replica.awaitHeld(name, answer.held);
    const replyHeaders: Record<string, string> = { 'content-type': JSON_UTF8 };
    if (answer.status === 200) {
      metrics.acknowledged((performance.now() - started) / 1000);
      metrics.forwardedAnswered(answer.held ? 'held' : 'commit');
      replyHeaders[LEADER_HEADER] = leader.id;
    }
    if (answer.status === 503) replyHeaders['retry-after'] = String(RETRY_AFTER_SECONDS);
    return { status: answer.status, body: answer.json, headers: replyHeaders };
  } catch (err) {
    if (!counted) metrics.appended(name, toTernError(err).code, append?.entries.length ?? 0, append ? entryBytes(append.entries) : (body?.length ?? 0));
    throw err;
  }
}
