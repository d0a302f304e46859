/**
 * TLS end to end: a cluster started with a throwaway CA (three real replicas,
 * real etcd, s3rver). Clients reach every replica over HTTPS, forwarded
 * appends and commands cross the mutual-TLS peer links, leadership moves by
 * handoff and by failover; and what has no place there is refused: a client
 * that does not trust the CA, a peer connection without a client certificate
 * or with one from another CA (in the TLS handshake), a message whose body
 * names another sender than the certificate does.
 */
import { readFileSync } from 'node:fs';
import { Agent, request, type buildConnector } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalCa } from '../../src/cli/local-ca.js';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { PEER_APPEND_PATH, PEER_CONTENT_TYPE, PEER_HEALTH_PATH, peerPaths } from '../../src/peer/paths.js';
import { encodeAppendRequest } from '../../src/peer/wire.js';
import { appendRaw, createLog, eventually, http, readAll, startTestCluster } from '../support/cluster.js';

// A 2 s lease makes leader loss visible in about 2 s; the defaults are 5 s.
const FAST = ['--lease-ttl-seconds', '2', '--ack-timeout-ms', '1500', '--retransmit-ms', '200', '--heartbeat-ms', '100', '--backoff-ms', '100'];

let c: LocalCluster;
let stop: () => Promise<void>;
const agents: Agent[] = [];

beforeAll(async () => {
  ({ cluster: c, stop } = await startTestCluster(FAST, { tls: true }));
}, 60_000);
afterAll(async () => {
  await Promise.all(agents.map((a) => a.close()));
  await stop?.();
});

function agent(connect: buildConnector.BuildOptions): Agent {
  const a = new Agent({ connect });
  agents.push(a);
  return a;
}

/** An agent that presents replica `id`'s certificate, as that replica's own peer connections do. */
function asReplica(id: string): Agent {
  const tls = c.tls!;
  return agent({ ca: tls.caPem, cert: readFileSync(tls.cert(id)), key: readFileSync(tls.key(id)) });
}

const leaderOf = async (log: string, via = 0): Promise<string> => (await http(`${c.replicas[via]!.clientUrl}/v1/logs/${log}`)).json().leader;

describe('a TLS cluster', () => {
  it('serves HTTPS, appends through every replica (forwarded over mutual TLS) and reads from every replica', async () => {
    for (const r of c.replicas) {
      expect(r.clientUrl).toMatch(/^https:/);
      expect(r.peerUrl).toMatch(/^https:/);
    }
    expect(c.describe().tls).toEqual({ ca: c.tls!.ca });
    await createLog(c.replicas[0]!.clientUrl, 'tls');
    for (const [i, r] of c.replicas.entries()) expect((await appendRaw(r.clientUrl, 'tls', `via-${i}`)).status).toBe(200);
    for (const r of c.replicas) {
      await eventually(async () => expect((await readAll(r.clientUrl, 'tls')).map((e) => e.data.toString())).toEqual(['via-0', 'via-1', 'via-2']));
    }
  });

  it('hands a log off, then fails it over after a SIGKILL of its leader, without losing an acknowledged append', async () => {
    const first = await leaderOf('tls');
    const to = c.replicas.find((r) => r.id !== first)!.id;
    // Sent to the replica that is neither: forwarded to the leader, which asks `to` to take over, all over TLS.
    const via = c.replicas.find((r) => r.id !== first && r.id !== to)!;
    const moved = await http(`${via.clientUrl}/v1/logs/tls/handoff`, { method: 'POST', contentType: 'application/json', body: JSON.stringify({ to }) });
    expect(moved.status, moved.body.toString()).toBe(200);
    expect(await leaderOf('tls')).toBe(to);
    expect((await appendRaw(via.clientUrl, 'tls', 'after-handoff')).status).toBe(200);

    await c.signal(to, 'SIGKILL');
    const survivor = c.replicas.findIndex((r) => r.id !== to);
    await eventually(async () => expect(await leaderOf('tls', survivor)).not.toBe(to), 15_000);
    await eventually(async () => expect((await appendRaw(c.replicas[survivor]!.clientUrl, 'tls', 'after-failover', 2000)).status).toBe(200), 15_000);
    await c.restart(to, 'ready');
    const expected = ['via-0', 'via-1', 'via-2', 'after-handoff', 'after-failover'];
    for (const r of c.replicas) await eventually(async () => expect((await readAll(r.clientUrl, 'tls')).map((e) => e.data.toString())).toEqual(expected));
  }, 60_000);

  it('refuses a client that does not trust the CA', async () => {
    await expect(request(`${c.replicas[0]!.clientUrl}/healthz`, { dispatcher: agent({}) })).rejects.toThrow(/self[- ]signed|unable to (verify|get)/i);
  });

  it('refuses peer connections in the TLS handshake without a client certificate, or with one from another CA', async () => {
    const peer = c.replicas[1]!.peerUrl;
    // The client listener takes connections without one: only the peer listener requires it.
    expect((await request(`${c.replicas[1]!.clientUrl}/healthz`, { dispatcher: agent({ ca: c.tls!.caPem }) })).statusCode).toBe(200);
    await expect(request(`${peer}${PEER_HEALTH_PATH}`, { dispatcher: agent({ ca: c.tls!.caPem }) }).then((r) => r.body.text())).rejects.toThrow(/certificate required|alert|socket|other side closed/i);
    const stranger = await LocalCa.create('another CA');
    const forged = await stranger.issue('r1');
    await expect(request(`${peer}${PEER_HEALTH_PATH}`, { dispatcher: agent({ ca: c.tls!.caPem, cert: forged.cert, key: forged.key }) }).then((r) => r.body.text())).rejects.toThrow(/unknown ca|alert|socket|other side closed/i);
    // The replica's own certificate is let in.
    const own = await request(`${peer}${PEER_HEALTH_PATH}`, { dispatcher: asReplica('r1') });
    expect((await own.body.json()) as { id: string }).toMatchObject({ id: 'r2' });
  });

  it('refuses replication and fence messages whose body names another sender than the certificate', async () => {
    const r2 = c.replica('r2');
    const fence = await request(`${r2.peerUrl}${peerPaths.fence('nolog')}`, {
      dispatcher: asReplica('r1'),
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ epoch: 99, leader: 'r3' }),
    });
    expect(fence.statusCode).toBe(403);
    expect(((await fence.body.json()) as { error: { code: string } }).error.code).toBe('PEER_REFUSED');
    const { chunks } = encodeAppendRequest({ log: 'nolog', epoch: 99, leader: 'r3', seq: 1, firstId: 0, prevEpoch: -1, entryEpoch: 99, commitId: -1, entries: [Buffer.from('forged')] });
    const append = await request(`${r2.peerUrl}${PEER_APPEND_PATH}`, { dispatcher: asReplica('r1'), method: 'POST', headers: { 'content-type': PEER_CONTENT_TYPE }, body: Buffer.concat(chunks) });
    expect(append.statusCode).toBe(403);
    expect(await append.body.text()).toContain('certificate says r1');
  });
});
