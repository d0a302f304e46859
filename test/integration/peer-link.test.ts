/**
 * The replication connection (src/peer/link.ts) against real
 * servers on loopback: a Node HTTP server like the peer listener, and raw
 * TCP servers that split, merge, withhold or garble answers.
 */
import http from 'node:http';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { PeerLink, PeerLinkError, parseAnswer } from '../../src/peer/link.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function listen(server: net.Server): Promise<URL> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const { port } = server.address() as net.AddressInfo;
  return new URL(`http://127.0.0.1:${port}`);
}

function link(url: URL, timeoutMs = 2_000): PeerLink {
  const l = new PeerLink(url, timeoutMs);
  cleanups.push(() => l.close());
  return l;
}

/** An HTTP server (keep-alive, like the peer listener) that answers each POST with its body reversed, after `delayMs(body)`. */
async function echoServer(delayMs: (body: Buffer) => number = () => 0): Promise<{ url: URL; connections: () => number }> {
  let connections = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      setTimeout(() => {
        if (req.url !== '/echo') {
          const text = `no route ${req.url}`;
          res.writeHead(404, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(text) }).end(text);
          return;
        }
        // Framed by Content-Length, as fastify frames every buffer it sends.
        res.writeHead(200, { 'content-type': String(req.headers['content-type']), 'content-length': body.length }).end(Buffer.from(body).reverse());
      }, delayMs(body));
    });
  });
  server.on('connection', () => connections++);
  cleanups.push(() => server.closeAllConnections());
  return { url: await listen(server), connections: () => connections };
}

/** A TCP server that hands every connection's socket to `onSocket`. */
async function rawServer(onSocket: (socket: net.Socket) => void): Promise<URL> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    onSocket(socket);
  });
  cleanups.push(() => sockets.forEach((s) => s.destroy()));
  return listen(server);
}

const answer = (status: number, body: string, extra = '') => `HTTP/1.1 ${status} X\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;

describe('PeerLink', () => {
  it('replaces a connection idle past idleMs instead of writing into a keep-alive close, and reuses a busy one', async () => {
    const { url, connections } = await echoServer();
    const l = new PeerLink(url, 2_000, undefined, 100);
    cleanups.push(() => l.close());
    const post = async (text: string) => (await l.post('/echo', 'text/plain', [Buffer.from(text)], text.length)).body.toString();
    expect(await post('ab')).toBe('ba');
    expect(await post('cd')).toBe('dc');
    expect(connections()).toBe(1);
    await new Promise((r) => setTimeout(r, 250));
    expect(await post('ef')).toBe('fe');
    expect(connections()).toBe(2);
  });

  it('pipelines requests on one connection; each gets its own answer, bodies intact across chunks', async () => {
    // Later requests answered sooner by the handler must still come back in order.
    const { url, connections } = await echoServer((body) => (body.length % 3) * 5);
    const l = link(url);
    const bodies = Array.from({ length: 30 }, (_, i) => [Buffer.from(`head-${i}:`), Buffer.alloc(i * 100, i), Buffer.alloc(0), Buffer.from('tail')]);
    const answers = await Promise.all(bodies.map((chunks) => l.post('/echo', 'application/x-test', chunks, chunks.reduce((n, c) => n + c.length, 0))));
    answers.forEach((a, i) => {
      expect(a.status).toBe(200);
      expect(a.body).toEqual(Buffer.from(Buffer.concat(bodies[i]!)).reverse());
    });
    expect(connections()).toBe(1);
  });

  it('keeps its queue short under a pipeline that never drains', async () => {
    // A peer that answers a request only once the next one arrived: one is always in flight.
    const url = await rawServer((socket) => {
      let received = 0;
      let answered = 0;
      socket.on('data', (d) => {
        received += d.toString('latin1').split('POST ').length - 1;
        while (answered < received - 1) socket.write(answer(200, String(answered++)));
      });
    });
    const l = link(url);
    const bodies: string[] = [];
    let previous = l.post('/p', 't', [Buffer.from('.')], 1);
    for (let i = 1; i <= 600; i++) {
      const next = l.post('/p', 't', [Buffer.from('.')], 1);
      bodies.push((await previous).body.toString());
      expect(l.inFlight).toBe(1);
      previous = next;
    }
    previous.catch(() => undefined); // never answered: failed when the link closes
    expect(bodies).toEqual(Array.from({ length: 600 }, (_, i) => String(i)));
    // Answered requests must not pile up behind the head (white-box: the queue's backing array).
    expect((l as unknown as { pending: unknown[] }).pending.length).toBeLessThan(200);
  });

  it('passes any status through with its body', async () => {
    const { url } = await echoServer();
    const a = await link(url).post('/elsewhere', 'text/plain', [Buffer.from('x')], 1);
    expect(a.status).toBe(404);
    expect(a.body.toString()).toBe('no route /elsewhere');
  });

  it('parses answers however the bytes are split or merged', async () => {
    const wire = answer(200, 'first') + answer(201, '') + answer(200, 'third', 'x-extra: 1\r\n');
    let requests = 0;
    const url = await rawServer((socket) => {
      socket.on('data', async (d) => {
        requests += d.toString('latin1').split('POST ').length - 1;
        if (requests < 3) return;
        // Everything in one byte at a time.
        for (const byte of Buffer.from(wire, 'latin1')) {
          socket.write(Buffer.from([byte]));
          await new Promise((r) => setImmediate(r));
        }
      });
    });
    const l = link(url);
    const answers = await Promise.all([1, 2, 3].map(() => l.post('/p', 'text/plain', [Buffer.from('.')], 1)));
    expect(answers.map((a) => [a.status, a.body.toString()])).toEqual([
      [200, 'first'],
      [201, ''],
      [200, 'third'],
    ]);
  });

  it('fails every request in flight when the peer stops answering, then reconnects', async () => {
    let connection = 0;
    const url = await rawServer((socket) => {
      const mine = ++connection;
      // The first connection swallows requests (a paused peer); later ones answer.
      socket.on('data', () => {
        if (mine > 1) socket.write(answer(200, 'back'));
      });
    });
    const l = link(url, 150);
    const started = Date.now();
    const results = await Promise.allSettled([l.post('/p', 't', [Buffer.from('a')], 1), l.post('/p', 't', [Buffer.from('b')], 1)]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(String((results[0] as PromiseRejectedResult).reason)).toMatch(/no answer in 150 ms/);
    expect(Date.now() - started).toBeLessThan(1_000);
    const again = await l.post('/p', 't', [Buffer.from('c')], 1);
    expect(again.body.toString()).toBe('back');
    expect(connection).toBe(2);
  });

  it('fails requests in flight when the peer closes the connection, and the next request reconnects', async () => {
    let connection = 0;
    const url = await rawServer((socket) => {
      const mine = ++connection;
      socket.on('data', () => (mine === 1 ? socket.destroy() : socket.write(answer(200, 'ok'))));
    });
    const l = link(url);
    await expect(l.post('/p', 't', [Buffer.from('a')], 1)).rejects.toThrow(/closed the connection|ECONNRESET/);
    expect((await l.post('/p', 't', [Buffer.from('b')], 1)).body.toString()).toBe('ok');
  });

  it('honours Connection: close: the answer is delivered, requests behind it fail, the next one reconnects', async () => {
    let connection = 0;
    const url = await rawServer((socket) => {
      const mine = ++connection;
      socket.once('data', () => socket.end(answer(200, `conn ${mine}`, mine === 1 ? 'connection: close\r\n' : '')));
    });
    const l = link(url);
    const [first, second] = await Promise.allSettled([l.post('/p', 't', [Buffer.from('a')], 1), l.post('/p', 't', [Buffer.from('b')], 1)]);
    expect(first).toMatchObject({ status: 'fulfilled', value: { status: 200 } });
    expect((first as PromiseFulfilledResult<{ body: Buffer }>).value.body.toString()).toBe('conn 1');
    expect(second.status).toBe('rejected');
    expect((await l.post('/p', 't', [Buffer.from('c')], 1)).body.toString()).toBe('conn 2');
  });

  it('rejects a refused connection and answers it cannot frame, without throwing out of the event loop', async () => {
    const gone = net.createServer();
    await new Promise<void>((resolve) => gone.listen(0, '127.0.0.1', resolve));
    const { port } = gone.address() as net.AddressInfo;
    await new Promise((resolve) => gone.close(resolve)); // its port now refuses
    await expect(link(new URL(`http://127.0.0.1:${port}`)).post('/p', 't', [], 0)).rejects.toThrow(/ECONNREFUSED/);

    const chunked = await rawServer((socket) => socket.once('data', () => socket.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n')));
    await expect(link(chunked).post('/p', 't', [], 0)).rejects.toThrow(/unsupported transfer-encoding/);
  });

  it('refuses requests once closed, and URLs it cannot speak to', async () => {
    const { url } = await echoServer();
    const l = link(url);
    l.close();
    await expect(l.post('/echo', 't', [], 0)).rejects.toBeInstanceOf(PeerLinkError);
    expect(() => new PeerLink(new URL('ftp://127.0.0.1:21'), 1_000)).toThrow(/only http and https/);
  });
});

describe('parseAnswer', () => {
  const b = (s: string) => Buffer.from(s, 'latin1');

  it('waits for the whole head and the whole body', () => {
    expect(parseAnswer(b('HTTP/1.1 200 OK\r\ncontent-len'))).toBe('incomplete');
    expect(parseAnswer(b('HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nab'))).toBe('incomplete');
    const done = parseAnswer(b('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcdHTTP/1.1'));
    expect(done).toMatchObject({ answer: { status: 200 }, size: 42, close: false });
    expect((done as { answer: { body: Buffer } }).answer.body.toString()).toBe('abcd');
  });

  it('reads the connection rules of HTTP/1.0 and 1.1', () => {
    expect(parseAnswer(b('HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n'))).toMatchObject({ close: true });
    expect(parseAnswer(b('HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n'))).toMatchObject({ close: false });
    expect(parseAnswer(b('HTTP/1.1 503 Busy\r\nConnection: Close\r\ncontent-length: 0\r\n\r\n'))).toMatchObject({ answer: { status: 503 }, close: true });
    expect(parseAnswer(b('HTTP/1.1 204\r\n\r\n'))).toMatchObject({ answer: { status: 204 }, size: 16 });
  });

  it('refuses what it cannot frame', () => {
    for (const bad of [
      'HTTP/2 200 OK\r\ncontent-length: 0\r\n\r\n',
      'HTTP/1.1 2000 OK\r\ncontent-length: 0\r\n\r\n',
      'HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n',
      'HTTP/1.1 200 OK\r\ncontent-length: 1e3\r\n\r\n',
      'HTTP/1.1 200 OK\r\n\r\n',
      'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n',
    ]) {
      expect(parseAnswer(b(bad)), bad).toBeInstanceOf(PeerLinkError);
    }
    expect(parseAnswer(Buffer.alloc(20_000, 'a'))).toBeInstanceOf(PeerLinkError);
  });
});
