import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { seeded } from './run.js';
import { History, SeenTimes, Workload } from './workload.js';

/** A replica stand-in that acknowledges every append after `delayMs`, ids counting from 0. */
async function fakeReplica(delayMs: number): Promise<{ server: Server; url: string; appends: () => number }> {
  let n = 0;
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: n++, epoch: 1 })), delayMs));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, appends: () => n };
}

describe('jepsen-lite workload: holding the appenders (kill-all reads statuses while no append can wake a log)', () => {
  let stopAll: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await stopAll?.();
    stopAll = undefined;
  });

  it('hold() waits for the appends in flight; a held log takes no append until released, the released ones go on', async () => {
    const replica = await fakeReplica(100);
    const history = new History();
    const workload = new Workload(history, { logs: [], replicas: [{ id: 'r1', url: replica.url }], clientsPerLog: 0, thinkMs: 0, appendTimeoutMs: 2000, random: Math.random, producers: 'plain' });
    stopAll = async () => {
      await workload.stop();
      await new Promise((resolve) => replica.server.close(resolve));
    };

    const first = workload.probe('A', 2000);
    await sleep(20);
    const busy = await workload.hold(5000);
    // hold() returned only once the append in flight was answered.
    expect(busy).toEqual(new Set());
    expect(replica.appends()).toBe(1);
    expect(await first).toBe(true);

    let aDone = false;
    let bDone = false;
    const a = workload.probe('A', 5000).then((ok) => (aDone = ok));
    const b = workload.probe('B', 5000).then((ok) => (bDone = ok));
    await sleep(300);
    expect([aDone, bDone, replica.appends()]).toEqual([false, false, 1]);
    workload.release(['B']);
    await b;
    expect([aDone, bDone, replica.appends()]).toEqual([false, true, 2]);
    workload.release();
    await a;
    expect(replica.appends()).toBe(3);
    // Every probe of a log is its own process: values never repeat.
    const values = history.ops.filter((op) => op.type === 'append').map((op) => (op as { value: string }).value);
    expect(new Set(values).size).toBe(values.length);
  });

  it('hold() names the logs whose appends are still in flight when it gives up', async () => {
    const replica = await fakeReplica(1000);
    const workload = new Workload(new History(), { logs: [], replicas: [{ id: 'r1', url: replica.url }], clientsPerLog: 0, thinkMs: 0, appendTimeoutMs: 3000, random: Math.random, producers: 'plain' });
    stopAll = async () => {
      await workload.stop();
      await new Promise((resolve) => replica.server.close(resolve));
    };
    const slow = workload.probe('S', 3000);
    await sleep(20);
    expect(await workload.hold(100)).toEqual(new Set(['S']));
    workload.release();
    expect(await slow).toBe(true);
  });
});

describe('jepsen-lite workload: the times a seeker asks', () => {
  it('asks at the times seen, between them, before the first and after the last', () => {
    const seen = new SeenTimes();
    for (const t of [1000, 1000, 1500, 4000]) seen.add(t);
    const random = seeded(7);
    const picks = Array.from({ length: 2000 }, () => seen.pick(random));
    const at = picks.filter((t) => [1000, 1500, 4000].includes(t)).length;
    const between = picks.filter((t) => t > 1000 && t < 4000 && t !== 1500).length;
    const before = picks.filter((t) => t < 1000).length;
    const after = picks.filter((t) => t > 4000).length;
    expect(at + between + before + after).toBe(picks.length);
    for (const n of [before, after]) expect(n).toBeGreaterThan(100);
    expect(at).toBeGreaterThan(600);
    expect(between).toBeGreaterThan(300);
    expect(Math.min(...picks)).toBeGreaterThanOrEqual(0);
  });
});
