/** SimNetwork: drops, duplicates, cuts (both ways and one way), and call's exactly-once answer, refused vs timeout. */
import { describe, expect, it } from 'vitest';
import { SimNetwork, type CallFailure } from './network.js';
import { Rng } from './random.js';
import { Scheduler } from './scheduler.js';

function world(seed = 1) {
  const sched = new Scheduler();
  const net = new SimNetwork(sched, new Rng(seed), ['a', 'b', 'c']);
  return { sched, net };
}

/** Sends `n` messages a->b and counts deliveries. */
function deliveries(net: SimNetwork, sched: Scheduler, n: number, from = 'a', to = 'b'): number {
  let got = 0;
  for (let i = 0; i < n; i++) net.send(from, to, 'm', () => got++);
  sched.runUntil(sched.now + 1000);
  return got;
}

describe('SimNetwork', () => {
  it('delivers every message once on a healthy link, within the delay range, reordered by random delays', () => {
    const { sched, net } = world();
    const order: number[] = [];
    for (let i = 0; i < 50; i++) net.send('a', 'b', `m${i}`, () => order.push(i));
    sched.runUntil(5);
    expect(order).toHaveLength(50);
    expect(order).not.toEqual([...order].sort((x, y) => x - y));
  });

  it('drops and duplicates per direction only', () => {
    const { sched, net } = world();
    net.flaky('a', 'b', { drop: 0.5 });
    const dropped = deliveries(net, sched, 1000);
    expect(dropped).toBeGreaterThan(400);
    expect(dropped).toBeLessThan(600);
    expect(deliveries(net, sched, 100, 'b', 'a')).toBe(100);
    net.flaky('a', 'b', { dup: 1 });
    expect(deliveries(net, sched, 100)).toBe(200);
    net.steady('a', 'b');
    expect(deliveries(net, sched, 100)).toBe(100);
  });

  it('partitions both ways, cuts one way, isolates, and heals', () => {
    const { sched, net } = world();
    net.partition(['a'], ['b', 'c']);
    expect(deliveries(net, sched, 10, 'a', 'b') + deliveries(net, sched, 10, 'c', 'a')).toBe(0);
    expect(deliveries(net, sched, 10, 'b', 'c')).toBe(10);
    net.heal();
    net.cutOneWay('a', 'b');
    expect(deliveries(net, sched, 10, 'a', 'b')).toBe(0);
    expect(deliveries(net, sched, 10, 'b', 'a')).toBe(10);
    net.uncutOneWay('a', 'b');
    net.isolate('c');
    expect(deliveries(net, sched, 10, 'c', 'a') + deliveries(net, sched, 10, 'b', 'c')).toBe(0);
    expect(deliveries(net, sched, 10, 'a', 'b')).toBe(10);
    net.heal();
    expect(deliveries(net, sched, 10, 'b', 'c')).toBe(10);
  });

  it('loses a message on the wire when the link is cut before it arrives', () => {
    const { sched, net } = world();
    let got = 0;
    net.send('a', 'b', 'm', () => got++);
    net.cutOneWay('a', 'b');
    sched.runUntil(100);
    expect(got).toBe(0);
  });

  it('call: serve runs at each request copy, done runs exactly once with the first answer', () => {
    const { sched, net } = world();
    net.flaky('a', 'b', { dup: 1 });
    net.flaky('b', 'a', { dup: 1 });
    let served = 0;
    const answers: (string | undefined)[] = [];
    net.call('a', 'b', 'req', () => `ans${++served}`, 100, (res) => answers.push(res));
    sched.runUntil(1000);
    expect(served).toBe(2);
    expect(answers).toHaveLength(1);
    expect(answers[0]).toMatch(/^ans[12]$/);
  });

  it('call: a dropped reply times out once; the request still acted on the receiver', () => {
    const { sched, net } = world();
    net.cutOneWay('b', 'a');
    let served = 0;
    const done: [unknown, CallFailure | undefined, number][] = [];
    net.call('a', 'b', 'req', () => ++served, 100, (res, failure) => done.push([res, failure, sched.now]));
    sched.runUntil(1000);
    expect(served).toBe(1);
    expect(done).toEqual([[undefined, 'timeout', 100]]);
  });

  it('call: a down node refuses quickly, a cut link to it stays silent until the timeout', () => {
    const { sched, net } = world();
    net.setDown('b', true);
    const done: [CallFailure | undefined, number][] = [];
    net.call('a', 'b', 'req', () => 1, 500, (_res, failure) => done.push([failure, sched.now]));
    sched.runUntil(1000);
    expect(done).toHaveLength(1);
    expect(done[0]![0]).toBe('refused');
    expect(done[0]![1]).toBeLessThanOrEqual(10);
    net.cutOneWay('a', 'b');
    net.call('a', 'b', 'req', () => 1, 500, (_res, failure) => done.push([failure, sched.now]));
    sched.runUntil(2000);
    expect(done[1]).toEqual(['timeout', 1500]);
  });

  it('call: serve answering undefined means no answer (timeout); a caller that went down gets no callback', () => {
    const { sched, net } = world();
    const done: string[] = [];
    net.call('a', 'b', 'req', () => undefined, 50, (_r, f) => done.push(f ?? 'answered'));
    net.call('c', 'b', 'req', () => 1, 50, (_r, f) => done.push(f ?? 'answered'));
    net.setDown('c', true);
    net.setDown('c', false);
    sched.runUntil(1000);
    expect(done).toEqual(['timeout']);
  });

  it('a message in flight to a node that restarts meanwhile is lost', () => {
    const { sched, net } = world();
    let got = 0;
    net.send('a', 'b', 'm', () => got++);
    net.setDown('b', true);
    net.setDown('b', false);
    sched.runUntil(100);
    expect(got).toBe(0);
    expect(deliveries(net, sched, 3)).toBe(3);
  });
});
