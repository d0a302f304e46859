import { Readable } from 'node:stream';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { FRAMES_CONTENT_TYPE } from '../../src/frames.js';
import { appendRaw, createLog, http, readAll, startTestCluster } from '../support/cluster.js';

let cluster: LocalCluster;
let stop: () => Promise<void>;
let leaderUrl: string;
let followerUrl: string;

beforeAll(async () => {
  ({ cluster, stop } = await startTestCluster(['--max-entry-bytes', '1024', '--max-request-bytes', '65536']));
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

  it('left no partial batch visible and still serves appends and reads on every replica', async () => {
    for (const r of cluster.replicas) {
      expect((await http(`${r.clientUrl}/healthz`)).status).toBe(200);
      expect((await appendRaw(r.clientUrl, 'good', `after-${r.id}`)).status).toBe(200);
    }
    const entries = await readAll(leaderUrl, 'good');
    expect(entries.map((e) => e.data.toString())).toEqual(cluster.replicas.map((r) => `after-${r.id}`));
  });
});
