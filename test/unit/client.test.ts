/**
 * The client's pure pieces (backoff, retry rules, batching, the frame stream
 * parser, cluster.json, output), and the producer and tail against a small
 * local HTTP server that plays the server contract (producer headers,
 * duplicates, sequence gaps, follow=true streams with keep-alives and cuts).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createClient, type TernClient } from '../../src/client/index.js';
import { AuthError, ConnectionError, LogNotFoundError, ReaderNotFoundError, SequenceError, TernServerError, TimeBehindError, UnavailableError, errorFromAnswer, connectionError } from '../../src/client/errors.js';
import { backoffDelayMs, retryDelayMs, shouldRetry } from '../../src/client/retry.js';
import { batchIsFull, nextBatchSize } from '../../src/client/batch.js';
import { looksLikeUrls, parseClusterFile, parseUrlList } from '../../src/client/cluster-file.js';
import { resolveClientOptions } from '../../src/client/client.js';
import { FrameStreamDecoder, KEEP_ALIVE_LENGTH, TIMED_FRAMES_CONTENT_TYPE, decodeFrames, encodeFrames, encodeTimedFrames } from '../../src/frames.js';
import { entryJson, entryLine, readersTable, retentionText, statusTable, table, textOf } from '../../src/cli/client-output.js';
import { exitCodeOf, planCommand, retentionOf, startOf } from '../../src/cli/client-commands.js';
import { durationText, parseDuration, parseSize, parseTime, sizeText } from '../../src/cli/units.js';
import { ConfigError } from '../../src/replica/config.js';
import { freePort } from '../../src/cli/processes.js';

describe('backoff and retry rules', () => {
  it('waits uniformly below an exponentially growing, capped ceiling (full jitter)', () => {
    const opts = { initialMs: 50, maxMs: 2000 };
    expect(backoffDelayMs(0, opts, () => 0.999)).toBe(49);
    expect(backoffDelayMs(3, opts, () => 0.5)).toBe(200);
    expect(backoffDelayMs(10, opts, () => 0.999)).toBe(1998);
    expect(backoffDelayMs(1000, opts, () => 0.999)).toBe(1998);
    expect(backoffDelayMs(5, opts, () => 0)).toBe(0);
  });

  it('never waits less than the server Retry-After, capped by maxMs', () => {
    const notReady = errorFromAnswer(503, { error: { code: 'NOT_READY', message: 'x' } }, '1');
    expect(retryDelayMs(notReady, 0, { initialMs: 50, maxMs: 2000 }, () => 0)).toBe(1000);
    expect(retryDelayMs(notReady, 0, { initialMs: 50, maxMs: 300 }, () => 0)).toBe(300);
  });

  it('retries transient failures; unsafe operations only when certainly not applied', () => {
    const ackTimeout = errorFromAnswer(503, { error: { code: 'ACK_TIMEOUT', message: 'x', maybeApplied: true } }, '1');
    const noQuorum = errorFromAnswer(503, { error: { code: 'NO_QUORUM', message: 'x', maybeApplied: false } }, '1');
    const refused = connectionError('http://a', Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }));
    const reset = connectionError('http://a', Object.assign(new Error('reset'), { code: 'UND_ERR_SOCKET' }));
    expect(refused.maybeApplied).toBe(false);
    expect(reset.maybeApplied).toBe(true);
    expect(shouldRetry(ackTimeout, 'safe')).toBe(true);
    expect(shouldRetry(ackTimeout, 'unsafe')).toBe(false);
    expect(shouldRetry(noQuorum, 'unsafe')).toBe(true);
    expect(shouldRetry(refused, 'unsafe')).toBe(true);
    expect(shouldRetry(reset, 'unsafe')).toBe(false);
    expect(shouldRetry(reset, 'safe')).toBe(true);
    for (const [status, code] of [[404, 'LOG_NOT_FOUND'], [400, 'BAD_REQUEST'], [401, 'UNAUTHENTICATED'], [409, 'SEQUENCE_GAP'], [413, 'TOO_LARGE']] as const) {
      expect(shouldRetry(errorFromAnswer(status, { error: { code, message: 'x' } }, undefined), 'safe')).toBe(false);
    }
  });

  it('types server errors by code and status', () => {
    expect(errorFromAnswer(404, { error: { code: 'LOG_NOT_FOUND', message: 'no' } }, undefined)).toBeInstanceOf(LogNotFoundError);
    expect(errorFromAnswer(403, { error: { code: 'FORBIDDEN', message: 'no' } }, undefined)).toBeInstanceOf(AuthError);
    const gap = errorFromAnswer(409, { error: { code: 'SEQUENCE_GAP', message: 'gap', expectedSeq: 7, maybeApplied: false } }, undefined);
    expect(gap).toBeInstanceOf(SequenceError);
    expect((gap as SequenceError).expectedSeq).toBe(7);
    expect(gap.maybeApplied).toBe(false);
    const behind = errorFromAnswer(409, { error: { code: 'TIME_BEHIND', message: 'below 5' } }, undefined);
    expect(behind).toBeInstanceOf(TimeBehindError);
    expect([behind.maybeApplied, shouldRetry(behind, 'safe')]).toEqual([false, false]);
    const odd = errorFromAnswer(502, '<html>', undefined);
    expect([odd.code, odd.status]).toEqual(['HTTP_502', 502]);
  });
});

describe('batching', () => {
  const q = (...sizes: number[]) => sizes.map((n) => ({ data: Buffer.alloc(n) }));
  it('takes the longest prefix within the entry and byte limits, at least one entry', () => {
    expect(nextBatchSize(q(10, 10, 10), { maxBatchEntries: 2, maxBatchBytes: 1000 })).toBe(2);
    expect(nextBatchSize(q(10, 10, 10), { maxBatchEntries: 10, maxBatchBytes: 25 })).toBe(2);
    expect(nextBatchSize(q(100, 1), { maxBatchEntries: 10, maxBatchBytes: 25 })).toBe(1);
    expect(batchIsFull(q(1, 1), 2, { maxBatchEntries: 2, maxBatchBytes: 100 })).toBe(true);
    expect(batchIsFull(q(60), 60, { maxBatchEntries: 10, maxBatchBytes: 50 })).toBe(true);
    expect(batchIsFull(q(1), 1, { maxBatchEntries: 2, maxBatchBytes: 100 })).toBe(false);
  });

  it('keeps entries of different own times (or none) apart: a batch has one time', () => {
    const timed = (...times: (number | undefined)[]) => times.map((timeMs) => ({ data: Buffer.alloc(1), timeMs }));
    const limits = { maxBatchEntries: 10, maxBatchBytes: 1000 };
    expect(nextBatchSize(timed(5, 5, 6, 6), limits)).toBe(2);
    expect(nextBatchSize(timed(undefined, undefined, 5), limits)).toBe(2);
    expect(nextBatchSize(timed(5, undefined), limits)).toBe(1);
    expect(nextBatchSize(timed(7, 7, 7), limits)).toBe(3);
  });
});

describe('frame stream decoding, as the tail reads it', () => {
  it('reassembles frames split anywhere and skips keep-alives', () => {
    const keepAlive = Buffer.alloc(4);
    keepAlive.writeUInt32BE(KEEP_ALIVE_LENGTH);
    const body = Buffer.concat([keepAlive, ...encodeFrames([Buffer.from('a'), Buffer.alloc(0), Buffer.from('hello')]), keepAlive, ...encodeFrames([Buffer.from('z')])]);
    for (let cut = 1; cut <= body.length; cut++) {
      const decoder = new FrameStreamDecoder();
      const got: string[] = [];
      let keepAlives = 0;
      for (let o = 0; o < body.length; o += cut) {
        const chunk = decoder.push(body.subarray(o, o + cut));
        got.push(...chunk.entries.map(String));
        keepAlives += chunk.keepAlives;
      }
      expect(got).toEqual(['a', '', 'hello', 'z']);
      expect(keepAlives).toBe(2);
      expect(decoder.pending).toBe(0);
    }
  });
});

describe('cluster description', () => {
  it('reads cluster.json as tern cluster writes it, and URL lists', () => {
    const d = parseClusterFile(JSON.stringify({ etcd: {}, tls: { ca: '/x/ca.crt' }, replicas: [{ id: 'r1', clientUrl: 'https://127.0.0.1:7001/', peerUrl: 'x', pid: 1 }, { id: 'r2', clientUrl: 'https://127.0.0.1:7002' }] }));
    expect(d).toEqual({ replicas: [{ id: 'r1', url: 'https://127.0.0.1:7001' }, { id: 'r2', url: 'https://127.0.0.1:7002' }], caFile: '/x/ca.crt' });
    expect(parseClusterFile(JSON.stringify({ tls: null, replicas: [{ clientUrl: 'http://h:1' }] })).caFile).toBeUndefined();
    expect(() => parseClusterFile('{')).toThrow(/not JSON/);
    expect(() => parseClusterFile('{"replicas": []}')).toThrow(/no "replicas"/);
    expect(parseUrlList('http://a:1, http://b:2/')).toEqual([{ url: 'http://a:1' }, { url: 'http://b:2' }]);
    expect(() => parseUrlList('ftp://a')).toThrow(/http/);
    expect(looksLikeUrls('http://a:1')).toBe(true);
    expect(looksLikeUrls('.tern/cluster.json')).toBe(false);
  });

  it('resolves options with defaults, from a cluster file read by the caller', () => {
    const o = resolveClientOptions({ cluster: 'c.json' }, () => JSON.stringify({ replicas: [{ id: 'r1', clientUrl: 'http://a:1' }] }));
    expect(o.replicas).toEqual([{ id: 'r1', url: 'http://a:1' }]);
    expect(o.deadlineMs).toBe(30_000);
    expect(Object.isFrozen(o)).toBe(true);
    expect(() => resolveClientOptions({ urls: ['http://a:1'], deadlineMs: -1 })).toThrow(/deadlineMs/);
  });
});

describe('CLI output and arguments', () => {
  it('prints text entries as text and binary ones as base64, JSON always lossless', () => {
    expect(textOf(Buffer.from('héllo\tx'))).toBe('héllo\tx');
    expect(textOf(Buffer.from([0xff, 0x00]))).toBeUndefined();
    expect(textOf(Buffer.from('a\nb'))).toBeUndefined();
    const t = Date.UTC(2026, 11, 3, 16, 40, 1, 5);
    expect(entryLine({ id: 3, timeMs: t, data: Buffer.from('hi') })).toBe('3\t2026-12-03T16:40:01.005Z\thi');
    expect(entryLine({ id: 4, timeMs: t, data: Buffer.from([0xff]) })).toBe('4\t2026-12-03T16:40:01.005Z\tbase64:/w==');
    // Written before timestamps: no time to show.
    expect(entryLine({ id: 4, timeMs: 0, data: Buffer.from('old') })).toBe('4\t-\told');
    expect(JSON.parse(entryJson({ id: 5, timeMs: t, data: Buffer.from('hi') }))).toEqual({ id: 5, timeMs: t, data: 'aGk=', text: 'hi' });
    expect(table([['a', 'bb'], ['ccc', 'd']])).toBe('a    bb\nccc  d');
  });

  it('refuses bad usage before connecting (exit 2) and maps failures to exit codes', () => {
    for (const [cmd, args] of [['read', []], ['read', ['x', '--from', '-1']], ['read', ['x', '--from', '1', '--since', '10m']], ['read', ['x', '--since', '10']], ['tail', ['x', '--from-time', 'yesterday']], ['log', ['offset', 'x']], ['log', ['offset', 'x', '--time', '5m']], ['log', ['retention', 'x']], ['log', ['retention', 'x', '--none', '--max-entries', '5']], ['log', ['create', 'x', '--max-entries', '0']], ['log', ['create', 'x', '--max-bytes', '10gb']], ['reader', ['commit', 'x', 'r']], ['reader', ['commit', 'x', 'r', '-1']], ['reader', ['get', 'x']], ['reader', ['frob']], ['log', ['frob']], ['log', ['truncate', 'x']], ['log', ['recover', 'x']], ['append', []], ['tail', ['x', '--bogus']]] as const) {
      expect(() => planCommand(cmd, [...args]), `${cmd} ${args.join(' ')}`).toThrow(ConfigError);
    }
    expect(exitCodeOf(errorFromAnswer(404, { error: { code: 'LOG_NOT_FOUND', message: '' } }, undefined))).toBe(3);
    expect(exitCodeOf(errorFromAnswer(404, { error: { code: 'READER_NOT_FOUND', message: '' } }, undefined))).toBe(3);
    expect(exitCodeOf(new UnavailableError('x', {}))).toBe(4);
    expect(exitCodeOf(new ConnectionError('x', 'http://a', {}))).toBe(4);
    expect(exitCodeOf(errorFromAnswer(401, { error: { code: 'UNAUTHENTICATED', message: '' } }, undefined))).toBe(5);
    expect(exitCodeOf(errorFromAnswer(409, { error: { code: 'TOO_MANY_LOGS', message: '' } }, undefined))).toBe(1);
    expect(exitCodeOf(new ConfigError('x'))).toBe(2);
  });

  it('reads durations, sizes and times in the units the flags document', () => {
    expect([parseDuration('30s', 'f'), parseDuration('10m', 'f'), parseDuration('2h', 'f'), parseDuration('7d', 'f'), parseDuration('250ms', 'f')]).toEqual([30_000, 600_000, 7_200_000, 604_800_000, 250]);
    for (const bad of ['10', '0s', '-1m', '1.5h', '3w', 'm', '']) expect(() => parseDuration(bad, '--since'), bad).toThrow(ConfigError);
    expect([parseSize('4096', 'f'), parseSize('10GiB', 'f'), parseSize('512MiB', 'f'), parseSize('2KB', 'f'), parseSize('1TB', 'f')]).toEqual([4096, 10 * 2 ** 30, 512 * 2 ** 20, 2000, 1e12]);
    for (const bad of ['0', '10gb', '1.5GiB', 'GiB', '10 GiB']) expect(() => parseSize(bad, '--max-bytes'), bad).toThrow(ConfigError);
    expect(parseTime('2026-12-03T16:00:00Z', 'f')).toBe(Date.UTC(2026, 11, 3, 16));
    expect(parseTime('2026-12-03T16:00:00.250+01:00', 'f')).toBe(Date.UTC(2026, 11, 3, 15, 0, 0, 250));
    expect(parseTime('1764777600000', 'f')).toBe(1764777600000);
    for (const bad of ['yesterday', '12/03/2026', '2026-13-45T00:00:00Z', '-5']) expect(() => parseTime(bad, '--from-time'), bad).toThrow(ConfigError);
  });

  it('prints durations and sizes back in the units the flags take, exactly', () => {
    for (const d of ['250ms', '1500ms', '30s', '90m', '2h', '7d', '36h']) expect(durationText(parseDuration(d, 'f'))).toBe(d);
    for (const b of ['4097B', '512MiB', '10GiB', '3TiB', '1023KiB']) expect(sizeText(parseSize(b, 'f'))).toBe(b);
    expect(sizeText(parseSize('1GB', 'f'))).toBe('1000000000B');
  });

  it('takes a retention policy from its flags, --none for none; shows policies and readers', () => {
    expect(retentionOf({})).toBeUndefined();
    expect(retentionOf({ 'max-age': '7d', 'max-bytes': '10GiB', 'max-entries': '1000' })).toEqual({ maxAgeMs: 7 * 86_400_000, maxBytes: 10 * 2 ** 30, maxEntries: 1000 });
    expect(retentionOf({ none: true })).toEqual({});
    expect(retentionText({ maxAgeMs: 7 * 86_400_000, maxBytes: 10 * 2 ** 30, maxEntries: 1000 })).toBe('max age 7d, max bytes 10GiB, max entries 1000');
    expect(retentionText({})).toBe('none');
    expect(readersTable([{ name: 'billing', nextId: 42, holdsRetention: true, updatedAt: '2026-12-03T17:00:00.000Z', lagEntries: 8 }])).toBe(
      'NAME     NEXT ID  HOLDS  LAG  UPDATED\nbilling  42       yes    8    2026-12-03T17:00:00.000Z',
    );
    const reader = { name: 'billing', nextId: 42, holdsRetention: true, updatedAt: '2026-12-03T17:00:00.000Z', lagEntries: 8 };
    const status = statusTable({
      log: 'l', leader: 'r1', quiesced: false, epoch: 2, committedId: 49, flushedId: 49, firstId: 42, flushLag: { entries: 0, bytes: 0 }, segments: [],
      retention: { maxEntries: 5 }, readers: [reader], retentionHeldBy: { reader: 'billing', nextId: 42, entries: 3 },
    });
    expect(status).toMatch(/^retention\s+max entries 5$/m);
    expect(status).toMatch(/^held by\s+reader billing at id 42 \(3 entries the policy would remove\)$/m);
    expect(status).toMatch(/\nreaders:\n  NAME\s+NEXT ID.*\n  billing\s+42\s+yes\s+8\s/);
  });

  it('starts a read at --from, --since (counted back from now) or --from-time, one of them', () => {
    const now = Date.UTC(2026, 11, 3, 17);
    expect(startOf({}, now)).toBeUndefined();
    expect(startOf({ from: '7' }, now)).toEqual({ from: 7 });
    expect(startOf({ since: '10m' }, now)).toEqual({ fromTime: now - 600_000 });
    expect(startOf({ 'from-time': '2026-12-03T16:00:00Z' }, now)).toEqual({ fromTime: Date.UTC(2026, 11, 3, 16) });
    expect(() => startOf({ since: '10m', 'from-time': '5' }, now)).toThrow(/two ways/);
  });
});

// ---- against a local fake server ------------------------------------------

type Handler = (req: IncomingMessage, body: Buffer, res: ServerResponse) => void;
const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function fakeServer(handler: Handler): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => handler(req, Buffer.concat(chunks), res));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

function answer(res: ServerResponse, status: number, json: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(json));
}

function client(urls: string[], extra: Parameters<typeof createClient>[1] = {}): TernClient {
  const c = createClient(urls, { requestTimeoutMs: 2000, deadlineMs: 5000, backoff: { initialMs: 5, maxMs: 20 }, ...extra });
  cleanups.push(() => c.close());
  return c;
}

/** A fake log: appends with producer dedup and times (the leader's clock, 1000 + id here, or Tern-Time-Ms) as the server contract says. */
function fakeLog() {
  const entries: Buffer[] = [];
  const producers = new Map<string, { nextSeq: number; batches: Map<number, { firstId: number; n: number; timeMs: number }> }>();
  const requests: { seq: number | undefined; n: number; timeMs?: string }[] = [];
  let lastTimeMs = 0;
  function append(req: IncomingMessage, body: Buffer, res: ServerResponse): void {
    const batch = req.headers['content-type'] === 'application/vnd.tern.frames' ? decodeFrames(body) : [body];
    const pid = req.headers['tern-producer-id'] as string | undefined;
    const seq = req.headers['tern-producer-seq'] === undefined ? undefined : Number(req.headers['tern-producer-seq']);
    const own = req.headers['tern-time-ms'] as string | undefined;
    requests.push({ seq, n: batch.length, ...(own === undefined ? {} : { timeMs: own }) });
    let p: { nextSeq: number; batches: Map<number, { firstId: number; n: number; timeMs: number }> } | undefined;
    if (pid !== undefined && seq !== undefined) {
      p = producers.get(pid) ?? { nextSeq: 0, batches: new Map() };
      producers.set(pid, p);
      const seen = p.batches.get(seq);
      if (seen) return answer(res, 200, { firstId: seen.firstId, lastId: seen.firstId + seen.n - 1, epoch: 1, timeMs: seen.timeMs, duplicate: true });
      if (seq > p.nextSeq) return answer(res, 409, { error: { code: 'SEQUENCE_GAP', message: 'gap', expectedSeq: p.nextSeq, maybeApplied: false } });
      if (seq < p.nextSeq) return answer(res, 409, { error: { code: 'SEQUENCE_STALE', message: 'stale', maybeApplied: false } });
    }
    if (own !== undefined && Number(own) < lastTimeMs) return answer(res, 409, { error: { code: 'TIME_BEHIND', message: `below the log's last time ${lastTimeMs}; not applied`, maybeApplied: false } });
    const firstId = entries.length;
    const timeMs = own === undefined ? Math.max(lastTimeMs, 1000 + firstId) : Number(own);
    lastTimeMs = timeMs;
    if (p && seq !== undefined) {
      p.batches.set(seq, { firstId, n: batch.length, timeMs });
      p.nextSeq = seq + batch.length;
    }
    entries.push(...batch.map((b) => Buffer.from(b)));
    answer(res, 200, batch.length === 1 && req.headers['content-type'] !== 'application/vnd.tern.frames' ? { id: firstId, epoch: 1, timeMs } : { firstId, lastId: entries.length - 1, epoch: 1, timeMs });
  }
  return { entries, requests, append };
}

describe('producer (against a fake server)', () => {
  it('batches concurrent appends into one request, one promise and id per entry, sequences advancing', async () => {
    const log = fakeLog();
    const { url } = await fakeServer((req, body, res) => (req.method === 'POST' ? log.append(req, body, res) : answer(res, 200, { log: 'l', leader: null })));
    const producer = client([url]).producer('l', { lingerMs: 5 });
    const ids = await Promise.all(Array.from({ length: 50 }, (_, i) => producer.append(`e${i}`)));
    expect(ids).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(log.requests).toEqual([{ seq: 0, n: 50 }]);
    expect(await producer.append('one')).toBe(50);
    expect(log.requests[1]).toEqual({ seq: 50, n: 1 });
    expect(producer.nextSeq).toBe(51);
    expect(log.entries.map(String).slice(0, 2)).toEqual(['e0', 'e1']);
  });

  it('respects the entry limit: a full batch goes at once, the rest follows', async () => {
    const log = fakeLog();
    const { url } = await fakeServer((req, body, res) => (req.method === 'POST' ? log.append(req, body, res) : answer(res, 200, { log: 'l', leader: null })));
    const producer = client([url]).producer('l', { lingerMs: 1000, maxBatchEntries: 10 });
    const ids = await Promise.all(Array.from({ length: 25 }, (_, i) => producer.append(`e${i}`)).slice(0, 20));
    expect(ids).toHaveLength(20);
    await producer.flush();
    expect(log.requests.map((r) => r.n)).toEqual([10, 10, 5]);
  });

  it('retries an unknown outcome with the same producer id and seq: the server dedups, nothing is duplicated', async () => {
    const log = fakeLog();
    let calls = 0;
    const { url } = await fakeServer((req, body, res) => {
      if (req.method !== 'POST') return answer(res, 200, { log: 'l', leader: null });
      calls++;
      if (calls === 1) {
        // Applied, but the answer is lost: the connection breaks.
        log.append(req, body, { writeHead: () => ({ end: () => undefined }) } as unknown as ServerResponse);
        return res.socket?.destroy();
      }
      if (calls === 2) return answer(res, 503, { error: { code: 'ACK_TIMEOUT', message: 'slow', maybeApplied: true } }, { 'retry-after': '0' });
      log.append(req, body, res);
    });
    const producer = client([url]).producer('l', { lingerMs: 0 });
    expect(await producer.append('x')).toBe(0);
    expect(log.entries).toHaveLength(1);
    expect(log.requests.map((r) => r.seq)).toEqual([0, 0]);
    expect(producer.stats.duplicates).toBe(1);
    expect(await producer.append('y')).toBe(1);
  });

  it('a non-idempotent producer never retries a maybe-applied failure and says so', async () => {
    let calls = 0;
    const { url } = await fakeServer((req, _body, res) => {
      calls++;
      expect(req.headers['tern-producer-id']).toBeUndefined();
      answer(res, 503, { error: { code: 'ACK_TIMEOUT', message: 'slow', maybeApplied: true } }, { 'retry-after': '0' });
    });
    const c = client([url]);
    const err = await c.producer('l', { idempotent: false, lingerMs: 0 }).append('x').catch((e) => e);
    expect(err).toBeInstanceOf(TernServerError);
    expect(err.maybeApplied).toBe(true);
    expect(calls).toBeGreaterThanOrEqual(1);
    // The first call may be the leader lookup (GET status); only one POST was sent.
    expect(calls).toBeLessThanOrEqual(2);
  });

  it('retries NOT_READY (not applied) until the deadline, then fails with UnavailableError', async () => {
    let posts = 0;
    const { url } = await fakeServer((req, _body, res) => {
      if (req.method === 'POST') posts++;
      answer(res, 503, { error: { code: 'NOT_READY', message: 'loading producers' } }, { 'retry-after': '0' });
    });
    const started = Date.now();
    const err = await client([url], { deadlineMs: 300 }).producer('l', { idempotent: false, lingerMs: 0 }).append('x').catch((e) => e);
    expect(err).toBeInstanceOf(UnavailableError);
    expect(err.maybeApplied).toBe(false);
    expect(posts).toBeGreaterThan(2);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('realigns on SEQUENCE_GAP after a batch given up as unknown was in fact not applied', async () => {
    const log = fakeLog();
    let failing = true;
    const { url } = await fakeServer((req, body, res) => {
      if (req.method !== 'POST') return answer(res, 200, { log: 'l', leader: null });
      if (failing) return answer(res, 503, { error: { code: 'ACK_TIMEOUT', message: 'x', maybeApplied: true } }, { 'retry-after': '0' });
      log.append(req, body, res);
    });
    const producer = client([url], { deadlineMs: 30 }).producer('l', { lingerMs: 0, deadlineMs: 30 });
    const first = await producer.append('lost?').catch((e) => e);
    expect(first.maybeApplied, String(first)).toBe(true);
    expect(producer.nextSeq).toBe(1);
    failing = false;
    expect(await producer.append('next')).toBe(0);
    expect(producer.stats.retriedSequences).toBe(1);
    expect(log.requests.map((r) => r.seq)).toEqual([1, 0]);
  });

  it('splits a batch the server refuses as too large, so only the oversized entry fails', async () => {
    const log = fakeLog();
    const { url } = await fakeServer((req, body, res) => {
      if (req.method !== 'POST') return answer(res, 200, { log: 'l', leader: null });
      const entries = req.headers['content-type'] === 'application/vnd.tern.frames' ? decodeFrames(body) : [body];
      if (entries.some((e) => e.length > 10)) return answer(res, 413, { error: { code: 'TOO_LARGE', message: 'entry over 10 bytes' } });
      log.append(req, body, res);
    });
    const producer = client([url]).producer('l', { lingerMs: 5 });
    const results = await Promise.allSettled(['a', 'b', 'x'.repeat(11), 'c', 'd'].map((v) => producer.append(v)));
    expect(results.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as TernServerError).code))).toEqual([0, 1, 'TOO_LARGE', 2, 3]);
    expect(log.entries.map(String)).toEqual(['a', 'b', 'c', 'd']);
  });

  it('refuses a gap no unknown batch explains: SequenceError, not applied, no realignment', async () => {
    const log = fakeLog();
    const { url } = await fakeServer((req, body, res) => (req.method === 'POST' ? log.append(req, body, res) : answer(res, 200, { log: 'l', leader: null })));
    const err = await client([url]).producer('l', { producerId: 'p1', startSeq: 5, lingerMs: 0 }).append('x').catch((e) => e);
    expect(err).toBeInstanceOf(SequenceError);
    expect([err.code, err.expectedSeq, err.maybeApplied]).toEqual(['SEQUENCE_GAP', 0, false]);
    expect(log.entries).toHaveLength(0);
  });

  it('sends an own time as Tern-Time-Ms, batching only entries of one time, and gives each entry its time', async () => {
    const log = fakeLog();
    const { url } = await fakeServer((req, body, res) => (req.method === 'POST' ? log.append(req, body, res) : answer(res, 200, { log: 'l', leader: null })));
    const producer = client([url]).producer('l', { lingerMs: 5 });
    const sent = await Promise.all([producer.send('a', { timeMs: 5000 }), producer.send('b', { timeMs: 5000 }), producer.send('c', { timeMs: 6000 }), producer.send('d')]);
    expect(sent).toEqual([{ id: 0, timeMs: 5000 }, { id: 1, timeMs: 5000 }, { id: 2, timeMs: 6000 }, { id: 3, timeMs: 6000 }]);
    expect(log.requests).toEqual([{ seq: 0, n: 2, timeMs: '5000' }, { seq: 2, n: 1, timeMs: '6000' }, { seq: 3, n: 1 }]);
    await expect(producer.send('e', { timeMs: -1 })).rejects.toMatchObject({ code: 'BAD_ARGUMENT' });
    await expect(producer.send('e', { timeMs: 1.5 })).rejects.toMatchObject({ code: 'BAD_ARGUMENT' });
    expect(log.requests).toHaveLength(3);
  });

  it('fails a time behind the log with TimeBehindError, not applied, sent once; the sequence is used again', async () => {
    const log = fakeLog();
    const { url } = await fakeServer((req, body, res) => (req.method === 'POST' ? log.append(req, body, res) : answer(res, 200, { log: 'l', leader: null })));
    for (const idempotent of [true, false]) {
      const producer = client([url]).producer('l', { lingerMs: 0, idempotent });
      const before = log.requests.length;
      const last = (await producer.send('now', { timeMs: 9000 + log.entries.length })).timeMs!;
      const err = await producer.append('late', { timeMs: last - 1 }).catch((e) => e);
      expect(err).toBeInstanceOf(TimeBehindError);
      expect([err.code, err.status, err.maybeApplied]).toEqual(['TIME_BEHIND', 409, false]);
      expect(err.message).toContain(String(last));
      expect(log.requests.length - before).toBe(2);
      expect(log.entries.map(String)).not.toContain('late');
      const next = await producer.send('on time', { timeMs: last });
      expect(next.timeMs).toBe(last);
      if (idempotent) expect(log.requests.slice(before).map((r) => r.seq)).toEqual([0, 1, 1]);
    }
  });

  it('learns the leader from the status answer and sends appends there', async () => {
    const log = fakeLog();
    const hits: string[] = [];
    const leader = await fakeServer((req, body, res) => {
      hits.push(`leader ${req.method} ${req.url}`);
      if (req.url === '/healthz') return answer(res, 200, { id: 'r2' });
      if (req.method === 'POST') return log.append(req, body, res);
      answer(res, 200, { log: 'l', leader: 'r2' });
    });
    const other = await fakeServer((req, _body, res) => {
      hits.push(`other ${req.method} ${req.url}`);
      if (req.url === '/healthz') return answer(res, 200, { id: 'r1' });
      answer(res, 200, { log: 'l', leader: 'r2' });
    });
    const c = client([other.url, leader.url]);
    const p = c.producer('l', { lingerMs: 0 });
    for (let i = 0; i < 5; i++) await p.append(`e${i}`);
    expect(hits.filter((h) => h.includes('POST')).every((h) => h.startsWith('leader'))).toBe(true);
    expect(hits.filter((h) => h.includes('POST'))).toHaveLength(5);
  });
});

describe('readers and retention (against a fake server)', () => {
  it('commits, gets, lists and deletes readers and sets retention with the documented requests; 404s are typed', async () => {
    const seen: string[] = [];
    const { url } = await fakeServer((req, body, res) => {
      seen.push(`${req.method} ${req.url} ${body.toString()}`);
      if (req.url === '/v1/logs/l/readers/gone') return answer(res, 404, { error: { code: 'READER_NOT_FOUND', message: 'no reader gone' } });
      if (req.url === '/v1/logs/missing') return answer(res, 404, { error: { code: 'LOG_NOT_FOUND', message: 'no log' } });
      if (req.url === '/v1/logs/l/readers') return answer(res, 200, { readers: [{ name: 'a', nextId: 3, holdsRetention: false, updatedAt: 'x', lagEntries: 1 }] });
      if (req.url!.startsWith('/v1/logs/l/readers/')) {
        if (req.method === 'DELETE') return answer(res, 200, { log: 'l', reader: 'a', deleted: true });
        const b = body.length ? JSON.parse(body.toString()) : { nextId: 3, holdsRetention: false };
        return answer(res, 200, { name: 'a', ...b, updatedAt: 'x' });
      }
      answer(res, req.method === 'PUT' && req.url === '/v1/logs/new' ? 201 : 200, { log: 'l', leader: null, retention: {} });
    });
    const c = client([url]);
    expect(await c.commitReader('l', 'a', 3, { holdsRetention: true })).toEqual({ name: 'a', nextId: 3, holdsRetention: true, updatedAt: 'x' });
    await c.commitReader('l', 'a', 4);
    expect((await c.reader('l', 'a')).nextId).toBe(3);
    expect((await c.readers('l')).map((r) => r.name)).toEqual(['a']);
    expect(await c.deleteReader('l', 'a')).toEqual({ log: 'l', reader: 'a', deleted: true });
    await expect(c.reader('l', 'gone')).rejects.toBeInstanceOf(ReaderNotFoundError);
    expect((await c.createLog('new', { retention: { maxEntries: 5 } })).created).toBe(true);
    expect((await c.createLog('plain')).created).toBe(false);
    await c.setRetention('l', {});
    await expect(c.setRetention('missing', { maxEntries: 1 })).rejects.toBeInstanceOf(LogNotFoundError);
    expect(seen).toEqual([
      'PUT /v1/logs/l/readers/a {"nextId":3,"holdsRetention":true}',
      'PUT /v1/logs/l/readers/a {"nextId":4,"holdsRetention":false}',
      'GET /v1/logs/l/readers/a ',
      'GET /v1/logs/l/readers ',
      'DELETE /v1/logs/l/readers/a ',
      'GET /v1/logs/l/readers/gone ',
      'PUT /v1/logs/new {"retention":{"maxEntries":5}}',
      'PUT /v1/logs/plain ',
      'GET /v1/logs/l ',
      'PUT /v1/logs/l {"retention":{}}',
      // A missing log is found missing before anything could create it.
      'GET /v1/logs/missing ',
    ]);
  });
});

describe('routing (against fake servers)', () => {
  it('moves past replicas that refuse connections and sticks to the one that answered', async () => {
    let hits = 0;
    const good = await fakeServer((_req, _body, res) => {
      hits++;
      answer(res, 200, { logs: ['a'] });
    });
    const dead = await Promise.all([freePort(), freePort()]).then((ps) => ps.map((p) => `http://127.0.0.1:${p}`));
    const c = client([dead[0]!, good.url, dead[1]!]);
    for (let i = 0; i < 5; i++) expect(await c.listLogs()).toEqual(['a']);
    expect(hits).toBe(5);
    expect(c.replicaUrl(0)).toBe(good.url);
  });
});

describe('tail (against a fake server)', () => {
  it('streams frames, skips keep-alives, and resumes from the last id + 1 after the stream is cut', async () => {
    const froms: number[] = [];
    const { url } = await fakeServer((req, _body, res) => {
      const from = Number(new URL(req.url!, 'http://x').searchParams.get('from'));
      expect(new URL(req.url!, 'http://x').searchParams.get('follow')).toBe('true');
      froms.push(from);
      res.writeHead(200, { 'content-type': 'application/vnd.tern.frames', 'tern-from-id': String(from) });
      const keepAlive = Buffer.alloc(4);
      keepAlive.writeUInt32BE(KEEP_ALIVE_LENGTH);
      res.write(keepAlive);
      const frames = Buffer.concat(encodeFrames([Buffer.from(`v${from}`), Buffer.from(`v${from + 1}`)]));
      // Half a frame more, then cut: the tail must not deliver it and must ask again from the right id.
      res.write(Buffer.concat([frames, Buffer.from([0, 0, 0, 9, 1])]));
      setTimeout(() => res.socket?.destroy(), 20);
    });
    const got: string[] = [];
    for await (const e of client([url]).tail('l', { from: 10 })) {
      got.push(`${e.id}:${e.data}`);
      if (got.length === 6) break;
    }
    expect(got).toEqual(['10:v10', '11:v11', '12:v12', '13:v13', '14:v14', '15:v15']);
    expect(froms).toEqual([10, 12, 14]);
  });

  it('from a time: asks fromTime until a stream says its first id, then resumes by id; entries carry their times', async () => {
    const asked: string[] = [];
    const { url } = await fakeServer((req, _body, res) => {
      const q = new URL(req.url!, 'http://x').searchParams;
      q.delete('follow');
      asked.push(q.toString());
      expect(req.headers.accept).toContain(TIMED_FRAMES_CONTENT_TYPE);
      // The first attempt fails before any stream: the time is asked again.
      if (asked.length === 1) return answer(res, 503, { error: { code: 'NOT_READY', message: 'x' } }, { 'retry-after': '0' });
      const from = q.has('from') ? Number(q.get('from')) : 20;
      res.writeHead(200, { 'content-type': TIMED_FRAMES_CONTENT_TYPE, 'tern-from-id': String(from) });
      res.write(Buffer.concat(encodeTimedFrames([Buffer.from(`v${from}`), Buffer.from(`v${from + 1}`)], [7000 + from, 7000 + from + 1])));
      setTimeout(() => res.socket?.destroy(), 20);
    });
    const got: string[] = [];
    for await (const e of client([url]).tail('l', { fromTime: 7000 })) {
      got.push(`${e.id}@${e.timeMs}:${e.data}`);
      if (got.length === 4) break;
    }
    expect(got).toEqual(['20@7020:v20', '21@7021:v21', '22@7022:v22', '23@7023:v23']);
    expect(asked).toEqual(['fromTime=7000', 'fromTime=7000', 'from=22']);
    await expect((async () => { for await (const _ of client([url]).tail('l', { from: 1, fromTime: 5 })) void _; })()).rejects.toMatchObject({ code: 'BAD_ARGUMENT' });
  });

  it('ends with LogNotFoundError for a missing log, and stops on abort', async () => {
    const { url } = await fakeServer((_req, _body, res) => answer(res, 404, { error: { code: 'LOG_NOT_FOUND', message: 'no' } }));
    const c = client([url]);
    await expect((async () => { for await (const _ of c.tail('nope')) void _; })()).rejects.toBeInstanceOf(LogNotFoundError);
    const hung = await fakeServer((_req, _body, res) => res.writeHead(200, { 'content-type': 'application/vnd.tern.frames' }).write(Buffer.alloc(0)));
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    const seen = [];
    for await (const e of client([hung.url]).tail('l', { signal: ac.signal })) seen.push(e);
    expect(seen).toEqual([]);
  });
});

describe('reads (against a fake server)', () => {
  it('pages with frames until the commit point', async () => {
    const data = Array.from({ length: 7 }, (_, i) => Buffer.from(`d${i}`));
    const { url } = await fakeServer((req, _body, res) => {
      const q = new URL(req.url!, 'http://x').searchParams;
      const from = Number(q.get('from'));
      const limit = Number(q.get('limit') ?? 1000);
      const page = data.slice(from, from + limit);
      expect(req.headers.accept).toContain('application/vnd.tern.frames');
      res.writeHead(200, { 'content-type': 'application/vnd.tern.frames', 'tern-from-id': String(from), 'tern-next-id': String(from + page.length), 'tern-committed-id': '6' }).end(Buffer.concat(encodeFrames(page)));
    });
    const c = client([url]);
    const pages = [];
    for await (const p of c.pages('l', { from: 1, pageSize: 3 })) pages.push(p.entries.map((e) => e.id));
    expect(pages).toEqual([[1, 2, 3], [4, 5, 6]]);
    const limited = [];
    for await (const e of c.entries('l', { limit: 4, pageSize: 3 })) limited.push(String(e.data));
    expect(limited).toEqual(['d0', 'd1', 'd2', 'd3']);
  });

  it('reads timed frames, or plain frames (time 0) from a replica that predates timestamps; starts at a time; finds the offset of a time', async () => {
    const asked: string[] = [];
    let timed = true;
    const { url } = await fakeServer((req, _body, res) => {
      const u = new URL(req.url!, 'http://x');
      asked.push(`${u.pathname}?${u.searchParams}`);
      if (u.pathname.endsWith('/offsets')) return answer(res, 200, { log: 'l', time: Number(u.searchParams.get('time')), id: 3, timeMs: 8003 });
      const from = u.searchParams.has('from') ? Number(u.searchParams.get('from')) : 3;
      const data = [Buffer.from(`d${from}`), Buffer.from(`d${from + 1}`)];
      const body = timed ? encodeTimedFrames(data, [8000 + from, 8000 + from + 1]) : encodeFrames(data);
      res.writeHead(200, { 'content-type': timed ? TIMED_FRAMES_CONTENT_TYPE : 'application/vnd.tern.frames', 'tern-from-id': String(from), 'tern-next-id': String(from + 2), 'tern-committed-id': '6' }).end(Buffer.concat(body));
    });
    const c = client([url]);
    const byTime = [];
    for await (const e of c.entries('l', { fromTime: 8003, pageSize: 2 })) byTime.push(`${e.id}@${e.timeMs}`);
    expect(byTime).toEqual(['3@8003', '4@8004', '5@8005', '6@8006']);
    expect(asked).toEqual(['/v1/logs/l/entries?fromTime=8003&limit=2', '/v1/logs/l/entries?from=5&limit=2']);
    expect(await c.offsetForTime('l', 8002)).toEqual({ log: 'l', time: 8002, id: 3, timeMs: 8003 });
    expect(asked.at(-1)).toBe('/v1/logs/l/offsets?time=8002');
    timed = false;
    expect((await c.read('l', { from: 0 })).entries.map((e) => `${e.id}@${e.timeMs}:${e.data}`)).toEqual(['0@0:d0', '1@0:d1']);
    await expect(c.read('l', { from: 0, fromTime: 1 })).rejects.toMatchObject({ code: 'BAD_ARGUMENT' });
    await expect(c.offsetForTime('l', -1)).rejects.toMatchObject({ code: 'BAD_ARGUMENT' });
  });
});
