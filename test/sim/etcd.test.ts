/**
 * SimEtcd: the transactions of log-transactions.ts (compares on the epoch and
 * the exact leader key), leases taking their keys, and SimEtcdClient's
 * faults and late, ordered watches.
 */
import { describe, expect, it } from 'vitest';
import type { LeaderInfo, MemberInfo, SegmentMeta } from '../../src/fencing/keys.js';
import { SimEtcd, type WatchEvent } from './etcd.js';
import { EtcdEndpoint, EtcdUnavailable } from './etcd-client.js';
import { Rng } from './random.js';
import { Scheduler } from './scheduler.js';

const member = (id: string): MemberInfo => ({ id, clientUrl: `http://${id}`, peerUrl: `http://${id}:p`, incarnation: `${id}-1` });
const seg = (epoch: number, firstId: number, lastId: number | null = null): SegmentMeta => ({ epoch, firstId, lastId, replicas: { r1: 'r1-1', r2: 'r2-1' } });

/** etcd with r1..r3 registered under their own leases and one log created. */
function cluster() {
  const sched = new Scheduler();
  const etcd = new SimEtcd(sched);
  const leases: Record<string, string> = {};
  for (const id of ['r1', 'r2', 'r3']) {
    leases[id] = etcd.grantLease(1000);
    expect(etcd.register(member(id), leases[id])).toBe(true);
  }
  expect(etcd.createLog('l', 3)).toEqual({ created: true });
  return { sched, etcd, leases };
}

describe('SimEtcd transactions', () => {
  it('claims leadership only from the expected epoch and with the leader key absent', () => {
    const { etcd, leases } = cluster();
    expect(etcd.claimLeadership('l', 1, member('r1'), leases.r1!)).toBeUndefined();
    expect(etcd.claimLeadership('l', 0, member('r1'), leases.r1!)).toBe(1);
    expect(etcd.getLog('l')?.leader).toEqual({ id: 'r1', epoch: 1, incarnation: 'r1-1' });
    // r2 saw epoch 1 too, but r1 holds the key.
    expect(etcd.claimLeadership('l', 1, member('r2'), leases.r2!)).toBeUndefined();
    expect(etcd.getLog('l')?.epoch).toBe(1);
  });

  it('replaces a leader only when given its exact leader value (handoff)', () => {
    const { etcd, leases } = cluster();
    etcd.claimLeadership('l', 0, member('r1'), leases.r1!);
    const old: LeaderInfo = { id: 'r1', epoch: 1, incarnation: 'r1-1' };
    expect(etcd.claimLeadership('l', 1, member('r2'), leases.r2!, { ...old, incarnation: 'r1-0' })).toBeUndefined();
    expect(etcd.claimLeadership('l', 1, member('r2'), leases.r2!, old)).toBe(2);
    expect(etcd.getLog('l')?.leader?.id).toBe('r2');
    // With `replacing`, an absent key does not match.
    etcd.releaseLeadership('l', { id: 'r2', epoch: 2, incarnation: 'r2-1' });
    expect(etcd.claimLeadership('l', 2, member('r3'), leases.r3!, old)).toBeUndefined();
  });

  it("rejects a stale leader's segment and flush writes; the current leader's go through", () => {
    const { etcd, leases } = cluster();
    etcd.claimLeadership('l', 0, member('r1'), leases.r1!);
    const r1: LeaderInfo = { id: 'r1', epoch: 1, incarnation: 'r1-1' };
    expect(etcd.openSegment('l', r1, [], seg(1, 0))).toBe(true);
    // r1's lease ends, r2 takes over at epoch 2.
    etcd.revokeLease(leases.r1!);
    expect(etcd.claimLeadership('l', 1, member('r2'), leases.r2!)).toBe(2);
    const r2: LeaderInfo = { id: 'r2', epoch: 2, incarnation: 'r2-1' };
    expect(etcd.openSegment('l', r1, [], seg(1, 0, 99))).toBe(false);
    expect(etcd.recordFlush('l', r1, { key: 'o1', firstId: 0, lastId: 9, epoch: 1, bytes: 10 })).toBe(false);
    // Same id and epoch but another incarnation is not this leader either.
    expect(etcd.updateSegment('l', { ...r2, incarnation: 'r2-0' }, seg(2, 5))).toBe(false);
    expect(etcd.openSegment('l', r2, [seg(1, 0, 4)], seg(2, 5))).toBe(true);
    expect(etcd.getLog('l')?.segments).toEqual([seg(1, 0, 4), seg(2, 5)]);
    expect(etcd.recordFlush('l', r2, { key: 'o1', firstId: 0, lastId: 9, epoch: 2, bytes: 10 })).toBe(true);
    expect(etcd.flushedId('l')).toBe(9);
  });

  it('closeSegmentClean seals closed clean and deletes the leader key in one revision', () => {
    const { etcd, leases } = cluster();
    etcd.claimLeadership('l', 0, member('r1'), leases.r1!);
    const r1: LeaderInfo = { id: 'r1', epoch: 1, incarnation: 'r1-1' };
    etcd.openSegment('l', r1, [], seg(1, 0));
    const before = etcd.revision;
    expect(etcd.closeSegmentClean('l', r1, seg(1, 0, 7))).toBe(true);
    expect(etcd.revision).toBe(before + 1);
    const log = etcd.getLog('l')!;
    expect(log.leader).toBeUndefined();
    expect(log.segments[0]).toEqual({ ...seg(1, 0, 7), closedClean: true });
    expect(etcd.closeSegmentClean('l', r1, seg(1, 0, 7))).toBe(false);
  });

  it('lease expiry removes member, leader and coordinator keys at one revision; the epoch stays, even past a delete', () => {
    const { sched, etcd, leases } = cluster();
    etcd.claimLeadership('l', 0, member('r1'), leases.r1!);
    expect(etcd.campaign('r1', leases.r1!)).toBe('r1');
    expect(etcd.campaign('r2', leases.r2!)).toBe('r1');
    const keep = sched.every(300, 'keepalive', () => {
      etcd.keepAlive(leases.r2!);
      etcd.keepAlive(leases.r3!);
    });
    sched.runUntil(999);
    expect(etcd.members().map((m) => m.id)).toEqual(['r1', 'r2', 'r3']);
    const rev = etcd.revision;
    sched.runUntil(1000);
    expect(etcd.revision).toBe(rev + 1);
    expect(etcd.members().map((m) => m.id)).toEqual(['r2', 'r3']);
    expect(etcd.getLog('l')?.leader).toBeUndefined();
    expect(etcd.coordinator()).toBeUndefined();
    expect(etcd.keepAlive(leases.r1!)).toBe(false);
    expect(etcd.getLog('l')?.epoch).toBe(1);
    expect(etcd.campaign('r2', leases.r2!)).toBe('r2');
    expect(etcd.deleteLog('l')?.name).toBe('l');
    expect(etcd.createLog('l', 3)).toEqual({ created: true });
    expect(etcd.getLog('l')?.epoch).toBe(1);
    expect(etcd.claimLeadership('l', 0, member('r2'), leases.r2!)).toBeUndefined();
    keep.cancel();
  });

  it('markDraining keeps the member under its lease; createLog needs enough nodes', () => {
    const { etcd } = cluster();
    expect(etcd.markDraining('r2')).toBe(true);
    expect(etcd.members().find((m) => m.id === 'r2')?.draining).toBe(true);
    expect(etcd.createLog('m', 4).created).toBe(false);
    expect(etcd.createLog('l', 3)).toEqual({ created: false });
  });
});

/** An endpoint with r1 registered, for client tests. */
function endpoint() {
  const sched = new Scheduler();
  const etcd = new SimEtcd(sched);
  const ep = new EtcdEndpoint(etcd, sched, new Rng(3));
  return { sched, etcd, ep };
}

describe('SimEtcdClient', () => {
  it('answers after a latency; while unreachable nothing is applied and the call fails at its timeout', () => {
    const { sched, etcd, ep } = endpoint();
    const c = ep.connect('r1');
    const results: unknown[] = [];
    c.grantLease(1000, (r) => results.push(r));
    sched.runUntil(20);
    expect(results).toEqual(['lease-1']);
    ep.faults.setUnreachable('r1', true);
    c.register(member('r1'), 'lease-1', (r) => results.push([r, sched.now]));
    sched.runUntil(1000);
    expect(results[1]).toEqual([new EtcdUnavailable('unreachable'), 520]);
    expect(etcd.members()).toEqual([]);
  });

  it('answer lost: the transaction is applied, yet the client is told it failed', () => {
    const { sched, etcd, ep } = endpoint();
    const lease = etcd.grantLease(1000);
    ep.faults.setAnswerLoss('r1', 1);
    const c = ep.connect('r1');
    let result: unknown;
    c.register(member('r1'), lease, (r) => (result = r));
    sched.runUntil(600);
    expect(result).toBeInstanceOf(EtcdUnavailable);
    expect((result as EtcdUnavailable).reason).toBe('answer-lost');
    expect(etcd.members().map((m) => m.id)).toEqual(['r1']);
  });

  it('watch: every revision once, in order, late, held while unreachable and delivered in order after healing', () => {
    const { sched, etcd, ep } = endpoint();
    const c = ep.connect('r2');
    const seen: [number, number][] = [];
    c.watch(0, (ev: WatchEvent) => seen.push([ev.revision, sched.now]));
    const lease = etcd.grantLease(100_000);
    etcd.register(member('r1'), lease);
    etcd.campaign('r1', lease);
    sched.runUntil(200);
    expect(seen.map(([r]) => r)).toEqual([1, 2]);
    ep.faults.setUnreachable('r2', true);
    const from = sched.now;
    for (let i = 0; i < 20; i++) sched.at(i, 'write', () => etcd.markDraining('r1'));
    sched.runUntil(from + 500);
    expect(seen).toHaveLength(2);
    ep.faults.setUnreachable('r2', false);
    sched.runUntil(from + 2000);
    expect(seen.map(([r]) => r)).toEqual(Array.from({ length: 22 }, (_, i) => i + 1));
    expect(seen.slice(2).every(([, at]) => at >= from + 500)).toBe(true);
  });

  it('watch: events arrive late yet never reordered, and carry a copy of the state at their revision', () => {
    const { sched, etcd, ep } = endpoint();
    const c = ep.connect('r2');
    const seen: WatchEvent[] = [];
    const lags: number[] = [];
    c.watch(0, (ev) => seen.push(ev));
    const lease = etcd.grantLease(100_000);
    for (const id of ['r1', 'r2', 'r3']) etcd.register(member(id), lease);
    etcd.createLog('l', 3);
    for (let e = 0; e < 30; e++) {
      sched.at(e, 'claim', () => {
        const at = sched.now;
        const epoch = etcd.getLog('l')!.epoch;
        etcd.claimLeadership('l', epoch, member('r1'), lease);
        etcd.releaseLeadership('l', { id: 'r1', epoch: epoch + 1, incarnation: 'r1-1' });
        const rev = etcd.revision;
        c.watch(rev, () => lags.push(sched.now - at));
      });
    }
    sched.runUntil(5000);
    const revisions = seen.map((e) => e.revision);
    expect(revisions).toEqual([...revisions].sort((a, b) => a - b));
    expect(new Set(revisions).size).toBe(etcd.revision);
    expect(Math.max(...lags)).toBeGreaterThan(Math.min(...lags));
    const logEvents = seen.flatMap((e) => e.changes).filter((ch) => ch.kind === 'log');
    expect(logEvents.map((ch) => ch.kind === 'log' && ch.log?.epoch)).toContain(30);
    expect(logEvents.find((ch) => ch.kind === 'log' && ch.log?.epoch === 5 && ch.log.leader)).toBeDefined();
  });

  it('a closed client gets no more callbacks; a graceful close revokes its leases', () => {
    const { sched, etcd, ep } = endpoint();
    const c = ep.connect('r1');
    let lease = '';
    c.grantLease(100_000, (r) => (lease = r as string));
    sched.runUntil(20);
    c.register(member('r1'), lease, () => undefined);
    sched.runUntil(40);
    let calls = 0;
    c.watch(etcd.revision, () => calls++);
    c.markDraining('r1', () => calls++);
    c.close(true);
    sched.runUntil(1000);
    expect(calls).toBe(0);
    expect(etcd.leaseAlive(lease)).toBe(false);
    expect(etcd.members()).toEqual([]);
  });
});
