// A fault-injecting TCP proxy for the jepsen-lite harness: one instance sits on
// every network link of a local cluster so faults can be injected without root.
// Node builtins only; nothing from src/.
import net from 'node:net';
import { performance } from 'node:perf_hooks';

export type LinkFault =
  | { kind: 'none' }
  | { kind: 'partition' } // stall: data in both directions is silently dropped; stalled links die on heal
  | { kind: 'refuse' } // new connections are reset at once, existing ones destroyed
  | { kind: 'latency'; ms: number } // every chunk, both directions, delayed by ms (order preserved)
  | { kind: 'http503' }; // existing destroyed; new connections get a canned 503 and are closed

/** Bytes a latency queue may hold before the sender is paused. */
const QUEUE_HIGH_WATER = 1 << 20;
const BODY_503 = 'tern fault proxy: service unavailable\n';
const RESPONSE_503 =
  'HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n' +
  `Content-Length: ${Buffer.byteLength(BODY_503)}\r\nConnection: close\r\nRetry-After: 1\r\n\r\n${BODY_503}`;

/** One direction (client->target or target->client) of a proxied connection. */
interface Direction {
  queue: { chunk: Buffer; due: number }[];
  queued: number; // bytes in queue
  timer: NodeJS.Timeout | null;
  blocked: boolean; // dst.write() returned false and 'drain' has not fired yet
  endPending: boolean; // src sent FIN; forward it once the queue is empty
}

interface Link {
  client: net.Socket;
  upstream: net.Socket | null; // null for connections accepted during a partition
  stalled: boolean; // saw a partition: discards everything, destroyed when the partition ends
  dirs: Direction[];
}

export class FaultProxy {
  readonly port: number;
  readonly name: string;
  private current: LinkFault = { kind: 'none' };
  private readonly links = new Set<Link>();
  private readonly others = new Set<net.Socket>(); // sockets answered with the canned 503
  private closed = false;
  private counters = { connections: 0, bytesUp: 0, bytesDown: 0 };

  private constructor(
    private readonly server: net.Server,
    private readonly target: { host: string; port: number },
    private readonly listenHost: string,
    name: string | undefined,
  ) {
    this.port = (server.address() as net.AddressInfo).port;
    this.name = name ?? `proxy:${this.port}->${target.host}:${target.port}`;
    server.on('connection', (socket) => this.accept(socket));
    server.on('error', () => {}); // post-listen server errors must not crash the harness
  }

  static async start(options: {
    target: { host: string; port: number };
    listenHost?: string;
    listenPort?: number;
    name?: string;
  }): Promise<FaultProxy> {
    const host = options.listenHost ?? '127.0.0.1';
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: false });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.listenPort ?? 0, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return new FaultProxy(server, { ...options.target }, host, options.name);
  }

  get url(): string {
    const h = this.listenHost === '0.0.0.0' || this.listenHost === '::' ? '127.0.0.1' : this.listenHost;
    return `http://${h.includes(':') ? `[${h}]` : h}:${this.port}`;
  }

  get fault(): LinkFault {
    return this.current;
  }

  setFault(fault: LinkFault): void {
    if (fault.kind === 'latency' && !(Number.isFinite(fault.ms) && fault.ms >= 0)) {
      throw new RangeError(`latency ms must be a finite number >= 0, got ${fault.ms}`);
    }
    const prev = this.current;
    this.current = Object.freeze({ ...fault });
    if (prev.kind === 'partition' && fault.kind !== 'partition') {
      for (const link of this.links) if (link.stalled) this.destroyLink(link); // data was lost
    }
    if (fault.kind === 'partition') {
      for (const link of this.links) this.stall(link);
    } else if (fault.kind === 'refuse' || fault.kind === 'http503') {
      for (const link of this.links) this.destroyLink(link);
    }
  }

  heal(): void {
    this.setFault({ kind: 'none' });
  }

  /** Cumulative: connections accepted (including refused/503/partitioned), bytes forwarded each way. */
  stats(): { connections: number; bytesUp: number; bytesDown: number } {
    return { ...this.counters };
  }

  async close(): Promise<void> {
    this.closed = true;
    const done = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const link of this.links) this.destroyLink(link);
    for (const s of this.others) s.destroy();
    this.others.clear();
    await done;
  }

  private accept(client: net.Socket): void {
    client.on('error', () => {});
    const kind = this.current.kind;
    if (this.closed) return void client.destroy();
    this.counters.connections++;
    // RST-like refusal where the runtime supports it (Node >= 18.3), a plain close otherwise.
    if (kind === 'refuse') return void (client.resetAndDestroy ? client.resetAndDestroy() : client.destroy());
    if (kind === 'http503') return this.serve503(client);
    const link: Link = { client, upstream: null, stalled: false, dirs: [] };
    this.links.add(link);
    if (kind === 'partition') {
      link.stalled = true; // accepted, never connected; whatever arrives is discarded
      client.on('data', () => {});
      client.on('close', () => this.destroyLink(link));
      return;
    }
    const upstream = net.connect({ host: this.target.host, port: this.target.port, allowHalfOpen: true });
    upstream.on('error', () => {}); // e.g. ECONNREFUSED: 'close' fires and tears the client down
    link.upstream = upstream;
    this.forward(link, client, upstream, 'bytesUp');
    this.forward(link, upstream, client, 'bytesDown');
    for (const s of [client, upstream]) {
      // An abrupt close (error, reset, refused) tears down the peer too; after a clean close
      // (both directions ended) the peer finishes flushing and closes on its own.
      s.on('close', (hadError: boolean) => {
        const clean = !hadError && s.readableEnded && s.writableFinished;
        if (!clean || (client.destroyed && upstream.destroyed)) this.destroyLink(link);
      });
    }
  }

  private forward(link: Link, src: net.Socket, dst: net.Socket, counter: 'bytesUp' | 'bytesDown'): void {
    const d: Direction = { queue: [], queued: 0, timer: null, blocked: false, endPending: false };
    link.dirs.push(d);
    const updateFlow = (): void => {
      if (src.destroyed) return;
      if (!link.stalled && (d.blocked || d.queued > QUEUE_HIGH_WATER)) src.pause();
      else src.resume();
    };
    const write = (chunk: Buffer): void => {
      if (dst.destroyed) return;
      this.counters[counter] += chunk.length;
      if (!dst.write(chunk) && !d.blocked) {
        d.blocked = true;
        dst.once('drain', () => {
          d.blocked = false;
          updateFlow();
        });
        updateFlow();
      }
    };
    const flushEnd = (): void => {
      if (d.endPending && d.queue.length === 0 && !dst.destroyed) dst.end();
    };
    const schedule = (): void => {
      const head = d.queue[0];
      if (d.timer || !head) return;
      d.timer = setTimeout(() => {
        d.timer = null;
        const now = performance.now();
        while (d.queue[0] && d.queue[0].due <= now) {
          const { chunk } = d.queue.shift()!;
          d.queued -= chunk.length;
          write(chunk);
        }
        flushEnd();
        updateFlow();
        schedule();
      }, Math.max(0, head.due - performance.now()));
    };
    src.on('data', (chunk: Buffer) => {
      if (link.stalled) return;
      const f = this.current;
      const ms = f.kind === 'latency' ? f.ms : 0;
      if (ms === 0 && d.queue.length === 0) return write(chunk);
      const last = d.queue[d.queue.length - 1];
      d.queue.push({ chunk, due: Math.max(performance.now() + ms, last ? last.due : 0) });
      d.queued += chunk.length;
      updateFlow();
      schedule();
    });
    src.on('end', () => {
      if (link.stalled) return;
      d.endPending = true;
      flushEnd();
    });
    updateFlow();
  }

  /** Partition an existing link: drop queued data and silently discard whatever arrives from now on. */
  private stall(link: Link): void {
    link.stalled = true;
    for (const d of link.dirs) {
      if (d.timer) clearTimeout(d.timer);
      Object.assign(d, { queue: [], queued: 0, timer: null, endPending: false });
    }
    for (const s of [link.client, link.upstream]) if (s && !s.destroyed) s.resume();
  }

  private destroyLink(link: Link): void {
    if (!this.links.delete(link)) return;
    for (const d of link.dirs) if (d.timer) clearTimeout(d.timer);
    link.client.destroy();
    link.upstream?.destroy();
  }

  private serve503(socket: net.Socket): void {
    this.others.add(socket);
    socket.on('close', () => this.others.delete(socket));
    // Answer once the request starts arriving, then half-close; keep reading (and discarding) so
    // unread request bytes do not turn our close into an RST that could eat the response.
    let answered = false;
    socket.on('data', () => {
      if (!answered) socket.end(RESPONSE_503);
      answered = true;
    });
    socket.on('end', () => socket.end());
    setTimeout(() => socket.destroy(), 2_000).unref();
  }
}
