/**
 * Forged peer messages against a real cluster (etcd, three replica
 * processes): fences, takeovers and replication messages whose claim etcd
 * does not show, numbers past the formats' ranges, messages for logs that do
 * not exist. Each is refused with its documented error, and afterwards the
 * log still takes appends on its real leader and nothing forged is readable.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { PEER_APPEND_PATH, PEER_CONTENT_TYPE, peerPaths } from '../../src/peer/paths.js';
import { decodeAppendReply, encodeAppendRequest } from '../../src/peer/wire.js';
import { ReplyStatus, type AppendRequest } from '../../src/quorum/messages.js';
import { appendRaw, createLog, eventually, http, logStatus, readAll, startTestCluster } from '../support/cluster.js';

let cluster: LocalCluster;
let stop: () => Promise<void>;
let serial = 0;

beforeAll(async () => {
  ({ cluster, stop } = await startTestCluster());
});
afterAll(async () => {
  await stop?.();
});

const FORGED = 'forged';

/** A fresh log with one entry, and who leads it. */
async function freshLog(): Promise<{ log: string; leader: string; followers: string[]; epoch: number }> {
  const log = `forged-${++serial}`;
  const { leader, epoch } = await createLog(cluster.replicas[0]!.clientUrl, log);
  expect((await appendRaw(cluster.replica(leader).clientUrl, log, 'real-0')).status).toBe(200);
  return { log, leader, epoch, followers: cluster.replicas.map((r) => r.id).filter((id) => id !== leader) };
}

const postJson = (peerUrl: string, path: string, body: unknown) => http(`${peerUrl}${path}`, { method: 'POST', contentType: 'application/json', body: JSON.stringify(body) });

function postAppend(peerUrl: string, req: Partial<AppendRequest> & Pick<AppendRequest, 'log' | 'epoch' | 'leader' | 'firstId'>) {
  const full: AppendRequest = { seq: 1, prevEpoch: -1, entryEpoch: req.epoch, commitId: req.firstId, entries: [Buffer.from(FORGED)], ...req };
  return http(`${peerUrl}${PEER_APPEND_PATH}`, { method: 'POST', contentType: PEER_CONTENT_TYPE, body: Buffer.concat(encodeAppendRequest(full).chunks) });
}

/** The log takes appends on its real leader, at the epoch it had, and no replica serves anything forged. */
async function stillServes(log: string, leader: string, epoch: number): Promise<void> {
  const res = await appendRaw(cluster.replica(leader).clientUrl, log, `real-${++serial}`);
  expect(res.status, res.body.toString()).toBe(200);
  for (const r of cluster.replicas) {
    expect((await logStatus(r.clientUrl, log)).epoch).toBe(epoch);
    await eventually(async () => expect((await readAll(r.clientUrl, log)).map((e) => e.data.toString())).toContain(`real-${serial}`));
    expect((await readAll(r.clientUrl, log)).map((e) => e.data.toString())).not.toContain(FORGED);
  }
}

const errorCode = (res: { json(): any }) => res.json().error.code;

describe('forged peer messages are refused', () => {
  it('a fence from a replica that holds no leader key of that epoch, on every replica', async () => {
    const { log, leader, followers, epoch } = await freshLog();
    for (const r of cluster.replicas) {
      for (const body of [{ epoch: epoch + 1, leader: followers[0] }, { epoch, leader: followers[1] }, { epoch: epoch + 1000, leader: 'evil' }]) {
        const res = await postJson(r.peerUrl, peerPaths.fence(log), body);
        expect([res.status, errorCode(res)], `${r.id} ${JSON.stringify(body)}`).toEqual([403, 'PEER_REFUSED']);
      }
    }
    await stillServes(log, leader, epoch);
  });

  it('a fence and a replication message of an epoch older than the one etcd shows', async () => {
    const { log, leader, followers } = await freshLog();
    const handed = await http(`${cluster.replica(leader).clientUrl}/v1/logs/${log}/handoff`, { method: 'POST', contentType: 'application/json', body: JSON.stringify({ to: followers[0] }) });
    expect(handed.status, handed.body.toString()).toBe(200);
    const { epoch, committedId } = handed.json();
    for (const r of cluster.replicas.filter((x) => x.id !== leader)) {
      const fenced = await postJson(r.peerUrl, peerPaths.fence(log), { epoch: epoch - 1, leader });
      expect([fenced.status, errorCode(fenced), fenced.json().error.epoch]).toEqual([409, 'FENCED', epoch]);
      const stale = await postAppend(r.peerUrl, { log, epoch: epoch - 1, leader, firstId: committedId + 1 });
      expect(stale.status).toBe(200);
      expect(decodeAppendReply(stale.body)).toMatchObject({ status: ReplyStatus.Fenced, epoch });
    }
    await stillServes(log, followers[0]!, epoch);
  });

  it('epochs and ids past the formats (5000000000, 2^48) are 400 BAD_REQUEST, and the log keeps its epoch', async () => {
    const { log, leader, epoch } = await freshLog();
    const huge = 5_000_000_000;
    for (const r of cluster.replicas) {
      for (const [path, body] of [
        [peerPaths.fence(log), { epoch: huge, leader: 'evil' }],
        [peerPaths.fence(log), { epoch: -1, leader }],
        [peerPaths.takeover(log), { expectedEpoch: huge, from: leader }],
        [peerPaths.fetch(log), { fromId: 0, toId: 2 ** 48 }],
        [peerPaths.fetch(log), { fromId: -3, toId: 5 }],
      ] as const) {
        const res = await postJson(r.peerUrl, path, body);
        expect([res.status, errorCode(res)], `${r.id} ${path} ${JSON.stringify(body)}`).toEqual([400, 'BAD_REQUEST']);
      }
      const badId = await postAppend(r.peerUrl, { log, epoch, leader, firstId: -5 });
      expect([badId.status, errorCode(badId)]).toEqual([400, 'BAD_REQUEST']);
    }
    await stillServes(log, leader, epoch);
  });

  it('a replication message from a replica etcd does not show leading, of this epoch or a higher one', async () => {
    const { log, leader, followers, epoch } = await freshLog();
    const { committedId } = await logStatus(cluster.replica(leader).clientUrl, log);
    for (const r of cluster.replicas) {
      for (const claim of [{ epoch, leader: followers.find((f) => f !== r.id)! }, { epoch: epoch + 1, leader: 'evil' }, { epoch, leader: r.id }]) {
        const res = await postAppend(r.peerUrl, { log, ...claim, firstId: committedId + 1 });
        expect([res.status, errorCode(res)], `${r.id} ${JSON.stringify(claim)}`).toEqual([403, 'PEER_REFUSED']);
      }
    }
    await stillServes(log, leader, epoch);
  });

  it('a takeover from a replica that is neither the leader nor the coordinator, or an unsafe one starting a recovery', async () => {
    const { log, leader, followers, epoch } = await freshLog();
    // The coordinator may not be elected yet in a fresh cluster: a bystander is only known once one is.
    const coordinator = await eventually(async () => {
      const claims = await Promise.all(cluster.replicas.map(async (r) => ((await http(`${r.clientUrl}/metrics`)).body.toString().match(/^tern_coordinator(\{[^}]*\})? 1$/m) ? r.id : undefined)));
      const elected = claims.filter((id) => id !== undefined);
      if (elected.length !== 1) throw new Error(`coordinators: ${elected.join(', ') || 'none'}`);
      return elected[0]!;
    });
    const bystander = followers.find((id) => id !== coordinator);
    const target = cluster.replica(followers.find((id) => id !== bystander)!);
    const leaderKey = JSON.stringify({ id: leader, epoch, incarnation: 'made-up' });
    const forged: object[] = [
      { expectedEpoch: epoch, from: 'evil' },
      { expectedEpoch: epoch, replacing: leaderKey, from: leader },
      { expectedEpoch: epoch - 1, unsafe: true, from: leader },
      { expectedEpoch: epoch, unsafe: true },
    ];
    if (bystander) forged.push({ expectedEpoch: epoch, from: bystander });
    for (const body of forged) {
      const res = await postJson(target.peerUrl, peerPaths.takeover(log), body);
      expect([res.status, errorCode(res)], JSON.stringify(body)).toEqual([403, 'PEER_REFUSED']);
    }
    await stillServes(log, leader, epoch);
    expect((await logStatus(target.clientUrl, log)).leader).toBe(leader);
  });

  it('a message for a log that does not exist creates no state', async () => {
    const ghost = 'ghost-log';
    const leader = cluster.replicas[0]!.id;
    for (const r of cluster.replicas) {
      for (const [path, body] of [
        [peerPaths.fence(ghost), { epoch: 1, leader }],
        [peerPaths.fetch(ghost), { fromId: 0, toId: 10 }],
        [peerPaths.takeover(ghost), { expectedEpoch: 0, from: leader }],
      ] as const) {
        const res = await postJson(r.peerUrl, path, body);
        expect([res.status, errorCode(res)], `${r.id} ${path}`).toEqual([404, 'LOG_NOT_FOUND']);
      }
      const append = await postAppend(r.peerUrl, { log: ghost, epoch: 1, leader, firstId: 0 });
      expect([append.status, errorCode(append)]).toEqual([404, 'LOG_NOT_FOUND']);
      expect((await http(`${r.clientUrl}/v1/logs/${ghost}`)).status).toBe(404);
      expect((await http(`${r.clientUrl}/metrics`)).body.toString()).not.toContain(ghost);
    }
  });
});
