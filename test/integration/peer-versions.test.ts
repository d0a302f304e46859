/**
 * Replication between releases (src/peer/transport.ts, src/peer/wire.ts): a
 * leader of this release sends the newest request version, and steps down to
 * the one an older follower takes when that follower refuses it as unknown,
 * as a replica of the previous release does during a rolling update. Against
 * a real HTTP server on loopback that decodes as an older replica would.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ReplyStatus, type AppendRequest } from '../../src/quorum/messages.js';
import { PeerTransport } from '../../src/peer/transport.js';
import { NEWEST_WIRE_VERSION, UNSUPPORTED_VERSION_MESSAGE, decodeAppendRequest, encodeAppendReply, requestVersion } from '../../src/peer/wire.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/** A follower that takes request versions up to `newest`, answering each in its version; `seen` lists the versions it was sent. */
async function follower(newest: number): Promise<{ url: string; seen: number[] }> {
  const seen: number[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const version = requestVersion(body);
      seen.push(version);
      if (version > newest) {
        const text = JSON.stringify({ error: { code: 'BAD_REQUEST', message: UNSUPPORTED_VERSION_MESSAGE } });
        return void res.writeHead(400, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
      }
      const msg = decodeAppendRequest(body);
      const reply = encodeAppendReply({ status: ReplyStatus.Ok, epoch: msg.epoch, seq: msg.seq, lastId: msg.firstId + msg.entries.length - 1, incarnation: 7, following: true }, version);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': reply.length }).end(reply);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

function transport(): PeerTransport {
  const t = new PeerTransport({ timeoutMs: 2_000 });
  cleanups.push(() => t.close());
  return t;
}

const msg = (seq: number): AppendRequest => ({ log: 'l', epoch: 1, leader: 'r1', seq, firstId: seq, prevEpoch: -1, entryEpoch: 1, commitId: -1, entries: [Buffer.from('x')] });

describe('replication across releases', () => {
  it('sends a follower of the previous release the version it takes, after one refusal, and keeps to it', async () => {
    const old = await follower(2);
    const t = transport();
    const first = await t.sendAppend(old.url, msg(0));
    expect(first).toEqual({ status: ReplyStatus.Ok, epoch: 1, seq: 0, lastId: 0, incarnation: 7 }); // no `following`: version 2 cannot say it
    await t.sendAppend(old.url, msg(1));
    expect(old.seen).toEqual([NEWEST_WIRE_VERSION, 3, 2, 2]);
  });

  it('counts a peer older until it takes the newest version: objects with times wait for every peer of a log', async () => {
    const old = await follower(3);
    const current = await follower(NEWEST_WIRE_VERSION);
    const t = transport();
    expect(t.oldestVersionOf([old.url, current.url])).toBe(NEWEST_WIRE_VERSION); // nothing known yet
    await t.sendAppend(old.url, msg(0));
    await t.sendAppend(current.url, msg(0));
    expect(t.oldestVersionOf([old.url, current.url])).toBe(3);
    expect(t.oldestVersionOf([current.url])).toBe(NEWEST_WIRE_VERSION);
  });

  it('sends a follower of this release the newest version, whose reply carries the following flag', async () => {
    const current = await follower(NEWEST_WIRE_VERSION);
    const t = transport();
    expect((await t.sendAppend(current.url, msg(0))).following).toBe(true);
    expect(current.seen).toEqual([NEWEST_WIRE_VERSION]);
  });

  it('gives up, with the peer\'s answer, once even the oldest version is refused', async () => {
    const ancient = await follower(0);
    const t = transport();
    await expect(t.sendAppend(ancient.url, msg(0))).rejects.toThrow(/answered 400/);
    expect(ancient.seen).toEqual([4, 3, 2, 1]);
  });
});
