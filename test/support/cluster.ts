/**
 * Test clusters: real etcd, three real replica processes, free ports, a temp
 * dir; everything is stopped and removed after the test file, also when it
 * fails (and on process exit, should the runner die first). A cluster can run
 * with TLS (`{ tls: true }`): the HTTP helpers here trust the CA of every TLS
 * cluster this file started. An authenticated cluster (`auth: true`) gets
 * an admin token, which the HTTP helpers below send to its replicas unless a
 * test names another token.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { afterEach, expect } from 'vitest';
import { LocalCluster, freeClusterPorts } from '../../src/cli/local-cluster.js';
import { S3RVER_BUCKET } from '../../src/cli/s3rver.js';

const live = new Set<LocalCluster>();
/** What the helpers send requests through: trusts the CAs of this file's TLS clusters. */
let trusting = new Agent();
const trustedCas: string[] = [];

/** Makes the helpers trust a TLS cluster's CA (one CA per cluster, made at its start). */
function trust(cluster: LocalCluster): void {
  if (!cluster.tls) return;
  trustedCas.push(cluster.tls.caPem);
  const previous = trusting;
  trusting = new Agent({ connect: { ca: trustedCas } });
  void previous.close();
}

/** The admin token of each authenticated cluster's client URLs (origin), for the helpers to send. */
const tokenByOrigin = new Map<string, string>();

export interface TestClusterOptions {
  objectStore?: boolean;
  /** HTTPS and mutual TLS between replicas, with a throwaway CA (LocalClusterOptions.tls). */
  tls?: boolean;
  /** Require tokens (--tokens-file with one admin token, `cluster.adminToken`). */
  auth?: boolean;
  /** Flags for one replica only (ports of its own, say). */
  replicaArgsFor?: (id: string) => readonly string[];
}
process.once('exit', () => {
  for (const c of live) for (const r of c.replicas) r.process?.kill('SIGKILL');
});

export async function startTestCluster(replicaArgs: string[] = [], options: TestClusterOptions = {}): Promise<{ cluster: LocalCluster; stop(): Promise<void> }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'tern-test-'));
  const cluster = await LocalCluster.start({
    dataDir,
    ...(await freeClusterPorts(options)),
    replicaArgs: ['--log-level', process.env.TERN_TEST_LOG_LEVEL ?? 'warn', ...replicaArgs],
    tls: options.tls,
    auth: options.auth,
    replicaArgsFor: options.replicaArgsFor,
  });
  live.add(cluster);
  trust(cluster);
  for (const r of cluster.replicas) if (cluster.adminToken) tokenByOrigin.set(r.clientUrl, cluster.adminToken);
  return {
    cluster,
    async stop() {
      live.delete(cluster);
      for (const r of cluster.replicas) tokenByOrigin.delete(r.clientUrl);
      await cluster.stop();
      if (!process.env.TERN_KEEP_TEST_DIRS) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * One cluster per test: the returned starter starts a test cluster with
 * `baseArgs` plus the test's own flags, and the cluster a test started is
 * stopped after it, passed or failed.
 */
export function clusterPerTest(baseArgs: readonly string[] = []): (extraArgs?: readonly string[], options?: TestClusterOptions) => Promise<LocalCluster> {
  let stop: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await stop?.();
    stop = undefined;
  });
  return async (extraArgs = [], options = {}) => {
    const started = await startTestCluster([...baseArgs, ...extraArgs], options);
    stop = started.stop;
    return started.cluster;
  };
}

/** The replicas' log lines about `log` (JSON lines in the cluster's data dir), for a failing test to show. */
export function replicaLogLines(cluster: LocalCluster, log: string): string {
  return cluster.replicas
    .map((r) => {
      try {
        return readFileSync(join(cluster.dataDir, `${r.id}.log`), 'utf8')
          .split('\n')
          .filter((l) => l.includes(`"log":"${log}"`))
          .join('\n');
      } catch {
        return '';
      }
    })
    .join('\n');
}

export interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  json(): any;
}

/**
 * One request. `token`: the bearer token to send; by default the admin token
 * of the authenticated test cluster that `url` belongs to (none for an open
 * one), null for none at all.
 */
export async function http(url: string, options: { method?: string; body?: Buffer | string; contentType?: string; accept?: string; timeoutMs?: number; token?: string | null; headers?: Record<string, string> } = {}): Promise<HttpAnswer> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.contentType) headers['content-type'] = options.contentType;
  if (options.accept) headers.accept = options.accept;
  const token = options.token === undefined ? tokenByOrigin.get(new URL(url).origin) : options.token;
  if (token !== null && token !== undefined) headers.authorization = `Bearer ${token}`;
  const res = await request(url, {
    dispatcher: trusting,
    method: (options.method ?? 'GET') as 'GET',
    headers,
    body: options.body,
    headersTimeout: options.timeoutMs ?? 30_000,
    bodyTimeout: options.timeoutMs ?? 30_000,
  });
  const body = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers, body, json: () => JSON.parse(body.toString('utf8')) };
}

export function appendRaw(baseUrl: string, log: string, data: Buffer | string, timeoutMs?: number, token?: string | null): Promise<HttpAnswer> {
  return http(`${baseUrl}/v1/logs/${log}/entries`, { method: 'POST', body: data, contentType: 'application/octet-stream', timeoutMs, token });
}

/** Appends each value on its own, expecting every one acknowledged. */
export async function appendMany(url: string, log: string, values: readonly (Buffer | string)[]): Promise<void> {
  for (const v of values) {
    const res = await appendRaw(url, log, v);
    expect(res.status, res.body.toString()).toBe(200);
  }
}

/** The log's status as the replica at `url` knows it. */
export async function logStatus(url: string, log: string): Promise<any> {
  return (await http(`${url}/v1/logs/${log}`)).json();
}

export async function createLog(baseUrl: string, log: string): Promise<any> {
  const res = await http(`${baseUrl}/v1/logs/${log}`, { method: 'PUT' });
  if (res.status !== 201 && res.status !== 200) throw new Error(`create ${log}: ${res.status} ${res.body}`);
  return res.json();
}

/** Every committed entry of a log as one replica serves it (JSON reads, base64 decoded). */
export async function readAll(baseUrl: string, log: string): Promise<{ id: number; data: Buffer }[]> {
  const out: { id: number; data: Buffer }[] = [];
  let from = 0;
  for (;;) {
    const res = await http(`${baseUrl}/v1/logs/${log}/entries?from=${from}&limit=1000`);
    if (res.status !== 200) throw new Error(`read ${log}@${baseUrl}: ${res.status} ${res.body}`);
    const page = res.json() as { entries: { id: number; data: string }[]; nextId: number };
    for (const e of page.entries) out.push({ id: e.id, data: Buffer.from(e.data, 'base64') });
    if (page.entries.length === 0) return out;
    from = page.nextId;
  }
}

/** Object files as s3rver stores them on disk (data files only), relative to the log's folder (<uid>/<object>). */
export function storedObjects(c: LocalCluster, log: string): string[] {
  try {
    return readdirSync(storedObjectsDir(c, log), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('._S3rver_object'));
  } catch {
    return [];
  }
}

/** The folder of a log's objects on s3rver's disk (what `storedObjects` names are relative to). */
export function storedObjectsDir(c: LocalCluster, log: string): string {
  return join(c.objectStoreDir, S3RVER_BUCKET, 'tern', log);
}

/** The series of `name` on one replica's /metrics whose labels include every one of `labels`, as label text and value. */
export async function metricSeries(url: string, name: string, labels: Record<string, string> = {}): Promise<{ labels: string; value: number }[]> {
  const text = (await http(`${url}/metrics`)).body.toString('utf8');
  const out: { labels: string; value: number }[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)\{([^}]*)\} (\S+)$/.exec(line);
    if (m && m[1] === name && Object.entries(labels).every(([k, v]) => m[2]!.includes(`${k}="${v}"`))) out.push({ labels: m[2]!, value: Number(m[3]) });
  }
  return out;
}

/** Retries `check` until it stops throwing, for at most `timeoutMs`; rethrows the last failure. */
export async function eventually<T>(check: () => Promise<T>, timeoutMs = 10_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, everyMs));
    }
  }
}
