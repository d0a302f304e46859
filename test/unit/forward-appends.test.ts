/**
 * Forwarded appends, both sides over a real loopback HTTP exchange: the
 * follower's AppendForwarder against a plain node:http server that answers
 * with answerForwardedAppends over a scripted replica (no cluster: the
 * replica's append is the part under our control here).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { TernError } from '../../src/errors.js';
import { decodeFrames, encodeFrames } from '../../src/frames.js';
import { answerForwardedAppends } from '../../src/http/forwarded-appends.js';
import { AppendForwarder } from '../../src/peer/append-forwarder.js';
import { decodeForwardedAnswers, encodeForwardedAnswers, forwardedAppendsType, heldAnswersFor } from '../../src/peer/forwarded-appends.js';
import { FORWARDED_APPENDS_PATH } from '../../src/peer/paths.js';
import type { ReplicaApi } from '../../src/replica/api.js';

interface Received {
  appends: { log: string; entries: string[] }[];
}

/** The leader's entry limit in these tests. */
const MAX_ENTRY_BYTES = 100;
const LIMITS = { maxEntryBytes: MAX_ENTRY_BYTES, maxRequestEntries: 100 };

/** A replica whose append gives ids in call order, refuses log "refused", and holds answers while `hold` is set. */
function scriptedReplica(received: Received, gate: { hold?: Promise<void> }): ReplicaApi {
  let nextId = 0;
  const counted: string[] = [];
  return {
    metrics: { appended: (log: string, outcome: string) => counted.push(`${log}:${outcome}`), etcdFailed: () => {} },
    async append(log: string, { entries }: { entries: Buffer[] }, heldBy?: string) {
      received.appends.push({ log, entries: entries.map((e) => e.toString()) });
      if (log === 'refused') throw new TernError('NO_QUORUM', 'no quorum', { maybeApplied: false });
      const firstId = nextId;
      nextId += entries.length;
      const lastId = nextId - 1;
      // Log "kept-up" has its forwarding follower keep up: answered held, at once.
      if (log === 'kept-up' && heldBy === 'f1') return { firstId, lastId, epoch: 7, held: true };
      await gate.hold;
      return { firstId, lastId, epoch: 7 };
    },
  } as unknown as ReplicaApi;
}

let server: Server | undefined;
afterEach(async () => {
  await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
  server = undefined;
});

async function leaderServer(replica: ReplicaApi, requests: number[]): Promise<string> {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url !== FORWARDED_APPENDS_PATH) return void res.writeHead(404).end();
      requests.push(1);
      // Framed by Content-Length, as the peer listener frames every answer (the forwarder's PeerLink needs it).
      const send = (status: number, body: Buffer | string) => res.writeHead(status, { 'content-length': Buffer.byteLength(body) }).end(body);
      answerForwardedAppends(replica, LIMITS, Buffer.concat(chunks), heldAnswersFor(req.headers['content-type'])).then(
        (answer) => send(200, answer),
        (err: TernError) => send(err.status, JSON.stringify(err.toBody())),
      );
    });
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server!.address() as AddressInfo).port}`;
}

/** A leader that holds every append until `open()` is called, then answers them all. */
async function heldLeader(): Promise<{ received: Received; requests: number[]; url: string; open(): void }> {
  const received: Received = { appends: [] };
  const requests: number[] = [];
  let release!: () => void;
  const gate: { hold?: Promise<void> } = { hold: new Promise<void>((r) => (release = r)) };
  const url = await leaderServer(scriptedReplica(received, gate), requests);
  const open = () => {
    gate.hold = undefined;
    release();
  };
  return { received, requests, url, open };
}

const single = (s: string) => ({ entries: [Buffer.from(s)], single: true });

describe('forwarded appends', () => {
  it('reads an answer only with an HTTP status: a short frame or another number throws, never relayed', () => {
    const answers = [{ status: 200, json: '{"id":1}' }, { status: 503, json: '{}' }];
    expect(decodeForwardedAnswers(encodeForwardedAnswers(answers))).toEqual(answers);
    for (const status of [0, 99, 600, 65535]) expect(() => decodeForwardedAnswers(encodeForwardedAnswers([{ status, json: '{}' }]))).toThrow(/HTTP status/);
    expect(() => decodeForwardedAnswers(Buffer.concat(encodeFrames([Buffer.from([1])])))).toThrow(/HTTP status/);
  });

  it('carries a held answer\'s epoch and last id, and relays it as a 200', () => {
    const answers = [{ status: 200, json: '{"id":5,"epoch":3}', held: { epoch: 3, lastId: 2 ** 40 } }, { status: 200, json: '{"id":6}' }];
    expect(decodeForwardedAnswers(encodeForwardedAnswers(answers))).toEqual(answers);
  });

  it('asks held answers for the replica its content type names, and only then', () => {
    expect(heldAnswersFor(forwardedAppendsType('r-2'))).toBe('r-2');
    expect(heldAnswersFor('application/vnd.tern.forwarded-appends; held=r2; x=1')).toBe('r2');
    expect(heldAnswersFor('application/vnd.tern.forwarded-appends')).toBeUndefined();
    expect(heldAnswersFor('application/vnd.tern.forwarded-appends; held=')).toBeUndefined();
    expect(heldAnswersFor(undefined)).toBeUndefined();
  });

  it('answers a follower that keeps up with held ids at once, the others at commit', async () => {
    const received: Received = { appends: [] };
    let release!: () => void;
    const gate: { hold?: Promise<void> } = { hold: new Promise<void>((r) => (release = r)) };
    const url = await leaderServer(scriptedReplica(received, gate), []);
    const fwd = new AppendForwarder('f1', { maxAppends: 1000, maxBytes: 1 << 20, maxInFlight: 2 }, 5000);
    try {
      const answer = await fwd.forward(url, 'kept-up', single('x'));
      expect(answer).toEqual({ status: 200, json: JSON.stringify({ id: 0, epoch: 7 }), held: { epoch: 7, lastId: 0 } });
      // Until the gate opens (its commit), an append answered at commit stays unanswered.
      const atCommit = fwd.forward(url, 'a', single('y')).then((a) => a.held ?? 'answered at commit');
      expect(await Promise.race([atCommit, new Promise((r) => setTimeout(() => r('waiting'), 200))])).toBe('waiting');
      release();
      expect(await atCommit).toBe('answered at commit');
    } finally {
      release();
      await fwd.close();
    }
  });

  it('sends one turn of appends as one batch and answers each on its own, in order', async () => {
    const received: Received = { appends: [] };
    const requests: number[] = [];
    const url = await leaderServer(scriptedReplica(received, {}), requests);
    const fwd = new AppendForwarder('f1', { maxAppends: 1000, maxBytes: 1 << 20, maxInFlight: 1 }, 5000);
    try {
      const answers = await Promise.all([
        fwd.forward(url, 'a', single('x')),
        fwd.forward(url, 'a', { entries: [Buffer.from('b0'), Buffer.alloc(0), Buffer.from('b2')], single: false }),
        fwd.forward(url, 'refused', single('y')),
        fwd.forward(url, 'a', single('z'.repeat(101))), // over the leader's entry limit
        fwd.forward(url, 'a', single('w')),
      ]);
      expect(requests).toHaveLength(1);
      expect(answers.map((a) => [a.status, JSON.parse(a.json)])).toEqual([
        [200, { id: 0, epoch: 7 }],
        [200, { firstId: 1, lastId: 3, epoch: 7 }],
        [503, { error: { code: 'NO_QUORUM', message: 'no quorum', maybeApplied: false } }],
        [413, { error: { code: 'TOO_LARGE', message: expect.stringContaining('100-byte entry limit') } }],
        [200, { id: 4, epoch: 7 }],
      ]);
      // Proposed in the order they were forwarded; the oversized one never reached the replica.
      expect(received.appends).toEqual([
        { log: 'a', entries: ['x'] },
        { log: 'a', entries: ['b0', '', 'b2'] },
        { log: 'refused', entries: ['y'] },
        { log: 'a', entries: ['w'] },
      ]);
    } finally {
      await fwd.close();
    }
  });

  it('gathers appends while a batch is in flight and sends them together once it is answered', async () => {
    const { received, requests, url, open } = await heldLeader();
    const fwd = new AppendForwarder('f1', { maxAppends: 3, maxBytes: 1 << 20, maxInFlight: 1 }, 5000);
    try {
      const first = fwd.forward(url, 'a', single('first'));
      await waitFor(() => received.appends.length === 1);
      // The first batch is held at the leader: these gather, and a full batch (3) goes anyway.
      const later = ['l0', 'l1', 'l2', 'l3', 'l4'].map((s) => fwd.forward(url, 'a', single(s)));
      await waitFor(() => received.appends.length === 4);
      expect(requests).toHaveLength(2);
      open();
      const answers = await Promise.all([first, ...later]);
      expect(requests).toHaveLength(3); // l3 and l4 went together after the answers came
      expect(answers.map((a) => JSON.parse(a.json).id)).toEqual([0, 1, 2, 3, 4, 5]);
    } finally {
      await fwd.close();
    }
  });

  it('pipelines up to maxInFlight batches to a leader, one per turn, then gathers until one is answered', async () => {
    const { received, requests, url, open } = await heldLeader();
    const fwd = new AppendForwarder('f1', { maxAppends: 100, maxBytes: 1 << 20, maxInFlight: 2 }, 5000);
    try {
      const first = fwd.forward(url, 'a', single('t0'));
      await waitFor(() => received.appends.length === 1);
      // One batch is held at the leader: the next turn's append still goes, as a second batch in flight.
      const second = fwd.forward(url, 'a', single('t1'));
      await waitFor(() => received.appends.length === 2);
      expect(requests).toHaveLength(2);
      // Two in flight: these gather and go together once one is answered.
      const later = ['t2', 't3'].map((s) => fwd.forward(url, 'a', single(s)));
      await new Promise((r) => setTimeout(r, 50));
      expect(requests).toHaveLength(2);
      open();
      const answers = await Promise.all([first, second, ...later]);
      expect(requests).toHaveLength(3);
      expect(answers.map((a) => JSON.parse(a.json).id)).toEqual([0, 1, 2, 3]);
    } finally {
      await fwd.close();
    }
  });

  it('fails the appends gathered behind a batch the leader never answered, unsent, so their clients can retry elsewhere', async () => {
    // A leader that takes the request and never answers (a stalled or cut-off peer).
    const requests: number[] = [];
    server = createServer(() => void requests.push(1));
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server!.address() as AddressInfo).port}`;
    const fwd = new AppendForwarder('f1', { maxAppends: 100, maxBytes: 1 << 20, maxInFlight: 1 }, 300);
    try {
      const first = fwd.forward(url, 'a', single('first')).catch((e: TernError) => e);
      await waitFor(() => requests.length === 1);
      const behind = await Promise.all(['b0', 'b1'].map((d) => fwd.forward(url, 'a', single(d)).catch((e: TernError) => e)));
      expect((await first) as TernError).toMatchObject({ code: 'NOT_READY', details: { maybeApplied: true } });
      for (const err of behind) expect(err).toMatchObject({ code: 'NOT_READY', details: { maybeApplied: false } });
      expect(requests).toHaveLength(1);
    } finally {
      server.closeAllConnections();
      await fwd.close();
    }
  });

  it('fails every append of a batch the leader cannot be reached for, saying it was not applied', async () => {
    const fwd = new AppendForwarder('f1', { maxAppends: 10, maxBytes: 1 << 20, maxInFlight: 1 }, 2000);
    try {
      const results = await Promise.allSettled([fwd.forward('http://127.0.0.1:1', 'a', single('x')), fwd.forward('http://127.0.0.1:1', 'a', single('y'))]);
      for (const r of results) {
        expect(r.status).toBe('rejected');
        const err = (r as PromiseRejectedResult).reason as TernError;
        expect([err.code, err.details.maybeApplied]).toEqual(['NOT_READY', false]);
      }
    } finally {
      await fwd.close();
    }
  });

  it('refuses a batch it cannot read, and a bad item alone without failing the others', async () => {
    const received: Received = { appends: [] };
    const replica = scriptedReplica(received, {});
    await expect(answerForwardedAppends(replica, LIMITS, Buffer.from([0, 0, 0, 9, 1]), undefined)).rejects.toMatchObject({ code: 'BAD_REQUEST' });
    const item = (kind: number, log: string, entries: Buffer[]) => Buffer.concat([Buffer.from([kind, log.length]), Buffer.from(log, 'latin1'), ...encodeFrames(entries)]);
    const body = Buffer.concat(encodeFrames([item(1, 'bad name!', [Buffer.from('x')]), item(8, 'a', [Buffer.from('x')]), item(1, 'a', []), item(0, 'a', [Buffer.from('ok')])]));
    const answers = decodeFrames(await answerForwardedAppends(replica, LIMITS, body, undefined)).map((a) => [a.readUInt16BE(0), JSON.parse(a.toString('utf8', 2))]);
    expect(answers).toEqual([
      [400, { error: { code: 'BAD_REQUEST', message: expect.stringContaining('bad log name') } }],
      [400, { error: { code: 'BAD_REQUEST', message: expect.stringContaining('unknown kind 8') } }],
      [400, { error: { code: 'BAD_REQUEST', message: expect.stringContaining('wrong number of entries') } }],
      [200, { firstId: 0, lastId: 0, epoch: 7 }],
    ]);
    expect(received.appends).toEqual([{ log: 'a', entries: ['ok'] }]);
  });
});

async function waitFor(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
