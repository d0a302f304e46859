import { afterEach, describe, expect, it } from 'vitest';
import http from 'node:http';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { FaultProxy } from './proxy.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) {
    try {
      await fn();
    } catch {
      // best effort: keep cleaning up the rest
    }
  }
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function track(server: net.Server): Set<net.Socket> {
  const sockets = new Set<net.Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return sockets;
}

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return (server.address() as net.AddressInfo).port;
}

async function echoServer(): Promise<{ port: number; accepted: () => number }> {
  let accepted = 0;
  const server = net.createServer((s) => {
    accepted++;
    s.on('error', () => {});
    s.pipe(s);
  });
  track(server);
  return { port: await listen(server), accepted: () => accepted };
}

async function httpServer(): Promise<number> {
  const server = http.createServer((_req, res) => res.end('hello from origin'));
  track(server);
  return listen(server);
}

async function proxyTo(port: number): Promise<FaultProxy> {
  const proxy = await FaultProxy.start({ target: { host: '127.0.0.1', port }, name: 'test' });
  cleanups.push(() => proxy.close());
  return proxy;
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    cleanups.push(() => s.destroy());
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** Resolves with the next `n` bytes read from `s` (rejects if it closes first). */
function readBytes(s: net.Socket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const onData = (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      if (got >= n) finish();
    };
    const detach = () => {
      s.off('data', onData);
      s.off('close', onClose);
    };
    const onClose = () => {
      detach();
      reject(new Error(`socket closed after ${got}/${n} bytes`));
    };
    const finish = () => {
      detach();
      resolve(Buffer.concat(chunks));
    };
    s.on('data', onData);
    s.once('close', onClose);
  });
}

/** Resolves true once `s` has closed, false if it is still open after `ms`. */
function closedWithin(s: net.Socket, ms: number): Promise<boolean> {
  if (s.destroyed) return Promise.resolve(true);
  s.on('error', () => {});
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    s.once('close', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

function get(url: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    cleanups.push(() => req.destroy());
  });
}

describe('FaultProxy', () => {
  it('passes bytes through unchanged, including 1 MiB, and counts them', async () => {
    const echo = await echoServer();
    const proxy = await proxyTo(echo.port);
    expect(proxy.name).toBe('test');
    expect(proxy.url).toBe(`http://127.0.0.1:${proxy.port}`);
    expect(proxy.fault).toEqual({ kind: 'none' });
    const s = await connect(proxy.port);

    const small = Buffer.from('hello tern');
    s.write(small);
    expect((await readBytes(s, small.length)).equals(small)).toBe(true);

    const big = randomBytes(1 << 20);
    const back = readBytes(s, big.length);
    s.write(big);
    expect((await back).equals(big)).toBe(true);

    const stats = proxy.stats();
    expect(stats.connections).toBe(1);
    expect(stats.bytesUp).toBe(small.length + big.length);
    expect(stats.bytesDown).toBe(small.length + big.length);
  });

  it.each([{ kind: 'none' } as const, { kind: 'latency', ms: 20 } as const])(
    'applies backpressure instead of buffering without bound (%o)',
    async (fault) => {
      const targetSockets: net.Socket[] = [];
      let received = 0;
      const server = net.createServer({ pauseOnConnect: true }, (s) => {
        s.on('error', () => {});
        s.on('data', (c: Buffer) => (received += c.length));
        s.pause(); // a target that does not read
        targetSockets.push(s);
      });
      track(server);
      const proxy = await proxyTo(await listen(server));
      proxy.setFault(fault);
      const s = await connect(proxy.port);
      const total = 32 << 20;
      s.write(Buffer.alloc(total, 7));
      await sleep(500);
      // Only the kernel socket buffers (a few MiB) plus one window of proxy buffering may be used up.
      expect(proxy.stats().bytesUp).toBeLessThan(total * 0.75);
      for (const t of targetSockets) t.resume();
      for (let i = 0; i < 300 && received < total; i++) await sleep(50);
      expect(received).toBe(total);
      expect(proxy.stats().bytesUp).toBe(total);
    },
  );

  it('propagates half-close so request/shutdown/response patterns work', async () => {
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => {});
      const chunks: Buffer[] = [];
      s.on('data', (c: Buffer) => chunks.push(c));
      s.on('end', () => s.end(Buffer.concat(chunks).toString().toUpperCase()));
    });
    track(server);
    const proxy = await proxyTo(await listen(server));
    const s = await connect(proxy.port);
    let reply = '';
    s.on('data', (c: Buffer) => (reply += c.toString()));
    const closed = closedWithin(s, 5_000);
    s.end('shout');
    expect(await closed).toBe(true);
    expect(reply).toBe('SHOUT');
  });

  it('delays both directions under latency and preserves byte order', async () => {
    const echo = await echoServer();
    const proxy = await proxyTo(echo.port);
    const s = await connect(proxy.port);
    s.write('warm');
    await readBytes(s, 4);

    proxy.setFault({ kind: 'latency', ms: 150 });
    expect(proxy.fault).toEqual({ kind: 'latency', ms: 150 });
    const t0 = performance.now();
    s.write('ping');
    expect((await readBytes(s, 4)).toString()).toBe('ping');
    expect(performance.now() - t0).toBeGreaterThanOrEqual(280);

    // Many small chunks, written a few ms apart, come back in order.
    const parts = Array.from({ length: 40 }, (_, i) => `<${i}>`);
    const expected = parts.join('');
    const back = readBytes(s, expected.length + '<end>'.length);
    for (const p of parts) {
      s.write(p);
      await sleep(2);
    }
    proxy.heal(); // data already queued keeps its order after the latency is removed
    s.write('<end>');
    expect((await back).toString()).toBe(`${expected}<end>`);
    expect(() => proxy.setFault({ kind: 'latency', ms: -1 })).toThrow(RangeError);
  });

  it('partition stalls existing and new connections; heal kills them and new ones work', async () => {
    const echo = await echoServer();
    const proxy = await proxyTo(echo.port);
    const old = await connect(proxy.port);
    old.write('before');
    expect((await readBytes(old, 6)).toString()).toBe('before');
    expect(echo.accepted()).toBe(1);

    proxy.setFault({ kind: 'partition' });
    let oldGot = 0;
    old.on('data', (c: Buffer) => (oldGot += c.length));
    old.write('lost in the void');
    const fresh = await connect(proxy.port); // accepted, but never reaches the target
    let freshGot = 0;
    fresh.on('data', (c: Buffer) => (freshGot += c.length));
    fresh.write('also lost');
    expect(await closedWithin(old, 500)).toBe(false); // a stall, not a reset
    expect(await closedWithin(fresh, 1)).toBe(false);
    expect(oldGot).toBe(0);
    expect(freshGot).toBe(0);
    expect(echo.accepted()).toBe(1);

    proxy.heal();
    expect(await closedWithin(old, 2_000)).toBe(true);
    expect(await closedWithin(fresh, 2_000)).toBe(true);
    expect(oldGot).toBe(0);
    expect(freshGot).toBe(0);

    const after = await connect(proxy.port);
    after.write('healed');
    expect((await readBytes(after, 6)).toString()).toBe('healed');
  });

  it('refuse destroys existing connections and closes new ones at once', async () => {
    const echo = await echoServer();
    const proxy = await proxyTo(echo.port);
    const old = await connect(proxy.port);
    old.write('x');
    await readBytes(old, 1);

    proxy.setFault({ kind: 'refuse' });
    expect(await closedWithin(old, 2_000)).toBe(true);
    const refused = net.connect({ host: '127.0.0.1', port: proxy.port });
    cleanups.push(() => refused.destroy());
    refused.on('connect', () => refused.write('anyone there?'));
    let got = 0;
    refused.on('data', (c: Buffer) => (got += c.length));
    expect(await closedWithin(refused, 2_000)).toBe(true);
    expect(got).toBe(0);
    expect(echo.accepted()).toBe(1);

    proxy.heal();
    const after = await connect(proxy.port);
    after.write('ok');
    expect((await readBytes(after, 2)).toString()).toBe('ok');
  });

  it('http503 answers with a canned 503 + Retry-After; heal restores the origin', async () => {
    const proxy = await proxyTo(await httpServer());
    expect((await get(proxy.url)).status).toBe(200);

    proxy.setFault({ kind: 'http503' });
    const res = await get(`${proxy.url}/some/object`);
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBe('1');
    expect(res.headers.connection).toBe('close');
    expect(res.body.length).toBeGreaterThan(0);

    proxy.heal();
    const ok = await get(proxy.url);
    expect(ok.status).toBe(200);
    expect(ok.body).toBe('hello from origin');
  });

  it('closes the client when the target refuses, without crashing', async () => {
    const dead = net.createServer();
    const deadPort = await listen(dead);
    await new Promise<void>((r) => dead.close(() => r()));
    const proxy = await proxyTo(deadPort);
    const s = await connect(proxy.port);
    s.write('hello?');
    expect(await closedWithin(s, 2_000)).toBe(true);
  });

  it('close() stops listening and closes every connection', async () => {
    const echo = await echoServer();
    const proxy = await proxyTo(echo.port);
    const a = await connect(proxy.port);
    a.write('a');
    await readBytes(a, 1);
    proxy.setFault({ kind: 'partition' });
    const b = await connect(proxy.port);

    await proxy.close();
    expect(await closedWithin(a, 2_000)).toBe(true);
    expect(await closedWithin(b, 2_000)).toBe(true);
    await expect(connect(proxy.port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });
});
