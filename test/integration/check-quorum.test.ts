/**
 * Check-quorum with real processes: a leader cut off from both peers (its
 * peer links stall through the fault proxies) but not from etcd keeps its
 * leader key alive, so without check-quorum its log stays unavailable for as
 * long as the partition lasts. With it, the leader steps down after the ack
 * timeout and gives up the key, and the two replicas that still reach each
 * other take the log.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { peerLink, startProxiedCluster, type ProxiedCluster } from '../jepsen-lite/cluster.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { appendRaw, createLog, eventually, http, readAll, replicaLogLines, startTestCluster } from '../support/cluster.js';

const ACK_TIMEOUT_MS = 1000;
const FAST = ['--ack-timeout-ms', String(ACK_TIMEOUT_MS), '--retransmit-ms', '200', '--heartbeat-ms', '100', '--backoff-ms', '100'];

let running: { stop(): Promise<void> } | undefined;
afterEach(async () => {
  await running?.stop();
  running = undefined;
});

describe('check-quorum', () => {
  it('a leader cut off from its peers but not from etcd gives up its leader key, and the others take appends', async () => {
    const pc: ProxiedCluster = (running = await startProxiedCluster({ replicaArgs: FAST }));
    const c = pc.cluster;
    const { leader: cut } = await createLog(c.replicas[0]!.clientUrl, 'cq');
    expect((await appendRaw(c.replica(cut).clientUrl, 'cq', 'before')).status).toBe(200);
    const others = c.replicas.filter((r) => r.id !== cut);
    for (const o of others) {
      pc.links.peer.get(peerLink(cut, o.id))!.setFault({ kind: 'partition' });
      pc.links.peer.get(peerLink(o.id, cut))!.setFault({ kind: 'partition' });
    }
    const cutAt = Date.now();
    let next: string | undefined;
    try {
      // The etcd lease (5 s) never lapses here: only check-quorum frees the key.
      next = await eventually(async () => {
        const status = (await http(`${others[0]!.clientUrl}/v1/logs/cq`)).json();
        expect(status.leader).toBeTruthy();
        expect(status.leader).not.toBe(cut);
        const res = await appendRaw(c.replica(status.leader).clientUrl, 'cq', 'after', 2000);
        expect(res.status, res.body.toString()).toBe(200);
        return status.leader as string;
      }, 15_000, 100);
    } catch (err) {
      console.log(replicaLogLines(c, 'cq'));
      throw err;
    }
    if (process.env.SHOW) console.log(replicaLogLines(c, 'cq'));
    console.log(`leader ${cut} cut off -> ${next} acked an append after ${Date.now() - cutAt} ms`);
    // The cut-off replica no longer calls itself the leader, while still cut off.
    expect((await http(`${c.replica(cut).clientUrl}/v1/logs/cq`)).json().leader).not.toBe(cut);
    // Its appends fail: forwarded over a stalled link, or refused (no timeout is an acknowledgement).
    const refused = await appendRaw(c.replica(cut).clientUrl, 'cq', 'refused', 2000).catch(() => undefined);
    expect(refused?.status).not.toBe(200);

    for (const proxy of pc.links.peer.values()) proxy.heal();
    for (const r of c.replicas) {
      await eventually(async () => expect((await readAll(r.clientUrl, 'cq')).map((e) => e.data.toString())).toEqual(['before', 'after']), 15_000);
    }
  });

  it('a leader whose followers were both killed keeps its key (no one else could lead) and refuses with NO_QUORUM', async () => {
    const started = await startTestCluster(FAST);
    running = started;
    const c = started.cluster;
    const { leader } = await createLog(c.replicas[0]!.clientUrl, 'alone');
    expect((await appendRaw(c.replica(leader).clientUrl, 'alone', 'before')).status).toBe(200);
    for (const r of c.replicas) if (r.id !== leader) await c.signal(r.id, 'SIGKILL');
    // Refused connections say the followers are dead: stepping down would hand the log to nobody.
    // Nothing to wait for here but time: check-quorum would have acted after one ack timeout.
    await sleep(3 * ACK_TIMEOUT_MS);
    const res = await appendRaw(c.replica(leader).clientUrl, 'alone', 'refused');
    expect(res.status).toBe(503);
    expect(res.json().error.code).toBe('NO_QUORUM');
    expect((await http(`${c.replica(leader).clientUrl}/v1/logs/alone`)).json().leader).toBe(leader);
  });
});
