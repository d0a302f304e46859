import { request as rawRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { FRAMES_CONTENT_TYPE, encodeFrames } from '../../src/frames.js';
import { peerPaths } from '../../src/peer/paths.js';
import { appendRaw, createLog, eventually, http, readAll, startTestCluster } from '../support/cluster.js';

let cluster: LocalCluster;
let stop: () => Promise<void>;
let leaderUrl: string;
let followerUrl: string;

const MAX_REQUEST_ENTRIES = 1000;
const MAX_TAIL_READS = 2;
const MAX_CONNECTIONS = 40;
const MAX_LOGS = 5;
const LIMITS = [
  ...['--max-request-entries', String(MAX_REQUEST_ENTRIES), '--max-tail-reads', String(MAX_TAIL_READS), '--max-connections', String(MAX_CONNECTIONS)],
  ...['--max-logs', String(MAX_LOGS), '--max-buffer-bytes', String(1024 * 1024), '--max-concurrent-reads', '1'],
  ...['--headers-timeout-ms', '1000', '--request-timeout-ms', '5000', '--keep-alive-timeout-ms', '1000'],
];

beforeAll(async () => {
  ({ cluster, stop } = await startTestCluster(['--max-entry-bytes', '1024', '--max-request-bytes', '65536', ...LIMITS]));
  const { leader } = await createLog(cluster.replicas[0]!.clientUrl, 'good');
  leaderUrl = cluster.replica(leader).clientUrl;
  followerUrl = cluster.replicas.find((r) => r.id !== leader)!.clientUrl;
});
afterAll(async () => {
  await stop?.();
});

const post = (base: string, contentType: string, body: Buffer | string, log = 'good') =>
  http(`${base}/v1/logs/${log}/entries`, { method: 'POST', contentType, body });

describe('bad input gets the documented error and the replica keeps serving', () => {
  const cases: [string, (base: string) => Promise<{ status: number; json(): any }>, number, string][] = [
    ['a wrong content type', (b) => post(b, 'text/plain', 'hello'), 415, 'UNSUPPORTED_MEDIA_TYPE'],
    ['bad base64', (b) => post(b, 'application/json', JSON.stringify({ entries: ['aGVsbG8=', 'not base64!'] })), 400, 'BAD_REQUEST'],
    ['malformed JSON', (b) => post(b, 'application/json', '{"entries": ['), 400, 'BAD_REQUEST'],
    ['a JSON body of the wrong shape', (b) => post(b, 'application/json', JSON.stringify({ data: 'aGk=' })), 400, 'BAD_REQUEST'],
    ['an empty batch', (b) => post(b, 'application/json', JSON.stringify({ entries: [] })), 400, 'BAD_REQUEST'],
    ['a truncated frame', (b) => post(b, FRAMES_CONTENT_TYPE, Buffer.from([0, 0, 0, 9, 1, 2])), 400, 'BAD_REQUEST'],
    ['an entry over the entry limit', (b) => post(b, 'application/octet-stream', Buffer.alloc(1025)), 413, 'TOO_LARGE'],
    ['a batch entry over the entry limit', (b) => post(b, 'application/json', JSON.stringify({ entries: ['aGk=', Buffer.alloc(2000).toString('base64')] })), 413, 'TOO_LARGE'],
    ['a body over the request limit', (b) => post(b, 'application/octet-stream', Buffer.alloc(200_000)), 413, 'TOO_LARGE'],
    ['a bad log name', (b) => http(`${b}/v1/logs/bad%20name!`, { method: 'PUT' }), 400, 'BAD_REQUEST'],
    ['a log name over 128 chars', (b) => http(`${b}/v1/logs/${'x'.repeat(129)}`, { method: 'PUT' }), 400, 'BAD_REQUEST'],
    ['an unknown log (append)', (b) => post(b, 'application/octet-stream', 'x', 'nosuchlog'), 404, 'LOG_NOT_FOUND'],
    ['an unknown log (read)', (b) => http(`${b}/v1/logs/nosuchlog/entries`), 404, 'LOG_NOT_FOUND'],
    ['an unknown log (status)', (b) => http(`${b}/v1/logs/nosuchlog`), 404, 'LOG_NOT_FOUND'],
    ['a bad query', (b) => http(`${b}/v1/logs/good/entries?from=abc`), 400, 'BAD_REQUEST'],
    ['a negative from', (b) => http(`${b}/v1/logs/good/entries?from=-1`), 400, 'BAD_REQUEST'],
    ['a zero limit', (b) => http(`${b}/v1/logs/good/entries?limit=0`), 400, 'BAD_REQUEST'],
    ['an unknown route', (b) => http(`${b}/v2/whatever`), 404, 'NOT_FOUND'],
    ['a log name over the router\'s parameter limit', (b) => http(`${b}/v1/logs/${'x'.repeat(300)}`, { method: 'PUT' }), 400, 'BAD_REQUEST'],
    ['the log name ".."', (b) => rawHttp(b, 'PUT', '/v1/logs/..'), 400, 'BAD_REQUEST'],
    ['the log name "." (escaped)', (b) => rawHttp(b, 'PUT', '/v1/logs/%2E'), 400, 'BAD_REQUEST'],
    ['the log name ".." (escaped, append)', (b) => rawHttp(b, 'POST', '/v1/logs/%2e%2e/entries', 'x'), 400, 'BAD_REQUEST'],
    ['frames over the entry count limit', (b) => post(b, FRAMES_CONTENT_TYPE, Buffer.concat(encodeFrames(empties(MAX_REQUEST_ENTRIES + 1)))), 413, 'TOO_LARGE'],
    ['a JSON batch over the entry count limit', (b) => post(b, 'application/json', JSON.stringify({ entries: empties(MAX_REQUEST_ENTRIES + 1).map(() => '') })), 413, 'TOO_LARGE'],
    ['malformed HTTP', (b) => rawSocketAnswer(b, 'GARBAGE\r\n\r\n'), 400, 'BAD_REQUEST'],
  ];

  for (const [what, send, status, code] of cases) {
    it(`answers ${what} with ${status} ${code}, on the leader and on a follower`, async () => {
      for (const base of [leaderUrl, followerUrl]) {
        const res = await send(base);
        expect(res.status).toBe(status);
        expect(res.json().error).toMatchObject({ code, message: expect.any(String) });
      }
    });
  }

  // No content-length: the body arrives as a chunked stream.
  async function postChunked(base: string, parts: Buffer[], log = 'good'): Promise<{ status: number; json: any }> {
    const res = await request(`${base}/v1/logs/${log}/entries`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: Readable.from(parts),
    });
    return { status: res.statusCode, json: await res.body.json() };
  }

  it('takes an entry that arrives in several chunks whole', async () => {
    const { leader } = await createLog(leaderUrl, 'chunked');
    const url = cluster.replica(leader).clientUrl;
    const parts = [Buffer.from('chunk-one:'), Buffer.from('chunk-two:'), Buffer.from('chunk-three')];
    const res = await postChunked(url, parts, 'chunked');
    expect(res.status).toBe(200);
    const entries = await readAll(url, 'chunked');
    expect(entries.find((e) => e.id === res.json.id)?.data.toString()).toBe('chunk-one:chunk-two:chunk-three');
  });

  it('answers router errors on the peer listener in the same shape', async () => {
    const res = await http(`${cluster.replicas[0]!.peerUrl}${peerPaths.fence('y'.repeat(300))}`, { method: 'POST', contentType: 'application/json', body: '{}' });
    expect(res.status).toBe(400);
    expect(res.json().error).toMatchObject({ code: 'BAD_REQUEST', message: expect.any(String) });
  });

  it('counts a per-entry overhead, so empty entries fill the memory bound and get BUFFER_FULL', async () => {
    const { leader } = await createLog(leaderUrl, 'empties');
    const url = cluster.replica(leader).clientUrl;
    const body = Buffer.concat(encodeFrames(empties(MAX_REQUEST_ENTRIES)));
    let accepted = 0;
    let refused;
    // 1 MiB bound, ~128 bytes counted per entry: full after about 8 requests of 1000 (free before).
    for (let i = 0; i < 20 && !refused; i++) {
      const res = await post(url, FRAMES_CONTENT_TYPE, body, 'empties');
      if (res.status === 200) accepted++;
      else refused = res;
    }
    expect(accepted).toBeGreaterThan(0);
    expect(accepted).toBeLessThan(10);
    expect(refused?.status).toBe(503);
    expect(refused?.json().error.code).toBe('BUFFER_FULL');
    expect((await readAll(url, 'empties')).length).toBe(accepted * MAX_REQUEST_ENTRIES);
    // Deleting the log gives the memory back on every replica.
    expect((await http(`${url}/v1/logs/empties`, { method: 'DELETE' })).status).toBe(200);
  });

  it('answers a body over the request limit with 413 after reading it, not a broken pipe', async () => {
    for (const announced of [true, false]) {
      const res = await streamBody(leaderUrl, 64 * 1024 * 1024, announced);
      expect(res.error).toBeUndefined();
      expect(res.status).toBe(413);
      expect(JSON.parse(res.body).error).toMatchObject({ code: 'TOO_LARGE', message: expect.any(String) });
    }
  });

  it('closes connections whose headers or body arrive too slowly with 408 REQUEST_TIMEOUT, and idle keep-alive ones', async () => {
    const started = Date.now();
    const slowHeaders = await rawSocketAnswer(followerUrl, 'GET /healthz HTTP/1.1\r\nHost: x\r\n');
    expect(slowHeaders.status).toBe(408);
    expect(slowHeaders.json().error.code).toBe('REQUEST_TIMEOUT');
    const slowBody = await rawSocketAnswer(followerUrl, 'POST /v1/logs/good/entries HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 100\r\n\r\nabc');
    expect(slowBody.status).toBe(408);
    expect(slowBody.json().error.code).toBe('REQUEST_TIMEOUT');
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    // A keep-alive connection left idle after its answer is closed by the replica.
    const idle = await rawSocketAnswer(followerUrl, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(idle.status).toBe(200);
  });

  it('answers requests on connections over --max-connections with 503 TOO_MANY, and serves again once they close', async () => {
    const { port } = new URL(followerUrl);
    const sockets: Socket[] = [];
    try {
      for (let i = 0; i < MAX_CONNECTIONS + 5; i++) {
        const socket = connect(Number(port), '127.0.0.1');
        socket.on('error', () => {});
        await new Promise((resolve) => socket.once('connect', resolve));
        sockets.push(socket);
      }
      const answer = await rawSocketAnswer(followerUrl, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
      expect(answer.status).toBe(503);
      expect(answer.json().error.code).toBe('TOO_MANY');
      expect(answer.head).toMatch(/retry-after: 1/i);
    } finally {
      for (const s of sockets) s.destroy();
    }
    await eventually(async () => expect((await http(`${followerUrl}/healthz`)).status).toBe(200));
  });

  it('holds at most --max-tail-reads tail reads and refuses one more with 503 TOO_MANY', async () => {
    const { leader } = await createLog(leaderUrl, 'tails');
    const url = cluster.replica(leader).clientUrl;
    const tail = () => http(`${url}/v1/logs/tails/entries?from=0&waitMs=20000`);
    const held = Array.from({ length: MAX_TAIL_READS }, tail);
    await eventually(async () => expect((await http(`${url}/metrics`)).body.toString()).toMatch(new RegExp(`tern_tail_waiters\\{[^}]*\\} ${MAX_TAIL_READS}`)));
    const refused = await tail();
    expect(refused.status).toBe(503);
    expect(refused.json().error.code).toBe('TOO_MANY');
    expect(refused.headers['retry-after']).toBe('1');
    expect((await appendRaw(url, 'tails', 'wakes-the-tail')).status).toBe(200);
    for (const res of await Promise.all(held)) expect(res.json().entries.map((e: any) => Buffer.from(e.data, 'base64').toString())).toEqual(['wakes-the-tail']);
    expect((await http(`${url}/v1/logs/tails`, { method: 'DELETE' })).status).toBe(200);
  });

  it('serves at most --max-concurrent-reads reads at once and refuses more with 503 TOO_MANY', async () => {
    // Reads of unknown logs each wait for etcd, so a burst of them overlaps.
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => http(`${followerUrl}/v1/logs/nolog-${i}/entries`)));
    const codes = answers.map((a) => a.json().error.code);
    expect(codes).toContain('TOO_MANY');
    expect(codes).toContain('LOG_NOT_FOUND');
  });

  it('counts failed appends to logs that do not exist under one metric label, not one per name', async () => {
    const unknown = async () => {
      const metrics = (await http(`${followerUrl}/metrics`)).body.toString();
      expect(metrics).not.toContain('invented-');
      return Number(/tern_appends_total\{log="_unknown",outcome="LOG_NOT_FOUND"[^}]*\} (\d+)/.exec(metrics)?.[1] ?? 0);
    };
    const before = await unknown();
    for (let i = 0; i < 5; i++) expect((await appendRaw(followerUrl, `invented-${i}`, 'x')).status).toBe(404);
    expect(await unknown()).toBe(before + 5);
  });

  it('creates at most --max-logs logs and refuses one more with 409 TOO_MANY_LOGS', async () => {
    const made: string[] = [];
    let refused;
    for (let i = 0; i < MAX_LOGS + 1 && !refused; i++) {
      const res = await http(`${leaderUrl}/v1/logs/many-${i}`, { method: 'PUT' });
      if (res.status === 201) made.push(`many-${i}`);
      else refused = res;
    }
    expect(refused?.status).toBe(409);
    expect(refused?.json().error.code).toBe('TOO_MANY_LOGS');
    expect((await http(`${leaderUrl}/v1/logs`)).json().logs.length).toBe(MAX_LOGS);
    // An existing log is still "created" idempotently.
    expect((await http(`${leaderUrl}/v1/logs/good`, { method: 'PUT' })).status).toBe(200);
    for (const name of made) expect((await http(`${leaderUrl}/v1/logs/${name}`, { method: 'DELETE' })).status).toBe(200);
  });

  it('left no partial batch visible and still serves appends and reads on every replica', async () => {
    for (const r of cluster.replicas) {
      expect((await http(`${r.clientUrl}/healthz`)).status).toBe(200);
      expect((await appendRaw(r.clientUrl, 'good', `after-${r.id}`)).status).toBe(200);
    }
    const entries = await readAll(leaderUrl, 'good');
    expect(entries.map((e) => e.data.toString())).toEqual(cluster.replicas.map((r) => `after-${r.id}`));
  });
});

function empties(n: number): Buffer[] {
  return Array.from({ length: n }, () => Buffer.alloc(0));
}

/** A request with a path sent as is (undici and fetch would resolve "." and ".." segments away). */
function rawHttp(base: string, method: string, path: string, body?: string): Promise<{ status: number; json(): any }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = rawRequest({ host: hostname, port, method, path, headers: body === undefined ? {} : { 'content-type': 'application/octet-stream' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, json: () => JSON.parse(Buffer.concat(chunks).toString()) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Writes `text` on a new connection and reads until the replica closes it: the first answer's status, head and JSON body. */
function rawSocketAnswer(base: string, text: string): Promise<{ status: number; head: string; json(): any }> {
  const { port } = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1', () => socket.write(text));
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => {
      const raw = Buffer.concat(chunks).toString();
      const [head = '', rest = ''] = raw.split('\r\n\r\n');
      const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? rest.length);
      resolve({ status: Number(head.split(' ')[1]), head, json: () => JSON.parse(rest.slice(0, length)) });
    });
  });
}

/** Streams `total` bytes as fast as the replica reads them (with or without a content-length) and reports its answer and any error the client saw first. */
function streamBody(base: string, total: number, announced: boolean): Promise<{ status?: number; body: string; error?: string }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve) => {
    const headers: Record<string, string | number> = { 'content-type': 'application/octet-stream' };
    if (announced) headers['content-length'] = total;
    const req = rawRequest({ host: hostname, port, method: 'POST', path: '/v1/logs/good/entries', headers });
    let error: string | undefined;
    req.on('error', (err: NodeJS.ErrnoException) => {
      error = err.code ?? err.message;
      resolve({ body: '', error });
    });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, body, error }));
    });
    const chunk = Buffer.alloc(64 * 1024, 7);
    let sent = 0;
    const pump = () => {
      while (sent < total) {
        sent += chunk.length;
        if (!req.write(chunk)) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}
