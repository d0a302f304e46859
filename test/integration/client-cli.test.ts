/**
 * The client commands of the `tern` CLI against a real cluster: stdin lines
 * to `tern append`, `tern read --json`, reads by time (`--since`,
 * `--from-time`, `tern log offset`), the log commands, and exit codes
 * (README, Commands): 2 usage, 3 no such log, 4 unavailable.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { freePort } from '../../src/cli/processes.js';
import { createClient } from '../../src/client/index.js';
import { readAll, startTestCluster } from '../support/cluster.js';
import { tern } from '../support/tern-cli.js';

describe('tern client commands', () => {
  let cluster: LocalCluster;
  let stop: () => Promise<void>;
  let urls: string;
  beforeAll(async () => {
    ({ cluster, stop } = await startTestCluster());
    urls = cluster.replicas.map((r) => r.clientUrl).join(',');
  });
  afterAll(async () => stop?.());

  it('creates a log, appends stdin lines as one entry each, reads them back as JSON lines', async () => {
    const created = await tern(['log', 'create', 'lines', '--cluster', urls]);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toMatch(/^created: lines/);

    const lines = Array.from({ length: 500 }, (_, i) => `line ${i}`);
    const before = Date.now();
    const appended = await tern(['append', 'lines', '--cluster', urls], lines.join('\n') + '\n');
    expect(appended.code, appended.stderr).toBe(0);
    expect(appended.stdout).toBe('appended: 500 entries, ids 0..499\n');
    const one = await tern(['append', 'lines', 'the last', '--cluster', urls, '--json']);
    expect(JSON.parse(one.stdout)).toEqual({ id: 500 });

    const read = await tern(['read', 'lines', '--from', '498', '--json', '--cluster', urls]);
    expect(read.code, read.stderr).toBe(0);
    const json = read.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(json).toEqual([
      { id: 498, timeMs: expect.any(Number), data: Buffer.from('line 498').toString('base64'), text: 'line 498' },
      { id: 499, timeMs: expect.any(Number), data: Buffer.from('line 499').toString('base64'), text: 'line 499' },
      { id: 500, timeMs: expect.any(Number), data: Buffer.from('the last').toString('base64'), text: 'the last' },
    ]);
    for (const e of json) expect(e.timeMs).toBeGreaterThanOrEqual(before - 1000);
    const limited = await tern(['read', 'lines', '--from', '10', '--limit', '3', '--cluster', urls]);
    expect(limited.stdout).toMatch(/^10\t\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\tline 10\n11\t\S+\tline 11\n12\t\S+\tline 12\n$/);
    expect((await readAll(cluster.replicas[0]!.clientUrl, 'lines')).map((e) => e.data.toString())).toEqual([...lines, 'the last']);
  });

  it('reads from a time (--from-time, --since), prints each entry\'s time, and finds the offset of a time', async () => {
    await tern(['log', 'create', 'clock', '--cluster', urls]);
    const client = createClient(urls.split(','));
    // Own times an hour back make --since exact: 30m takes the last two, 2h all three.
    const t0 = Date.now() - 3_600_000;
    try {
      const producer = client.producer('clock', { lingerMs: 0 });
      for (const [i, dt] of [0, 40 * 60_000, 50 * 60_000].entries()) await producer.append(`at ${i}`, { timeMs: t0 + dt });
    } finally {
      await client.close();
    }
    const iso = (t: number) => new Date(t).toISOString();
    const byTime = await tern(['read', 'clock', '--from-time', iso(t0 + 1), '--cluster', urls]);
    expect(byTime.code, byTime.stderr).toBe(0);
    expect(byTime.stdout).toBe(`1\t${iso(t0 + 40 * 60_000)}\tat 1\n2\t${iso(t0 + 50 * 60_000)}\tat 2\n`);
    const byMs = await tern(['read', 'clock', '--from-time', String(t0 + 50 * 60_000), '--json', '--cluster', urls]);
    expect(byMs.stdout.trim().split('\n').map((l) => JSON.parse(l).id)).toEqual([2]);
    expect((await tern(['read', 'clock', '--since', '30m', '--cluster', urls])).stdout).toMatch(/^1\t.*\n2\t.*\n$/);
    expect((await tern(['read', 'clock', '--since', '2h', '--cluster', urls])).stdout.split('\n')).toHaveLength(4);

    const offset = await tern(['log', 'offset', 'clock', '--time', iso(t0 + 1), '--cluster', urls]);
    expect(offset.stdout).toBe(`id 1 (time ${iso(t0 + 40 * 60_000)})\n`);
    const none = await tern(['log', 'offset', 'clock', '--time', String(t0 + 51 * 60_000), '--json', '--cluster', urls]);
    expect(JSON.parse(none.stdout)).toEqual({ log: 'clock', time: t0 + 51 * 60_000, id: 3, timeMs: null });
  });

  it('lists, shows status, truncates and hands off', async () => {
    await tern(['log', 'create', 'admin', '--cluster', urls]);
    await tern(['append', 'admin', '--cluster', urls], 'a\nb\nc\n');
    const list = await tern(['log', 'list', '--json', '--cluster', urls]);
    expect(list.stdout.trim().split('\n').map((l) => JSON.parse(l).log)).toContain('admin');
    const status = await tern(['log', 'status', 'admin', '--cluster', urls]);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/^log\s+admin$/m);
    expect(status.stdout).toMatch(/^committed id\s+2$/m);
    const leader = /^leader\s+(r\d)$/m.exec(status.stdout)![1]!;
    const target = ['r1', 'r2', 'r3'].find((r) => r !== leader)!;
    const handoff = await tern(['log', 'handoff', 'admin', target, '--json', '--cluster', urls]);
    expect(handoff.code, handoff.stderr).toBe(0);
    expect(JSON.parse(handoff.stdout).leader).toBe(target);
    const truncate = await tern(['log', 'truncate', 'admin', '2', '--cluster', urls]);
    expect(truncate.stdout).toMatch(/first id now 2/);
    const deleted = await tern(['log', 'delete', 'admin', '--cluster', urls]);
    expect(deleted.code, deleted.stderr).toBe(0);
  });

  it('exits 3 for a missing log, 2 for usage errors, 4 when no replica answers', async () => {
    for (const args of [['read', 'missing'], ['log', 'status', 'missing'], ['append', 'missing', 'x']]) {
      const run = await tern([...args, '--cluster', urls]);
      expect(run.code, `${args.join(' ')}: ${run.stderr}`).toBe(3);
      expect(run.stderr).toMatch(/LOG_NOT_FOUND/);
    }
    const fromStdin = await tern(['append', 'missing', '--cluster', urls], 'x\n');
    expect(fromStdin.code).toBe(3);
    for (const args of [['read'], ['log', 'frobnicate'], ['read', 'x', '--from', 'minus'], ['tail', 'x', '--no-such-flag'], ['log', 'recover', 'x'], ['log', 'status', 'x', '--cluster', '/nonexistent/cluster.json']]) {
      const run = await tern(args);
      expect(run.code, `${args.join(' ')}: ${run.stderr}`).toBe(2);
      expect(run.stderr).not.toMatch(/\n\s+at /);
    }
    const closed = `http://127.0.0.1:${await freePort()}`;
    const down = await tern(['log', 'list', '--cluster', closed, '--timeout-ms', '500']);
    expect(down.code, down.stderr).toBe(4);
  });
});

describe('tern client commands on a TLS cluster that requires tokens', () => {
  let cluster: LocalCluster;
  let stop: () => Promise<void>;
  beforeAll(async () => {
    ({ cluster, stop } = await startTestCluster([], { tls: true, auth: true }));
  });
  afterAll(async () => stop?.());

  it('takes the CA and the admin token from beside cluster.json; exits 5 without a token', async () => {
    const file = cluster.writeClusterFile();
    const created = await tern(['log', 'create', 'secure', '--cluster', file]);
    expect(created.code, created.stderr).toBe(0);
    const appended = await tern(['append', 'secure', '--cluster', file], 'one\ntwo\n');
    expect(appended.stdout).toBe('appended: 2 entries, ids 0..1\n');

    const urls = cluster.replicas.map((r) => r.clientUrl).join(',');
    expect(urls).toMatch(/^https:/);
    const anonymous = await tern(['read', 'secure', '--cluster', urls, '--ca', cluster.tls!.ca]);
    expect(anonymous.code, anonymous.stderr).toBe(5);
    expect(anonymous.stderr).toMatch(/UNAUTHENTICATED/);
    const withToken = await tern(['read', 'secure', '--cluster', urls, '--ca', cluster.tls!.ca, '--token', cluster.adminToken!]);
    expect(withToken.stdout).toMatch(/^0\t\S+Z\tone\n1\t\S+Z\ttwo\n$/);
  });
});
