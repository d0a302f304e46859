/**
 * Authentication and authorization of the client API in-process (inject(),
 * no sockets): every route against tokens of each kind, over a scripted
 * replica that records what reached it, so a refused request is seen never to
 * get there (or to have its body read).
 */
import Fastify from 'fastify';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { findToken, generateToken, parseTokensFile, tokenLine } from '../../src/auth/tokens.js';
import { installAuth } from '../../src/http/auth.js';
import { buildClientApi } from '../../src/http/client-api.js';
import type { HttpLimits, ReplicaApi } from '../../src/replica/api.js';

const LIMITS: HttpLimits = { maxRequestBytes: 4096, maxEntryBytes: 1024, maxBatchBytes: 4096, maxBatchEntries: 100, maxReadEntries: 100, maxWaitMs: 1000, ackTimeoutMs: 1000, maxRequestEntries: 1000, maxConnections: 100, requestTimeoutMs: 30_000, headersTimeoutMs: 10_000, keepAliveTimeoutMs: 5_000 };
const ADMIN = generateToken();
const READER = generateToken();
const TENANT_A = generateToken();
const records = parseTokensFile(
  [tokenLine(ADMIN, 'admin', ['admin']), tokenLine(READER, 'reader', ['read']), tokenLine(TENANT_A, 'tenant-a', ['append', 'read'], ['tenant-a.'])].join('\n'),
);
const status = { log: 'x', leader: 'r1', epoch: 1, committedId: -1, flushedId: -1, firstId: 0, flushLag: { entries: 0, bytes: 0 }, segments: [] };

/** A replica that leads every log and records each call that reached it. */
function scriptedReplica(calls: string[], refusals: string[]): ReplicaApi {
  const note = (what: string) => calls.push(what);
  return {
    id: 'r1',
    incarnation: 'i1',
    isStopping: false,
    metrics: { appended: () => {}, acknowledged: () => {}, etcdFailed: () => {}, authRefused: (code: string) => refusals.push(code), render: async () => ({ contentType: 'text/plain', body: 'tern_up 1\n' }) },
    readiness: () => ({ ready: true }),
    listLogs: () => ['tenant-a.one', 'tenant-b.two', 'other'],
    createLog: async (log: string) => (note(`create ${log}`), { created: true, status }),
    status: async (log: string) => (note(`status ${log}`), status),
    leaderElsewhere: async () => undefined,
    append: async (log: string) => (note(`append ${log}`), { firstId: 0, lastId: 0, epoch: 1 }),
    read: async (log: string) => (note(`read ${log}`), { entries: [], fromId: 0, nextId: 0, committedId: -1 }),
    deleteLog: async (log: string) => (note(`delete ${log}`), { log, deleted: true }),
    truncate: async (log: string) => (note(`truncate ${log}`), status),
    handoff: async (log: string) => (note(`handoff ${log}`), status),
    forceRecovery: async (log: string) => (note(`recover ${log}`), { log, epoch: 2, recoveredId: -1, warning: 'w' }),
    commitReader: async (log: string, name: string, nextId: number, holdsRetention: boolean) => (note(`commit-reader ${log}`), { name, nextId, holdsRetention, updatedAt: '' }),
    reader: async (log: string, name: string) => (note(`reader ${log}`), { name, nextId: 0, holdsRetention: false, updatedAt: '', lagEntries: 0 }),
    readers: async (log: string) => (note(`readers ${log}`), []),
    deleteReader: async (log: string, reader: string) => (note(`delete-reader ${log}`), { log, reader, deleted: true }),
  } as unknown as ReplicaApi;
}

async function api(auth: boolean, metrics = true) {
  const calls: string[] = [];
  const refusals: string[] = [];
  const app = await buildClientApi(scriptedReplica(calls, refusals), LIMITS, pino({ level: 'silent' }), { tokens: auth ? { find: (t) => findToken(records, t) } : undefined, metrics });
  return { app, calls, refusals };
}

/** Every route that touches a log, with what it needs. */
const ROUTES = [
  { method: 'PUT', path: (log: string) => `/v1/logs/${log}`, scope: 'admin', call: 'create' },
  { method: 'DELETE', path: (log: string) => `/v1/logs/${log}`, scope: 'admin', call: 'delete' },
  { method: 'POST', path: (log: string) => `/v1/logs/${log}/truncate`, scope: 'admin', call: 'truncate', body: '{"beforeId":0}' },
  { method: 'POST', path: (log: string) => `/v1/logs/${log}/recover`, scope: 'admin', call: 'recover', body: '{"acceptDataLoss":true}' },
  { method: 'POST', path: (log: string) => `/v1/logs/${log}/handoff`, scope: 'admin', call: 'handoff', body: '{"to":"r2"}' },
  { method: 'POST', path: (log: string) => `/v1/logs/${log}/entries`, scope: 'append', call: 'append', body: 'entry', type: 'application/octet-stream' },
  { method: 'GET', path: (log: string) => `/v1/logs/${log}/entries`, scope: 'read', call: 'read' },
  { method: 'GET', path: (log: string) => `/v1/logs/${log}`, scope: 'read', call: 'status' },
  { method: 'PUT', path: (log: string) => `/v1/logs/${log}/readers/billing`, scope: 'append', call: 'commit-reader', body: '{"nextId":0}' },
  { method: 'GET', path: (log: string) => `/v1/logs/${log}/readers/billing`, scope: 'read', call: 'reader' },
  { method: 'GET', path: (log: string) => `/v1/logs/${log}/readers`, scope: 'read', call: 'readers' },
  { method: 'DELETE', path: (log: string) => `/v1/logs/${log}/readers/billing`, scope: 'append', call: 'delete-reader' },
] as const;

function send(app: Awaited<ReturnType<typeof api>>['app'], route: (typeof ROUTES)[number], log: string, token?: string) {
  return app.inject({
    method: route.method,
    url: route.path(log),
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), 'content-type': 'type' in route ? route.type : 'application/json' },
    ...('body' in route ? { payload: route.body } : {}),
  });
}

describe('client API authentication', () => {
  it.each(ROUTES)('$method $call: 401 without a token or with an unknown one, never reaching the replica', async (route) => {
    const { app, calls, refusals } = await api(true);
    for (const token of [undefined, generateToken()]) {
      const res = await send(app, route, 'tenant-a.x', token);
      expect(res.statusCode).toBe(401);
      expect(res.json().error.code).toBe('UNAUTHENTICATED');
      expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
    }
    expect(calls).toEqual([]);
    expect(refusals).toEqual(['UNAUTHENTICATED', 'UNAUTHENTICATED']);
  });

  it.each(ROUTES)('$method $call: needs the $scope scope and a prefix covering the log', async (route) => {
    const { app, calls } = await api(true);
    const ok = (token: string, log: string) => send(app, route, log, token).then((r) => r.statusCode);
    expect(await ok(ADMIN, 'tenant-b.x')).toBeLessThan(300);
    expect(await ok(READER, 'tenant-b.x')).toBe(route.scope === 'read' ? 200 : 403);
    expect(await ok(TENANT_A, 'tenant-a.x')).toBe(route.scope === 'admin' ? 403 : 200);
    expect(await ok(TENANT_A, 'tenant-b.x')).toBe(403);
    const expected = [`${route.call} tenant-b.x`, ...(route.scope === 'read' ? [`${route.call} tenant-b.x`] : []), ...(route.scope === 'admin' ? [] : [`${route.call} tenant-a.x`])];
    expect(calls).toEqual(expected);
  });

  it('lists only the logs a token covers', async () => {
    const { app } = await api(true);
    const list = (token?: string) => app.inject({ method: 'GET', url: '/v1/logs', headers: token ? { authorization: `Bearer ${token}` } : {} });
    expect((await list()).statusCode).toBe(401);
    expect((await list(TENANT_A)).json()).toEqual({ logs: ['tenant-a.one'] });
    expect((await list(READER)).json()).toEqual({ logs: ['tenant-a.one', 'tenant-b.two', 'other'] });
  });

  it('serves probes, metrics and the API description without a token', async () => {
    const { app } = await api(true);
    for (const url of ['/healthz', '/readyz', '/metrics', '/openapi.json']) expect((await app.inject({ method: 'GET', url })).statusCode, url).toBe(200);
  });

  it('answers 401 before reading a body, even one over the size limit', async () => {
    const { app } = await api(true);
    const big = Buffer.alloc(LIMITS.maxRequestBytes * 2);
    const res = await app.inject({ method: 'POST', url: '/v1/logs/x/entries', headers: { 'content-type': 'application/octet-stream' }, payload: big });
    expect(res.statusCode).toBe(401);
    const authed = await app.inject({ method: 'POST', url: '/v1/logs/x/entries', headers: { 'content-type': 'application/octet-stream', authorization: `Bearer ${ADMIN}` }, payload: big });
    expect(authed.statusCode).toBe(413);
  });

  it('needs a known token for unknown paths, then answers 404', async () => {
    const { app } = await api(true);
    expect((await app.inject({ method: 'GET', url: '/nope' })).statusCode).toBe(401);
    expect((await app.inject({ method: 'GET', url: '/nope', headers: { authorization: `Bearer ${READER}` } })).statusCode).toBe(404);
  });

  it('lets everything through on an open cluster', async () => {
    const { app, calls } = await api(false);
    for (const route of ROUTES) expect((await send(app, route, 'tenant-b.x')).statusCode, route.call).toBeLessThan(300);
    expect(calls).toHaveLength(ROUTES.length);
  });

  it('leaves /metrics off the client port when it has its own listener', async () => {
    const { app } = await api(false, false);
    expect((await app.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(404);
  });

  it('refuses to start with a route that declares no access', async () => {
    const app = Fastify();
    installAuth(app, undefined, () => {});
    expect(() => app.get('/forgotten', async () => 'open')).toThrow(/declares no config.access/);
  });
});
