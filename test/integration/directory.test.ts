/**
 * The cluster directory against a real etcd, with a TCP proxy between the
 * directory and etcd to cut, refuse or stall its connection at the moment
 * that matters: retried leader-key releases and campaigns, watches etcd
 * cancels, and a lease lost locally while etcd still holds it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Etcd3, type Lease, type Namespace } from 'etcd3';
import { startEtcd, type EtcdServer } from '../../src/cli/etcd.js';
import { freePort } from '../../src/cli/processes.js';
import { ClusterDirectory } from '../../src/fencing/directory.js';
import { keys } from '../../src/fencing/keys.js';
import { andNoneChangedSince } from '../../src/fencing/log-transactions.js';
import { eventually } from '../support/cluster.js';
import { TcpProxy } from '../support/tcp-proxy.js';

let etcd: EtcdServer;
let dataDir: string;
let raw: Etcd3;
let clusterCount = 0;
/** How long a test keeps etcd unreachable: the fault being injected, not a wait for some state. */
const ETCD_OUTAGE_MS = 3000;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'tern-directory-'));
  etcd = await startEtcd({ dataDir, clientPort: await freePort(), peerPort: await freePort() });
  raw = new Etcd3({ hosts: etcd.endpoint });
});

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  raw?.close();
  await etcd?.stop();
  if (!process.env.TERN_KEEP_TEST_DIRS) rmSync(dataDir, { recursive: true, force: true });
});

/** A directory of a fresh cluster, connected to etcd through its own proxy. */
async function connectThroughProxy(leaseTtlSeconds: number, before?: (ns: Namespace) => Promise<void>): Promise<{ dir: ClusterDirectory; proxy: TcpProxy; ns: Namespace }> {
  const cluster = `dir${++clusterCount}`;
  const proxy = await TcpProxy.start(etcd.endpoint);
  cleanups.push(() => proxy.close());
  const ns = raw.namespace(keys.prefix(cluster));
  await before?.(ns);
  const dir = await ClusterDirectory.connect({
    endpoints: [proxy.url],
    cluster,
    self: { id: 'r1', clientUrl: 'http://127.0.0.1:1', peerUrl: 'http://127.0.0.1:2', incarnation: `inc-${cluster}` },
    leaseTtlSeconds,
  });
  cleanups.push(() => dir.close());
  return { dir, proxy, ns };
}

async function createLed(dir: ClusterDirectory, name: string): Promise<number> {
  expect(await dir.createLog(name, 1)).toEqual({ created: true });
  const epoch = await dir.claimLeadership(name, 0);
  expect(epoch).toBe(1);
  return epoch!;
}

describe('cluster directory under etcd faults', () => {
  it('retries a leader-key release that failed until etcd answers, instead of leaving the key until the lease ends', async () => {
    const { dir, proxy, ns } = await connectThroughProxy(60);
    const epoch = await createLed(dir, 'release');
    proxy.refuse();
    const released = dir.releaseLeadershipUntilDone('release', epoch);
    await new Promise((r) => setTimeout(r, ETCD_OUTAGE_MS));
    proxy.restore();
    await eventually(async () => expect(await ns.get(keys.leader('release')).string()).toBeNull(), 15_000);
    expect(await released).toBe(true);
    expect(dir.log('release')?.leader).toBeUndefined();
  });

  it('stops releasing once the leader key is provably not this leader of that epoch any more', async () => {
    const { dir, ns } = await connectThroughProxy(60);
    const epoch = await createLed(dir, 'moved');
    // Another replica took over: epoch 2, its own key.
    await ns.put(keys.epoch('moved')).value('2');
    await ns.put(keys.leader('moved')).value(JSON.stringify({ id: 'r2', epoch: 2, incarnation: 'other' }));
    expect(await dir.releaseLeadershipUntilDone('moved', epoch)).toBe(false);
    expect(JSON.parse((await ns.get(keys.leader('moved')).string())!)).toMatchObject({ id: 'r2', epoch: 2 });
  });

  it('campaigns again after a campaign failed with etcd, so a coordinator is always elected', async () => {
    // Another replica holds the coordinator key when r1 connects.
    let other!: Lease;
    const { dir, proxy, ns } = await connectThroughProxy(60, async (ns) => {
      other = ns.lease(60, { autoKeepAlive: true });
      cleanups.push(() => other.revoke());
      await other.put(keys.coordinator()).value('r9');
    });
    expect(dir.isCoordinator).toBe(false);
    // r1 campaigns as soon as it sees the key go: that request is cut, and etcd stays unreachable a moment.
    const tripped = proxy.refuseOnNextRequest();
    await other.revoke();
    await tripped;
    // Longer than the etcd3 client's own retries of that request take to give up.
    await new Promise((r) => setTimeout(r, ETCD_OUTAGE_MS));
    proxy.restore();
    await eventually(async () => expect(dir.isCoordinator).toBe(true), 20_000, 100);
    expect(await ns.get(keys.coordinator()).string()).toBe('r1');
  });

  it('survives a watch etcd cancels (its revision compacted away), reloads the view and keeps seeing changes', async () => {
    const { dir, proxy, ns } = await connectThroughProxy(60);
    const changed = new Set<string>();
    dir.on('log', (name) => changed.add(name));
    // Stall what etcd sends the directory until its watch falls behind, then compact past it:
    // etcd cancels the watch (compact_revision) while the stream itself stays up.
    proxy.pauseDownstream();
    const filler = 'x'.repeat(1024);
    for (let i = 0; i < 1500; i += 50) await Promise.all(Array.from({ length: 50 }, () => ns.put('filler').value(filler)));
    await ns.put(keys.log('during')).value(JSON.stringify({ name: 'during', replicas: ['r1'], createdAt: new Date().toISOString() }));
    const { header } = await ns.get('filler').exec();
    await raw.kv.compact({ revision: header.revision, physical: true });
    proxy.resumeDownstream();
    await eventually(async () => expect(dir.log('during')?.meta.replicas).toEqual(['r1']), 15_000);
    expect(changed.has('during')).toBe(true);
    // The new watch delivers what happens from now on.
    await ns.put(keys.log('after')).value(JSON.stringify({ name: 'after', replicas: ['r1'], createdAt: new Date().toISOString() }));
    await eventually(async () => expect(dir.log('after')).toBeDefined());
    await ns.delete().key(keys.log('during'));
    await eventually(async () => expect(dir.log('during')).toBeUndefined());
  });

  it('revokes a lease it lost locally (etcd still held it), so its keys go at once, and campaigns under the new one', async () => {
    const { dir, proxy, ns } = await connectThroughProxy(3);
    expect(dir.isCoordinator).toBe(true);
    await createLed(dir, 'held');
    // etcd keeps getting keep-alives but none is answered: the directory declares its lease lost
    // while etcd still holds it (with the member, leader and coordinator keys bound to it).
    proxy.pauseDownstream();
    await eventually(async () => expect(dir.leaseUp).toBe(false), 10_000);
    proxy.resumeDownstream();
    await eventually(async () => expect(dir.leaseUp).toBe(true), 10_000);
    // Well within the old lease's TTL: only a revoke can have removed its leader key already.
    expect(await ns.get(keys.leader('held')).string()).toBeNull();
    const member = (await ns.get(keys.member('r1')).exec()).kvs[0]!;
    await eventually(async () => {
      const coordinator = (await ns.get(keys.coordinator()).exec()).kvs[0];
      expect(coordinator?.lease).toBe(member.lease);
      expect(dir.isCoordinator).toBe(true);
    });
  });

  it('counts itself live for a new segment while its own member key is gone (a lapsed lease), others only by their member keys', async () => {
    const { dir, ns } = await connectThroughProxy(3);
    await eventually(async () => expect(dir.member('r1')?.incarnation).toBe(dir.self.incarnation));
    // What a pause past the lease leaves for a moment: the member key gone, the process alive.
    await ns.delete().key(keys.member('r1'));
    await eventually(async () => expect(dir.member('r1')).toBeUndefined());
    expect(dir.incarnationOf('r1')).toBe(dir.self.incarnation);
    expect(dir.incarnationOf('r2')).toBeUndefined();
  });

  it('does not take a coordinator key with its id but bound to another lease (one it lost, etcd still holds) for its own', async () => {
    // What a lease lost locally leaves behind when etcd could not revoke it: r1's coordinator key, on that old lease.
    let old!: Lease;
    const { dir, ns } = await connectThroughProxy(60, async (ns) => {
      old = ns.lease(60, { autoKeepAlive: true });
      cleanups.push(() => old.revoke());
      await old.put(keys.coordinator()).value('r1');
    });
    expect(dir.isCoordinator).toBe(false);
    // Once the old lease is gone (here at once rather than at its expiry), r1 campaigns under its current one.
    await old.revoke();
    const member = (await ns.get(keys.member('r1')).exec()).kvs[0]!;
    await eventually(async () => {
      expect(dir.isCoordinator).toBe(true);
      expect((await ns.get(keys.coordinator()).exec()).kvs[0]?.lease).toBe(member.lease);
    });
  });

  it('compares a whole prefix on its keys being unchanged since a revision: a key put there fails the compare, a key deleted or one beside it does not', async () => {
    const ns = raw.namespace(keys.prefix(`dir${++clusterCount}`));
    const prefix = keys.readers('held');
    await ns.put(keys.reader('held', 'gone')).value('{}');
    const since = BigInt((await ns.getAll().prefix(prefix).exec()).header.revision);
    const raise = () => andNoneChangedSince(ns.if(keys.log('held'), 'Create', '==', 0), ns, prefix, since).then(ns.put(keys.retention('held')).value('1')).commit();
    await ns.delete().key(keys.reader('held', 'gone'));
    await ns.put(keys.reader('held-other', 'beside')).value('{}');
    expect((await raise()).succeeded).toBe(true);
    await ns.put(keys.reader('held', 'new')).value('{}');
    expect((await raise()).succeeded).toBe(false);
  });

  it('deletes a log with its readers and raises its retention point no further than a holding reader etcd has, whatever the view says', async () => {
    const { dir, ns } = await connectThroughProxy(60);
    await createLed(dir, 'ro');
    expect(await dir.putReader('ro', 'a', { nextId: 4, holdsRetention: true, updatedAt: new Date().toISOString() })).toBe(true);
    expect(dir.readers('ro')).toMatchObject([{ name: 'a', nextId: 4, holdsRetention: true }]);
    // Written behind the directory's back: the raise reads the readers from etcd, not from its view.
    await ns.put(keys.reader('ro', 'b')).value(JSON.stringify({ nextId: 2, holdsRetention: true, updatedAt: '' }));
    const asked: string[][] = [];
    const point = await dir.truncateBefore('ro', (readers) => {
      asked.push(readers.map((r) => `${r.name}@${r.nextId}`));
      return Math.min(10, ...readers.filter((r) => r.holdsRetention).map((r) => r.nextId));
    });
    expect([point, asked[0]]).toEqual([2, ['a@4', 'b@2']]);
    expect(dir.retainedFrom('ro')).toBe(2);
    expect(await dir.deleteReader('ro', 'a')).toBe(true);
    expect(await dir.deleteReader('ro', 'a')).toBe(false);
    expect(await dir.putReader('nope', 'a', { nextId: 0, holdsRetention: false, updatedAt: '' })).toBe(false);
    expect(await dir.deleteLog('ro')).toBeDefined();
    expect(await ns.getAll().prefix(keys.readers('ro')).keys()).toEqual([]);
    await eventually(async () => expect(dir.readers('ro')).toEqual([]));
  });
});
