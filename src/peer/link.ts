/**
 * Owns the replication link: one keep-alive HTTP/1.1 connection to a peer's
 * listener that carries the leader's replication messages, pipelined:
 * requests go out back to back and answers come back in the same order
 * (RFC 9112 section 9.3.2).
 *
 * Replication is the one hot path between replicas, so it does not go
 * through undici. A message is written as its request head and its entries
 * in one writev, with the entries referenced where they lie, where undici
 * needs a single body buffer to pipeline (so two copies of every entry on the
 * leader, one per follower). Its answers are small and always framed by
 * Content-Length, which a few lines parse; undici ran each through llhttp
 * (WebAssembly) and a handler chain. On the 2-core VM this took 8 % of the
 * leader's CPU at one producer, and the copies cost about 3 % of it at 1 KiB
 * x 64 in page faults on fresh buffers alone.
 *
 * Forwarded appends (append-forwarder.ts) ride links of their own, for the
 * same reasons. Everything else (commands, recovery fetches) stays on
 * undici. A request unanswered for `timeoutMs` fails the connection and every
 * request on it: the leader then treats the follower as unreachable and
 * probes it again, as after any transport error; the next message opens a
 * new connection.
 */
import net from 'node:net';
import tls from 'node:tls';
import { performance } from 'node:perf_hooks';
import type { OutgoingTls } from './tls.js';

export interface PeerAnswer {
  status: number;
  body: Buffer;
}

interface Pending {
  sentAt: number;
  resolve(answer: PeerAnswer): void;
  reject(err: Error): void;
}

/** A response head larger than this is not one of ours: the connection fails. */
const MAX_HEAD_BYTES = 16 * 1024;
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');
/** TCP keep-alive probes start after this much silence: replication heartbeats keep a live link busier than that, so probes only find dead peers' half-open sockets. */
const TCP_KEEP_ALIVE_MS = 30_000;
/** The timeout check runs this many times per timeout, so a silent peer is noticed at most a fraction of the timeout late... */
const TIMEOUT_CHECKS_PER_TIMEOUT = 4;
/** ...but no more often than this, whatever the timeout. */
const MIN_TIMEOUT_CHECK_MS = 5;
/** The answered prefix of the pending queue is dropped once it holds at least this many (and half the queue): below it, copying is not worth it. */
const MIN_COMPACT_ANSWERED = 64;

export class PeerLinkError extends Error {}

export class PeerLink {
  private socket: net.Socket | undefined;
  private pending: Pending[] = [];
  private head = 0;
  /** Bytes of answers received and not yet parsed. */
  private unparsed: Buffer | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly hostHeader: string;
  private closed = false;
  /** When a request was last sent or answered on the connection, by performance.now(). */
  private lastActive = 0;

  constructor(
    private readonly url: URL,
    private readonly timeoutMs: number,
    /** For https peers: the CA and this replica's client certificate (tls.ts). */
    private readonly tls?: OutgoingTls,
    /**
     * A connection with nothing in flight for this long is not reused but replaced: the peer
     * may be closing it at that moment (its keep-alive timeout), and a request written into
     * that close would fail with an unknown outcome. Undefined: always reused.
     */
    private readonly idleMs?: number,
  ) {
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new PeerLinkError(`peer URL ${url.href}: only http and https are supported`);
    this.hostHeader = url.host;
  }

  /** POSTs `chunks` (together `length` bytes) as one request body; resolves with the answer, whatever its status. */
  post(path: string, contentType: string, chunks: readonly Buffer[], length: number): Promise<PeerAnswer> {
    if (this.closed) return Promise.reject(new PeerLinkError(`link to ${this.url.host} is closed`));
    const now = performance.now();
    // Nothing is in flight, so fail() rejects nothing: it only drops the connection.
    if (this.socket && this.idleMs !== undefined && this.inFlight === 0 && now - this.lastActive > this.idleMs) this.fail(new PeerLinkError('idle connection replaced'));
    const socket = this.socket ?? this.connect();
    this.lastActive = now;
    return new Promise<PeerAnswer>((resolve, reject) => {
      this.pending.push({ sentAt: now, resolve, reject });
      socket.cork();
      socket.write(`POST ${path} HTTP/1.1\r\nhost: ${this.hostHeader}\r\ncontent-type: ${contentType}\r\ncontent-length: ${length}\r\n\r\n`, 'latin1');
      for (const chunk of chunks) socket.write(chunk);
      socket.uncork();
    });
  }

  /** Fails whatever is in flight and refuses new requests. */
  close(): void {
    this.closed = true;
    this.fail(new PeerLinkError(`link to ${this.url.host} closed`));
  }

  /** Requests sent and not answered yet. */
  get inFlight(): number {
    return this.pending.length - this.head;
  }

  private connect(): net.Socket {
    const port = Number(this.url.port) || (this.url.protocol === 'https:' ? 443 : 80);
    const host = this.url.hostname.replace(/^\[|\]$/g, '');
    const socket = this.url.protocol === 'https:' ? tls.connect({ host, port, servername: net.isIP(host) ? undefined : host, ...this.tls }) : net.connect({ host, port });
    socket.setNoDelay(true);
    socket.setKeepAlive(true, TCP_KEEP_ALIVE_MS);
    socket.on('data', (chunk: Buffer) => this.receive(socket, chunk));
    socket.on('error', (err) => this.failSocket(socket, err));
    socket.on('close', () => this.failSocket(socket, new PeerLinkError(`peer ${this.url.host} closed the connection`)));
    this.socket = socket;
    // One coarse timer per connection, not one per request: it only has to notice a peer that stopped answering.
    this.timer = setInterval(() => this.checkTimeout(), Math.max(MIN_TIMEOUT_CHECK_MS, Math.floor(this.timeoutMs / TIMEOUT_CHECKS_PER_TIMEOUT)));
    this.timer.unref();
    return socket;
  }

  private takeOldest(): Pending | undefined {
    const oldest = this.pending[this.head];
    if (!oldest) return undefined;
    this.pending[this.head++] = undefined as unknown as Pending;
    // A steady pipeline always has a request in flight, so the queue is rarely empty:
    // drop the answered prefix once it dominates, or it would grow with every message.
    if (this.head === this.pending.length || (this.head >= MIN_COMPACT_ANSWERED && this.head * 2 >= this.pending.length)) {
      this.pending = this.pending.slice(this.head);
      this.head = 0;
    }
    return oldest;
  }

  private checkTimeout(): void {
    const oldest = this.pending[this.head];
    if (oldest && performance.now() - oldest.sentAt > this.timeoutMs) this.fail(new PeerLinkError(`peer ${this.url.host}: no answer in ${this.timeoutMs} ms`));
  }

  private failSocket(socket: net.Socket, err: Error): void {
    if (socket === this.socket) this.fail(err);
  }

  /** Drops the connection and rejects every request on it: their answers can no longer be matched. */
  private fail(err: Error): void {
    const socket = this.socket;
    this.socket = undefined;
    this.unparsed = undefined;
    clearInterval(this.timer);
    this.timer = undefined;
    socket?.destroy();
    const failed = this.pending.slice(this.head);
    this.pending = [];
    this.head = 0;
    for (const p of failed) p.reject(err);
  }

  private receive(socket: net.Socket, chunk: Buffer): void {
    if (socket !== this.socket) return;
    let data = this.unparsed ? Buffer.concat([this.unparsed, chunk]) : chunk;
    this.unparsed = undefined;
    for (;;) {
      if (data.length === 0) return;
      const parsed = parseAnswer(data);
      if (parsed === 'incomplete') {
        this.unparsed = data;
        return;
      }
      if (parsed instanceof PeerLinkError) return this.fail(parsed);
      const waiting = this.takeOldest();
      if (!waiting) return this.fail(new PeerLinkError(`peer ${this.url.host} answered a request never sent`));
      this.lastActive = performance.now();
      waiting.resolve(parsed.answer);
      if (parsed.close) return this.fail(new PeerLinkError(`peer ${this.url.host} closed the connection`));
      data = data.subarray(parsed.size);
    }
  }
}

type Parsed = { answer: PeerAnswer; size: number; close: boolean };

const STATUS_LINE = /^http\/1\.([01]) (\d{3})(?: |\r|$)/;

/**
 * Parses the first answer in `data`. Only what a Node HTTP server sends for
 * our requests is accepted: a status line, headers, and a body framed by
 * Content-Length (chunked or close-delimited bodies fail the connection).
 * Headers are looked up, not tokenised: this runs for every message.
 */
export function parseAnswer(data: Buffer): Parsed | 'incomplete' | PeerLinkError {
  const headEnd = data.indexOf(HEAD_END);
  if (headEnd < 0) return data.length > MAX_HEAD_BYTES ? new PeerLinkError('answer head too large') : 'incomplete';
  const head = data.toString('latin1', 0, headEnd).toLowerCase();
  const status = STATUS_LINE.exec(head);
  if (!status) return new PeerLinkError(`malformed status line: ${JSON.stringify(head.slice(0, 40))}`);
  const code = Number(status[2]);
  if (headerValue(head, 'transfer-encoding') !== undefined) return new PeerLinkError(`unsupported transfer-encoding in answer ${code}`);
  const lengthValue = headerValue(head, 'content-length');
  let contentLength = 0;
  if (lengthValue !== undefined) {
    if (!/^\d{1,15}$/.test(lengthValue)) return new PeerLinkError(`bad content-length ${JSON.stringify(lengthValue)}`);
    contentLength = Number(lengthValue);
  } else if (code !== 204 && code !== 304) {
    return new PeerLinkError(`answer ${code} without content-length`);
  }
  const connection = headerValue(head, 'connection');
  // HTTP/1.1 keeps the connection unless told otherwise; HTTP/1.0 closes it unless told otherwise.
  const close = connection?.includes('close') === true || (status[1] === '0' && connection?.includes('keep-alive') !== true);
  const bodyStart = headEnd + HEAD_END.length;
  if (data.length < bodyStart + contentLength) return 'incomplete';
  // Copied out of the read buffer: an answer outlives the chunk it came in (it is small).
  const body = Buffer.from(data.subarray(bodyStart, bodyStart + contentLength));
  return { answer: { status: code, body }, size: bodyStart + contentLength, close };
}

/** The value of header `name` in a lower-cased head, trimmed; undefined when absent. */
function headerValue(head: string, name: string): string | undefined {
  const at = head.indexOf(`\r\n${name}:`);
  if (at < 0) return undefined;
  const from = at + name.length + 3;
  const end = head.indexOf('\r\n', from);
  return head.slice(from, end < 0 ? undefined : end).trim();
}
