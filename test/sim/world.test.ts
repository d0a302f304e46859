/**
 * The simulator's foundations: the seeded streams, the event loop's order
 * and trace, and that a whole world (network, etcd, store, faults) replays
 * exactly from its seed.
 */
import { describe, expect, it } from 'vitest';
import { SimEtcd } from './etcd.js';
import { EtcdEndpoint } from './etcd-client.js';
import { FaultPlanner, type FaultTargets } from './faults.js';
import { SimNetwork } from './network.js';
import { Rng } from './random.js';
import { ROUTINE, Scheduler } from './scheduler.js';
import { SimObjectStore } from './store.js';

describe('Rng', () => {
  it('replays a seed, and forks do not depend on what the parent drew', () => {
    const a = new Rng(7);
    const b = new Rng(7);
    expect([a.next(), a.int(100), a.between(5, 9)]).toEqual([b.next(), b.int(100), b.between(5, 9)]);
    const fresh = new Rng(7).fork('net');
    const used = new Rng(7);
    for (let i = 0; i < 50; i++) used.next();
    const late = used.fork('net');
    expect([fresh.next(), fresh.next()]).toEqual([late.next(), late.next()]);
    // Another label, or the same label again, is another stream.
    const r = new Rng(7);
    const x = r.fork('net').next();
    expect(r.fork('net').next()).not.toBe(x);
    expect(new Rng(7).fork('etcd').next()).not.toBe(x);
    expect(new Rng(8).fork('net').next()).not.toBe(x);
  });

  it('keeps draws in range and shuffles without losing items', () => {
    const r = new Rng(1);
    for (let i = 0; i < 1000; i++) {
      const v = r.between(3, 5);
      expect(v).toBeGreaterThanOrEqual(3);
      expect(v).toBeLessThanOrEqual(5);
    }
    expect(r.chance(0)).toBe(false);
    expect(r.chance(1)).toBe(true);
    expect(r.shuffle([1, 2, 3, 4, 5]).sort()).toEqual([1, 2, 3, 4, 5]);
  });
});

describe('Scheduler', () => {
  it('runs by time, then by scheduling order, skips cancelled events, and repeats every period', () => {
    const s = new Scheduler();
    const ran: string[] = [];
    s.at(10, 'b', () => ran.push(`b@${s.now}`));
    s.at(5, 'a', () => ran.push(`a@${s.now}`));
    s.at(10, 'c', () => ran.push(`c@${s.now}`));
    s.at(7, 'x', () => ran.push('x')).cancel();
    const tick = s.every(4, 'tick', () => ran.push(`t@${s.now}`));
    s.runUntil(11);
    expect(ran).toEqual(['t@4', 'a@5', 't@8', 'b@10', 'c@10']);
    expect(s.now).toBe(11);
    tick.cancel();
    s.runUntil(100);
    expect(ran).toHaveLength(5);
    expect(s.trace().slice(-2)).toEqual(['10 ms: b', '10 ms: c']);
  });

  it('runWhile stops when the predicate turns false, or at the limit', () => {
    const s = new Scheduler();
    let n = 0;
    s.every(10, 'inc', () => n++);
    expect(s.runWhile(() => n < 3, 1000)).toBe(true);
    expect(s.now).toBe(30);
    expect(s.runWhile(() => true, 25)).toBe(false);
    expect(s.now).toBe(55);
    expect(n).toBe(5);
  });

  it('keeps only the last trace lines, leaving routine events out of the trace but not out of the fingerprint', () => {
    const s = new Scheduler(200);
    for (let i = 0; i < 300; i++) s.at(i, `e${i}`, () => undefined);
    s.at(400, `${ROUTINE}tick`, () => undefined);
    s.note('end');
    s.runUntil(1000);
    const t = s.trace();
    expect(t).toHaveLength(200);
    expect(t[t.length - 1]).toBe('299 ms: e299');
    expect(t[0]).toBe('100 ms: e100');
    const without = new Scheduler(200);
    for (let i = 0; i < 300; i++) without.at(i, `e${i}`, () => undefined);
    without.runUntil(1000);
    expect(without.fingerprint()).not.toBe(s.fingerprint());
  });
});

/** A small world under random traffic and faults, returning its trace and fingerprint. */
function runWorld(seed: number): { trace: string[]; fingerprint: string; revision: number } {
  const rng = new Rng(seed);
  const sched = new Scheduler();
  const replicas = ['r1', 'r2', 'r3'];
  const net = new SimNetwork(sched, rng, [...replicas, 'c1']);
  const etcd = new SimEtcd(sched);
  const endpoint = new EtcdEndpoint(etcd, sched, rng);
  const store = new SimObjectStore(sched, rng);
  const traffic = rng.fork('traffic');
  const targets: FaultTargets = {
    crash: (n) => net.setDown(n, true),
    restart: (n) => net.setDown(n, false),
    pause: (n) => net.setDown(n, true),
    resume: (n) => net.setDown(n, false),
    gracefulRestart: (n, done) => sched.at(100, `restart ${n}`, done),
    whenReady: (_n, done) => done(),
  };
  const planner = new FaultPlanner({ rng, sched, net, etcdFaults: endpoint.faults, store, replicas, targets });
  const clients = replicas.map((r) => endpoint.connect(r));
  for (const c of clients) c.grantLease(1000, () => undefined);
  sched.every(20, 'traffic', () => {
    const [from, to] = traffic.shuffle(replicas);
    net.call(from!, to!, 'ping', () => 'pong', 100, () => undefined);
    clients[traffic.int(3)]!.createLog(`log-${traffic.int(5)}`, 0, () => undefined);
    store.put(`k${traffic.int(10)}`, Buffer.from('x'), () => undefined);
  });
  planner.start(3000);
  sched.runUntil(4000);
  return { trace: sched.trace(), fingerprint: sched.fingerprint(), revision: etcd.revision };
}

describe('a simulated world', () => {
  it('replays exactly from its seed, and another seed runs differently', () => {
    const a = runWorld(42);
    const b = runWorld(42);
    expect(b.trace).toEqual(a.trace);
    expect(b.fingerprint).toBe(a.fingerprint);
    expect(a.revision).toBeGreaterThan(0);
    const c = runWorld(43);
    expect(c.fingerprint).not.toBe(a.fingerprint);
  });
});
