/** SimObjectStore's faults, History's recording into the jepsen-lite checker, and the fault planner's one-failed-replica rule. */
import { describe, expect, it } from 'vitest';
import { SimEtcd } from './etcd.js';
import { EtcdEndpoint } from './etcd-client.js';
import { FaultPlanner, type FaultTargets } from './faults.js';
import { History } from './history.js';
import { SimNetwork } from './network.js';
import { Rng } from './random.js';
import { Scheduler } from './scheduler.js';
import { SimObjectStore, StoreError } from './store.js';

describe('SimObjectStore', () => {
  it('stores a copy, and answers after a latency', () => {
    const sched = new Scheduler();
    const store = new SimObjectStore(sched, new Rng(1));
    const buf = Buffer.from('abc');
    const got: unknown[] = [];
    store.put('k', buf, (r) => got.push(r));
    buf.write('zzz');
    sched.runUntil(100);
    store.get('k', (r) => got.push(r?.toString()));
    store.get('none', (r) => got.push(r));
    sched.runUntil(200);
    expect(got).toEqual([true, 'abc', undefined]);
  });

  it('lost answer: the PUT is stored but reported failed; down: nothing is stored', () => {
    const sched = new Scheduler();
    const store = new SimObjectStore(sched, new Rng(1));
    const got: unknown[] = [];
    store.setAnswerLoss(1);
    store.put('a', Buffer.from('1'), (r) => got.push(r));
    sched.runUntil(100);
    expect(got[0]).toEqual(new StoreError('answer-lost'));
    expect(store.peek('a')?.toString()).toBe('1');
    store.heal();
    store.setDown(true);
    store.put('b', Buffer.from('2'), (r) => got.push([r, sched.now]));
    sched.runUntil(1000);
    expect(got[1]).toEqual([new StoreError('down'), 300]);
    expect(store.keys()).toEqual(['a']);
  });

  it('slow: extra latency per call', () => {
    const sched = new Scheduler();
    const store = new SimObjectStore(sched, new Rng(1));
    store.setSlow([500, 500]);
    let at = -1;
    store.put('a', Buffer.from('1'), () => (at = sched.now));
    sched.runUntil(2000);
    expect(at).toBeGreaterThanOrEqual(505);
  });
});

describe('History', () => {
  it('records ops on virtual time, rejects a reused value and a second completion, and feeds the checker', () => {
    const sched = new Scheduler();
    const h = new History(sched);
    const v0 = h.nextValue('c1');
    const a = h.invokeAppend('c1', 'l', 'r1', v0);
    sched.runUntil(10);
    a.ok(0);
    expect(() => a.fail()).toThrow(/twice/);
    expect(() => h.invokeAppend('c1', 'l', 'r1', v0)).toThrow(/unique/);
    const v1 = h.nextValue('c1');
    h.invokeAppend('c1', 'l', 'r1', v1); // still open: info
    const ops = h.ops();
    expect(ops[0]).toMatchObject({ value: v0, invokeMs: 0, completeMs: 10, outcome: 'ok', id: 0 });
    expect(ops[1]).toMatchObject({ value: v1, outcome: 'info' });
    expect(h.verdict({ l: { firstId: 0, replicas: { r1: [{ id: 0, value: v0, timeMs: 0 }] } } }).valid).toBe(true);
    // The acknowledged append missing from the final state is a lost write.
    const lost = h.verdict({ l: { firstId: 0, replicas: { r1: [] } } });
    expect(lost.valid).toBe(false);
    expect(lost.logs.l?.anomalies.map((x) => x.kind)).toContain('lost');
  });
});

describe('FaultPlanner', () => {
  function plan(seed: number) {
    const rng = new Rng(seed);
    const sched = new Scheduler();
    const replicas = ['r1', 'r2', 'r3'];
    const net = new SimNetwork(sched, rng, [...replicas, 'c1']);
    const ep = new EtcdEndpoint(new SimEtcd(sched), sched, rng);
    const store = new SimObjectStore(sched, rng);
    const calls: string[] = [];
    const failed = new Set<string>();
    const fail = (n: string) => {
      failed.add(n);
      calls.push(`${sched.now} fail ${n}`);
    };
    const recover = (n: string) => {
      failed.delete(n);
      calls.push(`${sched.now} recover ${n}`);
    };
    const targets: FaultTargets = {
      crash: fail,
      restart: recover,
      pause: fail,
      resume: recover,
      gracefulRestart: (n, done) => {
        fail(n);
        sched.at(rng.fork('graceful').between(10, 3000), 'graceful up', () => {
          recover(n);
          done();
        });
      },
      whenReady: (_n, done) => done(),
    };
    const planner = new FaultPlanner({ rng, sched, net, etcdFaults: ep.faults, store, replicas, targets });
    // At every probe: at most one replica failed in any way (process, etcd, or cut one way or both from all its peers).
    const cutOff = (r: string) => replicas.filter((p) => p !== r).every((p) => net.isCut(r, p) || net.isCut(p, r));
    const failedNow = () => replicas.filter((r) => failed.has(r) || ep.faults.get(r).unreachable || cutOff(r));
    let worst = 0;
    sched.every(5, 'probe', () => (worst = Math.max(worst, failedNow().length)));
    planner.start(30_000);
    sched.runUntil(40_000);
    return { planner, net, ep, store, failedNow, worst, calls, replicas };
  }

  it('runs many faults, never fails two replicas at once, and heals everything at the end of the phase', () => {
    const { planner, failedNow, worst, calls, net, ep, replicas } = plan(5);
    const kinds = new Set(planner.windows.map((w) => w.kind));
    expect(planner.windows.length).toBeGreaterThan(10);
    expect(kinds.size).toBeGreaterThan(5);
    expect(worst).toBe(1);
    expect(failedNow()).toEqual([]);
    expect(planner.windows.every((w) => w.endMs !== undefined && w.endMs <= 33_000)).toBe(true);
    expect(calls.filter((c) => c.includes('fail')).length).toBe(calls.filter((c) => c.includes('recover')).length);
    expect(replicas.every((r) => ep.faults.get(r).answerLoss === 0 && !net.isCut('c1', r))).toBe(true);
  });

  it('plans the same faults for the same seed', () => {
    expect(plan(9).planner.windows).toEqual(plan(9).planner.windows);
    expect(plan(9).planner.windows).not.toEqual(plan(10).planner.windows);
  });
});
