/**
 * A TCP proxy a test puts between a real client and a real server (the etcd3
 * client and etcd) to cut, refuse or stall the connection on command: real
 * network faults, seen by the client the way it would see them in production.
 */
import net from 'node:net';

/** The largest HTTP/2 control frame a client sends unasked (a PING ack: 9-byte header, 8-byte payload). */
const CONTROL_FRAME_MAX_BYTES = 17;

interface Pair {
  client: net.Socket;
  server: net.Socket;
}

export class TcpProxy {
  /** Connections accepted and closed at once because the proxy was refusing. */
  refused = 0;
  private refusing = false;
  private downstreamPaused = false;
  private trip: (() => void) | undefined;
  private readonly pairs = new Set<Pair>();

  private constructor(
    private readonly listener: net.Server,
    private readonly target: { host: string; port: number },
  ) {
    listener.on('connection', (client) => this.accept(client));
  }

  /** Listens on a free local port and forwards to `targetUrl` (http://host:port). */
  static async start(targetUrl: string): Promise<TcpProxy> {
    const { hostname, port } = new URL(targetUrl);
    const listener = net.createServer();
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    return new TcpProxy(listener, { host: hostname, port: Number(port) });
  }

  get url(): string {
    return `http://127.0.0.1:${(this.listener.address() as net.AddressInfo).port}`;
  }

  /** Closes every connection and, until `restore()`, each new one as soon as it is accepted. */
  refuse(): void {
    this.refusing = true;
    for (const pair of this.pairs) this.drop(pair);
  }

  restore(): void {
    this.refusing = false;
  }

  /**
   * Refuses (as `refuse()`) from the next request a client sends, which is
   * dropped and fails with its connection. Resolves then. Smaller writes pass:
   * HTTP/2 control frames (window updates, pings, settings acks) are at most
   * `CONTROL_FRAME_MAX_BYTES`, and a client sends them on its own.
   */
  refuseOnNextRequest(): Promise<void> {
    return new Promise((resolve) => {
      this.trip = () => {
        this.trip = undefined;
        this.refuse();
        resolve();
      };
    });
  }

  /** Stops passing server-to-client bytes until `resumeDownstream()`: the server's sends back up. */
  pauseDownstream(): void {
    this.downstreamPaused = true;
    for (const { client, server } of this.pairs) {
      server.unpipe(client);
      server.pause();
    }
  }

  resumeDownstream(): void {
    this.downstreamPaused = false;
    for (const { client, server } of this.pairs) server.pipe(client);
  }

  async close(): Promise<void> {
    this.refuse();
    await new Promise<void>((resolve) => this.listener.close(() => resolve()));
  }

  private accept(client: net.Socket): void {
    client.on('error', () => undefined);
    if (this.refusing) {
      this.refused++;
      client.destroy();
      return;
    }
    const server = net.connect(this.target.port, this.target.host);
    server.on('error', () => undefined);
    const pair = { client, server };
    this.pairs.add(pair);
    client.on('data', (chunk) => {
      if (this.trip && chunk.length > CONTROL_FRAME_MAX_BYTES) return this.trip();
      server.write(chunk);
    });
    if (!this.downstreamPaused) server.pipe(client);
    else server.pause();
    client.on('close', () => this.drop(pair));
    server.on('close', () => this.drop(pair));
  }

  private drop(pair: Pair): void {
    this.pairs.delete(pair);
    pair.client.destroy();
    pair.server.destroy();
  }
}
