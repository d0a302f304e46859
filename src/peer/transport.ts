/**
 * Owns the replica's sending side of replication and peer commands: carries
 * messages to other replicas' peer listeners. Replication messages ride one
 * pipelined connection per peer (PeerLink), so messages to a follower
 * arrive in the order the leader sent them and no round waits for the one
 * before it to be answered; commands and recovery fetches go over undici on
 * connections of their own.
 */
import { Pool } from 'undici';
import type { AppendReply, AppendRequest } from '../quorum/messages.js';
import type { ProbeOutcome } from '../control/failure-detector.js';
import { PeerLink } from './link.js';
import { PEER_APPEND_PATH, PEER_CONTENT_TYPE } from './paths.js';
import { probePeer } from './probe.js';
import type { OutgoingTls } from './tls.js';
import { NEWEST_WIRE_VERSION, OLDEST_WIRE_VERSION, UNSUPPORTED_VERSION_MESSAGE, decodeAppendReply, encodeAppendRequest } from './wire.js';

/**
 * Commands in flight to one peer at once. A controlled shutdown hands every
 * led log off in parallel, and each takeover holds its connection for a whole
 * recovery (fences, fetches, etcd transactions): with 4, a replica leading 100
 * logs needed 6.8 s to hand them off, 4 at a time.
 */
const COMMAND_CONNECTIONS_PER_PEER = 64;
/**
 * A command or recovery fetch unanswered this long fails. Far above the
 * replication timeout: a takeover command answers only once its whole
 * recovery (fences, fetches, etcd transactions) is done, which takes seconds
 * for a long log; this only catches a peer that will never answer.
 */
const COMMAND_TIMEOUT_MS = 60_000;
/** An idle command connection is kept this long: commands come in bursts (handoffs, takeovers) minutes apart at most. */
const COMMAND_KEEP_ALIVE_MS = 60_000;
/**
 * A peer that refused the newest replication version (a replica of an older
 * release, during a rolling update) is sent the older one it took; this
 * long after, the newest is tried again, as the peer may have been updated.
 */
const VERSION_RETRY_MS = 60_000;
/** Characters of a peer's error answer quoted in the error thrown here: enough for its code and message. */
const ERROR_SNIPPET_CHARS = 200;

export interface PeerTransportOptions {
  /** A request unanswered this long fails (a paused or cut-off peer). */
  timeoutMs: number;
  /** TLS options of every connection to a peer (tls.ts); undefined: plain HTTP. */
  tls?: OutgoingTls;
  /** A replication link idle this long gets a new connection (PeerLink's idleMs): shorter than the peers' keep-alive timeout. */
  idleMs?: number;
}

export class PeerTransport {
  private readonly links = new Map<string, PeerLink>();
  /** Peers that refused a newer request version: the version they took, and since when (performance.now()). */
  private readonly olderPeers = new Map<string, { version: number; since: number }>();
  /** Commands get their own connections: a recovery taking seconds must not stall the replication pipeline. */
  private readonly commandPools = new Map<string, Pool>();

  constructor(private readonly options: PeerTransportOptions) {}

  /**
   * Sends a replication message in the newest version the peer takes: a peer
   * that refuses a version as unknown (before applying anything) is sent the
   * same message again one version older, and that version from then on.
   */
  async sendAppend(peerUrl: string, req: AppendRequest): Promise<AppendReply> {
    for (;;) {
      const version = this.versionFor(peerUrl);
      const { chunks, length } = encodeAppendRequest(req, version);
      const res = await this.link(peerUrl).post(PEER_APPEND_PATH, PEER_CONTENT_TYPE, chunks, length);
      if (res.status === 200) {
        // Known older until it takes the newest: the flusher asks (oldestVersionOf) what every peer reads.
        if (version === NEWEST_WIRE_VERSION) this.olderPeers.delete(peerUrl);
        return decodeAppendReply(res.body);
      }
      const text = res.body.toString('utf8', 0, ERROR_SNIPPET_CHARS);
      if (res.status === 400 && version > OLDEST_WIRE_VERSION && text.includes(UNSUPPORTED_VERSION_MESSAGE)) {
        this.olderPeers.set(peerUrl, { version: version - 1, since: performance.now() });
        continue;
      }
      throw new Error(`peer ${peerUrl} answered ${res.status}: ${text}`);
    }
  }

  private versionFor(peerUrl: string): number {
    const older = this.olderPeers.get(peerUrl);
    if (!older || performance.now() - older.since >= VERSION_RETRY_MS) return NEWEST_WIRE_VERSION;
    return older.version;
  }

  /**
   * The newest replication version every one of `peerUrls` is known to take:
   * a peer that refused a newer one counts as older until it takes the
   * newest. What a leader writes for its peers to read (object format 3's
   * times, storage.ts) waits for all of them during a rolling update.
   */
  oldestVersionOf(peerUrls: readonly string[]): number {
    let v = NEWEST_WIRE_VERSION;
    for (const url of peerUrls) v = Math.min(v, this.olderPeers.get(url)?.version ?? NEWEST_WIRE_VERSION);
    return v;
  }

  /** POSTs a JSON request and returns the raw binary answer (recovery fetches). */
  async fetchBinary(peerUrl: string, path: string, payload: unknown): Promise<Buffer> {
    const res = await this.commandPool(peerUrl).request({ path, method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(payload) });
    const body = Buffer.from(await res.body.arrayBuffer());
    if (res.statusCode !== 200) throw new Error(`peer ${peerUrl}${path} answered ${res.statusCode}: ${body.toString('utf8', 0, ERROR_SNIPPET_CHARS)}`);
    return body;
  }

  /** POSTs a small JSON command (fence, takeover, ...) and returns its JSON answer. */
  async command<T>(peerUrl: string, path: string, payload: unknown): Promise<T> {
    return JSON.parse((await this.fetchBinary(peerUrl, path, payload)).toString('utf8')) as T;
  }

  /** The liveness probe of failure detection (probe.ts), with this transport's TLS. */
  probe(peerUrl: string, timeoutMs: number): Promise<ProbeOutcome> {
    return probePeer(peerUrl, timeoutMs, this.options.tls);
  }

  async close(): Promise<void> {
    for (const link of this.links.values()) link.close();
    this.links.clear();
    await Promise.all([...this.commandPools.values()].map((p) => p.destroy()));
    this.commandPools.clear();
  }

  private commandPool(url: string): Pool {
    let pool = this.commandPools.get(url);
    if (!pool) {
      pool = new Pool(url, { connections: COMMAND_CONNECTIONS_PER_PEER, connectTimeout: this.options.timeoutMs, keepAliveTimeout: COMMAND_KEEP_ALIVE_MS, headersTimeout: COMMAND_TIMEOUT_MS, bodyTimeout: COMMAND_TIMEOUT_MS, connect: this.options.tls });
      this.commandPools.set(url, pool);
    }
    return pool;
  }

  private link(url: string): PeerLink {
    let link = this.links.get(url);
    if (!link) {
      link = new PeerLink(new URL(url), this.options.timeoutMs, this.options.tls, this.options.idleMs);
      this.links.set(url, link);
    }
    return link;
  }
}
