/**
 * Client authentication on a real cluster (three replica processes started
 * with --tokens-file and --metrics-port): who gets 401 and 403, tenants kept
 * apart by log-name prefixes, probes and metrics left reachable, the tokens
 * file reloaded without a restart, and appends to a follower authorized there
 * (forwarded only when allowed). The route-by-route matrix is in
 * test/unit/client-auth.test.ts.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateToken, tokenLine, type Scope } from '../../src/auth/tokens.js';
import { TOKENS_FILE } from '../../src/cli/cluster-auth.js';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { freePort } from '../../src/cli/processes.js';
import { appendRaw, createLog, eventually, http, logStatus, startTestCluster } from '../support/cluster.js';

let cluster: LocalCluster;
let stop: () => Promise<void>;
let metricsPorts: Record<string, number>;

beforeAll(async () => {
  const ports = await Promise.all([freePort(), freePort(), freePort()]);
  metricsPorts = { r1: ports[0]!, r2: ports[1]!, r3: ports[2]! };
  ({ cluster, stop } = await startTestCluster([], { auth: true, replicaArgsFor: (id) => ['--metrics-port', String(metricsPorts[id])] }));
});
afterAll(async () => {
  await stop?.();
});

const url = (id = 'r1') => cluster.replica(id).clientUrl;
const tokensPath = () => join(cluster.dataDir, TOKENS_FILE);
/** Tokens added by the reload test, used by the others. */
const tokens: Record<string, string> = {};

/** Replaces the tokens file as a Secret update does: written aside, renamed over it. */
function writeTokens(text: string): void {
  writeFileSync(`${tokensPath()}.tmp`, text);
  renameSync(`${tokensPath()}.tmp`, tokensPath());
}

function addToken(name: string, scopes: Scope[], prefixes?: string[]): string {
  const token = generateToken();
  writeTokens(readFileSync(tokensPath(), 'utf8') + tokenLine(token, name, scopes, prefixes) + '\n');
  return token;
}

/** One series of a replica's metrics on its own metrics port (no token). */
async function metric(id: string, series: string): Promise<number> {
  const text = (await http(`http://127.0.0.1:${metricsPorts[id]}/metrics`, { token: null })).body.toString('utf8');
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  if (line === undefined) throw new Error(`no series ${series} on ${id}`);
  return Number(line.slice(series.length + 1));
}

/** Waits until every replica accepts `token` (the tokens file was reloaded everywhere). */
async function acceptedEverywhere(token: string): Promise<void> {
  for (const r of cluster.replicas) await eventually(async () => expect((await http(`${r.clientUrl}/v1/logs`, { token })).status).toBe(200), 10_000);
}

describe('client authentication on a real cluster', () => {
  it('refuses clients with no token or an unknown one (401, WWW-Authenticate: Bearer)', async () => {
    for (const token of [null, generateToken()]) {
      const res = await http(`${url()}/v1/logs`, { token });
      expect(res.status).toBe(401);
      expect(res.json().error.code).toBe('UNAUTHENTICATED');
      expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
    }
    expect(await metric('r1', 'tern_auth_open{replica="r1"}')).toBe(0);
  });

  it('picks up new tokens when the file changes or on SIGHUP, and keeps the old ones when the new file is bad', async () => {
    tokens.reader = addToken('reader', ['read']);
    tokens.tenantA = addToken('tenant-a', ['append', 'read'], ['tenant-a.']);
    await acceptedEverywhere(tokens.reader);
    await acceptedEverywhere(tokens.tenantA);

    const good = readFileSync(tokensPath(), 'utf8');
    const failedBefore = await metric('r2', 'tern_auth_reloads_total{result="failed",replica="r2"}');
    writeTokens('{"not": "a token line"}\n');
    await eventually(async () => expect(await metric('r2', 'tern_auth_reloads_total{result="failed",replica="r2"}')).toBeGreaterThan(failedBefore));
    expect((await http(`${url('r2')}/v1/logs`, { token: tokens.reader })).status).toBe(200);

    // SIGHUP re-reads at once; the poll would also see the change within about a second.
    writeTokens(good + tokenLine((tokens.writer = generateToken()), 'writer', ['append']) + '\n');
    for (const r of cluster.replicas) await cluster.signal(r.id, 'SIGHUP');
    await acceptedEverywhere(tokens.reader);
    for (const r of cluster.replicas) await eventually(async () => expect((await http(`${r.clientUrl}/v1/logs`, { token: tokens.writer })).status).toBe(403));
  });

  it('lets a read-only token read but not append or delete (403)', async () => {
    await createLog(url(), 'ro-log');
    expect((await appendRaw(url(), 'ro-log', 'x', undefined, tokens.reader)).status).toBe(403);
    const del = await http(`${url()}/v1/logs/ro-log`, { method: 'DELETE', token: tokens.reader });
    expect(del.status).toBe(403);
    expect(del.json().error.code).toBe('FORBIDDEN');
    expect((await http(`${url()}/v1/logs/ro-log/entries`, { token: tokens.reader })).status).toBe(200);
    expect((await http(`${url()}/v1/logs/ro-log`, { token: tokens.reader })).status).toBe(200);
  });

  it('keeps a tenant-a. token to tenant-a logs: 403 on tenant-b.x, and lists only its own', async () => {
    await createLog(url(), 'tenant-a.x');
    await createLog(url(), 'tenant-b.x');
    expect((await appendRaw(url(), 'tenant-a.x', 'mine', undefined, tokens.tenantA)).status).toBe(200);
    expect((await appendRaw(url(), 'tenant-b.x', 'theirs', undefined, tokens.tenantA)).status).toBe(403);
    expect((await http(`${url()}/v1/logs/tenant-b.x/entries`, { token: tokens.tenantA })).status).toBe(403);
    expect((await http(`${url()}/v1/logs`, { token: tokens.tenantA })).json().logs).toEqual(['tenant-a.x']);
    expect((await http(`${url()}/v1/logs`)).json().logs).toEqual(expect.arrayContaining(['tenant-a.x', 'tenant-b.x', 'ro-log']));
  });

  it('lets the admin token do everything: create, append, read, truncate, hand off through a follower, recover, delete', async () => {
    const { leader } = await createLog(url(), 'admin-log');
    expect((await appendRaw(url(leader), 'admin-log', 'a')).status).toBe(200);
    expect((await http(`${url()}/v1/logs/admin-log/entries`)).json().entries).toHaveLength(1);
    expect((await http(`${url()}/v1/logs/admin-log/truncate`, { method: 'POST', body: '{"beforeId": 1}', contentType: 'application/json' })).status).toBe(200);
    // Sent to a replica that does not lead: forwarded to the leader's client port with the same token.
    const follower = cluster.replicas.find((r) => r.id !== leader)!.id;
    const target = cluster.replicas.find((r) => r.id !== leader && r.id !== follower)!.id;
    const handoff = await http(`${url(follower)}/v1/logs/admin-log/handoff`, { method: 'POST', body: JSON.stringify({ to: target }), contentType: 'application/json' });
    expect(handoff.status, handoff.body.toString()).toBe(200);
    expect(handoff.json().leader).toBe(target);
    // Authorized, then refused for what it is: the log is available.
    const recover = await http(`${url(target)}/v1/logs/admin-log/recover`, { method: 'POST', body: '{"acceptDataLoss": true}', contentType: 'application/json' });
    expect(recover.status).toBe(400);
    expect((await http(`${url()}/v1/logs/admin-log`, { method: 'DELETE' })).status).toBe(200);
  });

  it('serves /healthz and /readyz without a token, and /metrics only on the metrics port', async () => {
    for (const r of cluster.replicas) {
      expect((await http(`${r.clientUrl}/healthz`, { token: null })).status).toBe(200);
      await eventually(async () => expect((await http(`${r.clientUrl}/readyz`, { token: null })).status).toBe(200));
      expect(await metric(r.id, `tern_auth_tokens{replica="${r.id}"}`)).toBe(4);
      expect((await http(`${r.clientUrl}/metrics`)).status).toBe(404);
    }
  });

  it('authorizes appends on the follower: a valid token is forwarded and acknowledged, none is refused there and never forwarded', async () => {
    const { leader } = await createLog(url(), 'forwarded');
    const follower = cluster.replicas.find((r) => r.id !== leader)!.id;
    const refused = (id: string) => metric(id, `tern_auth_refusals_total{code="UNAUTHENTICATED",replica="${id}"}`);
    const [followerBefore, leaderBefore] = [await refused(follower), await refused(leader)];

    expect((await appendRaw(url(follower), 'forwarded', 'one', undefined, tokens.writer)).status).toBe(200);
    expect((await appendRaw(url(follower), 'forwarded', 'two', undefined, null)).status).toBe(401);
    expect((await appendRaw(url(follower), 'forwarded', 'three', undefined, tokens.reader)).status).toBe(403);

    expect(await refused(follower)).toBe(followerBefore + 1);
    expect(await refused(leader)).toBe(leaderBefore);
    expect(await metric(leader, `tern_appends_total{log="forwarded",outcome="ok",replica="${leader}"}`)).toBe(1);
    expect((await logStatus(url(leader), 'forwarded')).committedId).toBe(0);
  });
});

describe('an open cluster', () => {
  it('says so at start-up on every replica and in tern_auth_open, and needs no token', async () => {
    const open = await startTestCluster();
    try {
      const c = open.cluster;
      for (const r of c.replicas) {
        expect(readFileSync(join(c.dataDir, `${r.id}.log`), 'utf8')).toMatch(/"level":40.*client API is OPEN/);
        expect((await http(`${r.clientUrl}/metrics`)).body.toString()).toContain(`tern_auth_open{replica="${r.id}"} 1`);
      }
      await createLog(c.replicas[0]!.clientUrl, 'open-log');
      expect((await appendRaw(c.replicas[1]!.clientUrl, 'open-log', 'x')).status).toBe(200);
    } finally {
      await open.stop();
    }
  });
});
