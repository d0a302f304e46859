/**
 * Transparent forwarding of a log command (handoff) from a replica that does
 * not lead the log to the one that does: the body is relayed as it came, the
 * leader's answer, error or not, is relayed back unchanged. The header marks
 * one hop: a forwarded request is never forwarded again. The client's
 * Authorization goes along: the leader's client port checks it as its own. (Appends take their
 * own, batched path: src/peer/append-forwarder.ts.)
 */
import { Agent } from 'undici';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { forwardingFailed } from '../errors.js';
import type { OutgoingTls } from '../peer/tls.js';

export const FORWARDED_HEADER = 'x-tern-forwarded-by';

/** Log commands forwarded at once to one leader: they are rare (handoffs), so this only bounds a burst. */
const CONNECTIONS_PER_LEADER = 32;
/** An idle connection to a leader is kept this long, so a burst of commands reuses it. */
const KEEP_ALIVE_MS = 60_000;

export class Forwarder {
  private readonly agent: Agent;

  constructor(
    private readonly self: string,
    timeoutMs: number,
    /** TLS to the leader's client listener (src/peer/tls.ts); undefined: plain HTTP. */
    tls?: OutgoingTls,
  ) {
    this.agent = new Agent({ connections: CONNECTIONS_PER_LEADER, headersTimeout: timeoutMs, bodyTimeout: timeoutMs, connectTimeout: timeoutMs, keepAliveTimeout: KEEP_ALIVE_MS, connect: tls });
  }

  async forward(leaderUrl: string, path: string, req: FastifyRequest<{ Body: Buffer | undefined }>, reply: FastifyReply): Promise<FastifyReply> {
    const { authorization } = req.headers;
    let res;
    try {
      res = await this.agent.request({
        origin: leaderUrl,
        path,
        method: 'POST',
        headers: {
          'content-type': req.headers['content-type'] ?? 'application/octet-stream',
          [FORWARDED_HEADER]: this.self,
          ...(authorization === undefined ? {} : { authorization }),
        },
        body: req.body ?? Buffer.alloc(0),
      });
    } catch (err) {
      throw forwardingFailed(leaderUrl, err);
    }
    const payload = Buffer.from(await res.body.arrayBuffer());
    const retryAfter = res.headers['retry-after'];
    if (retryAfter !== undefined) void reply.header('retry-after', retryAfter);
    const type = res.headers['content-type'];
    if (type !== undefined) void reply.header('content-type', type);
    return reply.code(res.statusCode).send(payload);
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}
