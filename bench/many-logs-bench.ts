/**
 * The many-logs benchmark (issue 19's baseline): what each log costs a
 * cluster that holds thousands of them, most of them idle.
 *
 *   npm run bench:many-logs -- [--logs N] [--concurrency C] [--idle S] [--json] [-- REPLICA FLAGS]
 *
 * It starts a local cluster as bench/append-bench.ts does (etcd, s3rver and
 * three replica processes on loopback) and reports, in this order:
 *   - the idle CPU (% of one core) and RSS of each replica and of etcd with no
 *     log, and the series each replica's /metrics exposes;
 *   - the creation of `--logs` logs by `--concurrency` concurrent creators,
 *     spread over the replicas: logs a second;
 *   - the same idle figures with every log created and given one entry, and
 *     the etcd keys each log costs;
 *   - one append to each log, sent to a replica in turn (a follower forwards
 *     to the leader), `--concurrency` at a time: p50/p99/max and failures.
 * The results go to stdout and are appended to bench/results/<date>-many-logs.md.
 *
 * Exit codes: 0 done, 1 the cluster or the run failed, 2 bad flags, 130
 * interrupted. The temp data dir is removed in every case.
 */
import { appendFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { build as buildHistogram } from 'hdr-histogram-js';
import { Etcd3 } from 'etcd3';
import { Pool } from 'undici';
import { LocalCluster, freeClusterPorts } from '../src/cli/local-cluster.js';
import { keys } from '../src/fencing/keys.js';
import { markdownTable, ms } from './lib/format.js';
import { OCTET_STREAM_HEADERS, append, httpJson } from './lib/http.js';
import { clusterPids, cpuFigures, cpuSnapshot, machine, procRssMiB, runCommand, startedUnlessAborted } from './lib/proc.js';
import { numberFlag, optionsOrExitCode, parseFlags } from './lib/flags.js';
import { PROJECT_ROOT } from './lib/project.js';

const USAGE = `Usage: node dist/bench/many-logs-bench.js [options] [-- REPLICA FLAGS]   (or: npm run bench:many-logs -- [options])
  --logs N         logs to create (default 10000)
  --concurrency C  creations and appends in flight at once (default 16)
  --idle S         seconds each idle measurement lasts (default 20)
  --json           print the results as JSON on stdout (progress stays on stderr)
  --profile DIR    run the replicas under node --cpu-prof, writing their profiles to DIR
  -h, --help       this text
Flags after -- go to every replica (an A/B comparison of a replica setting).`;

const REPLICA_ARGS = ['--log-level', 'warn'];
const REQUEST_TIMEOUT_MS = 60_000;
/** Between the last append and the idle measurement: the default flush interval (1 s) and then some. */
const SETTLE_MS = 5_000;
/** The cluster's name in etcd: the replicas' default (--cluster). */
const CLUSTER = 'tern';

interface Options {
  logs: number;
  concurrency: number;
  idleS: number;
  json: boolean;
  profileDir: string | undefined;
  replicaArgs: string[];
}

interface Idle {
  cpuPct: Record<string, number>;
  rssMiB: Record<string, number | undefined>;
  /** Series each replica's /metrics exposes (samples, comment lines aside): what a scrape costs Prometheus. */
  metricSeries: Record<string, number>;
}

interface Results {
  machine: ReturnType<typeof machine>;
  options: Omit<Options, 'json' | 'profileDir'>;
  idleEmpty: Idle;
  createdPerSecond: number;
  createFailures: number;
  idleFull: Idle;
  etcdKeysPerLog: number;
  appends: { p50Ms: number; p99Ms: number; maxMs: number; failures: number; seconds: number };
}

function parseOptions(argv: readonly string[]): Options | 'help' {
  const split = argv.indexOf('--');
  const own = split < 0 ? argv : argv.slice(0, split);
  const replicaArgs = split < 0 ? [] : argv.slice(split + 1);
  const f = parseFlags(own, ['logs', 'concurrency', 'idle', 'profile'], ['json']);
  if (f.help) return 'help';
  return {
    logs: numberFlag('--logs', f.logs as string | undefined, 10_000, 1, 1_000_000, true),
    concurrency: numberFlag('--concurrency', f.concurrency as string | undefined, 16, 1, 1024, true),
    idleS: numberFlag('--idle', f.idle as string | undefined, 20, 1, 3600, true),
    json: f.json === true,
    profileDir: f.profile as string | undefined,
    replicaArgs,
  };
}

async function measureIdle(cluster: LocalCluster, seconds: number, signal: AbortSignal): Promise<Idle> {
  const pids = clusterPids(cluster);
  const before = cpuSnapshot(pids);
  await sleep(seconds * 1000, undefined, { signal });
  const figures = cpuFigures(before, cpuSnapshot(pids));
  const rssMiB: Record<string, number | undefined> = {};
  for (const [name, pid] of Object.entries(pids)) rssMiB[name] = procRssMiB(pid);
  const metricSeries: Record<string, number> = {};
  for (const r of cluster.replicas) {
    const res = await fetch(`${r.clientUrl}/metrics`);
    metricSeries[r.id] = (await res.text()).split('\n').filter((line) => line !== '' && !line.startsWith('#')).length;
  }
  return { cpuPct: figures.processCpuPct, rssMiB, metricSeries };
}

/** Runs `work(i)` for i in [0, n), `concurrency` at a time; counts the ones that threw. */
async function runPool(n: number, concurrency: number, signal: AbortSignal, work: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  let failures = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, n) }, async () => {
      while (next < n && !signal.aborted) {
        const i = next++;
        await work(i).catch(() => void failures++);
      }
    }),
  );
  return failures;
}

async function etcdKeyCount(endpoint: string): Promise<number> {
  const etcd = new Etcd3({ hosts: endpoint });
  try {
    return await etcd.getAll().prefix(keys.prefix(CLUSTER)).count();
  } finally {
    etcd.close();
  }
}

const logName = (i: number) => `many-${String(i).padStart(6, '0')}`;

async function run(opts: Options, cluster: LocalCluster, signal: AbortSignal, progress: (line: string) => void): Promise<Results> {
  const urls = cluster.replicas.map((r) => r.clientUrl);
  progress(`idle with no log, ${opts.idleS} s`);
  const idleEmpty = await measureIdle(cluster, opts.idleS, signal);
  const keysBefore = await etcdKeyCount(cluster.etcdEndpoint);

  progress(`creating ${opts.logs} logs, ${opts.concurrency} at a time`);
  const createStart = performance.now();
  const createFailures = await runPool(opts.logs, opts.concurrency, signal, async (i) => {
    const put = await httpJson(`${urls[i % urls.length]}/v1/logs/${logName(i)}`, 'PUT');
    if (put.status !== 201 && put.status !== 200) throw new Error(`create ${logName(i)}: ${put.status}`);
  });
  const createdPerSecond = opts.logs / ((performance.now() - createStart) / 1000);
  progress(`created in ${((performance.now() - createStart) / 1000).toFixed(1)} s (${createdPerSecond.toFixed(0)} logs/s, ${createFailures} failed)`);

  progress(`one append to each log, ${opts.concurrency} at a time`);
  const pools = urls.map((u) => new Pool(u, { connections: opts.concurrency, headersTimeout: REQUEST_TIMEOUT_MS, bodyTimeout: REQUEST_TIMEOUT_MS }));
  const hist = buildHistogram({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3 });
  const payload = Buffer.alloc(1024, 0x61);
  const appendStart = performance.now();
  const appendFailures = await runPool(opts.logs, opts.concurrency, signal, async (i) => {
    const sent = performance.now();
    const failure = await append(pools[i % pools.length]!, `/v1/logs/${logName(i)}/entries`, payload, OCTET_STREAM_HEADERS);
    if (failure !== undefined) throw new Error(failure);
    hist.recordValue(Math.max(1, Math.round((performance.now() - sent) * 1000)));
  });
  const appendSeconds = (performance.now() - appendStart) / 1000;
  await Promise.all(pools.map((p) => p.close()));
  progress(`appended in ${appendSeconds.toFixed(1)} s (${appendFailures} failed); idle with every log, ${opts.idleS} s once flushed`);
  // The appends' flushes are work, not idleness: wait them out first.
  await sleep(SETTLE_MS, undefined, { signal });

  const idleFull = await measureIdle(cluster, opts.idleS, signal);
  const etcdKeysPerLog = ((await etcdKeyCount(cluster.etcdEndpoint)) - keysBefore) / opts.logs;
  return {
    machine: machine(),
    options: { logs: opts.logs, concurrency: opts.concurrency, idleS: opts.idleS, replicaArgs: opts.replicaArgs },
    idleEmpty,
    createdPerSecond,
    createFailures,
    idleFull,
    etcdKeysPerLog,
    appends: { p50Ms: ms(hist.getValueAtPercentile(50)), p99Ms: ms(hist.getValueAtPercentile(99)), maxMs: ms(hist.maxValue), failures: appendFailures, seconds: appendSeconds },
  };
}

function idleRows(label: string, idle: Idle): string[][] {
  return Object.keys(idle.cpuPct).map((name) => [label, name, `${idle.cpuPct[name]} %`, `${idle.rssMiB[name] ?? '?'} MiB`, String(idle.metricSeries[name] ?? '-')]);
}

function report(r: Results): string {
  const head = `${r.options.logs} logs, ${r.options.concurrency} at a time, idle windows of ${r.options.idleS} s${r.options.replicaArgs.length > 0 ? `, replica flags ${r.options.replicaArgs.join(' ')}` : ''}`;
  const idle = markdownTable(['logs', 'process', 'idle CPU (% of a core)', 'RSS', 'metric series'], [...idleRows('0', r.idleEmpty), ...idleRows(String(r.options.logs), r.idleFull)], 2);
  const rest = markdownTable(
    ['creation', 'etcd keys per log', 'one append to each: p50', 'p99', 'max', 'failed (create / append)'],
    [[`${r.createdPerSecond.toFixed(0)} logs/s`, r.etcdKeysPerLog.toFixed(1), `${r.appends.p50Ms} ms`, `${r.appends.p99Ms} ms`, `${r.appends.maxMs} ms`, `${r.createFailures} / ${r.appends.failures}`]],
  );
  return `${head}\n\n${idle}\n\n${rest}\n`;
}

async function main(argv: string[]): Promise<number> {
  const parsed = optionsOrExitCode('many-logs-bench', USAGE, () => parseOptions(argv));
  if (typeof parsed === 'number') return parsed;
  const opts = parsed;
  const progress = (line: string) => process.stderr.write(`${line}\n`);
  const abort = new AbortController();
  const onSignal = () => abort.abort();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const dataDir = mkdtempSync(join(os.tmpdir(), 'tern-bench-many-'));
  let cluster: LocalCluster | undefined;
  try {
    progress(`starting etcd, s3rver and 3 replicas (data in ${dataDir})`);
    const started = await startedUnlessAborted(LocalCluster.start({ dataDir, ...(await freeClusterPorts()), replicaArgs: [...REPLICA_ARGS, ...opts.replicaArgs], ...(opts.profileDir ? { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${opts.profileDir}`] } : {}) }), abort.signal);
    if (started === 'aborted') return 130;
    cluster = started;
    const results = await run(opts, cluster, abort.signal, progress);
    if (abort.signal.aborted) return 130;
    const text = report(results);
    const file = join(PROJECT_ROOT, 'bench', 'results', `${new Date().toISOString().slice(0, 10)}-many-logs.md`);
    // Appended, not written over: the day's file also holds the notes on earlier runs.
    if (!existsSync(file)) writeFileSync(file, `# bench:many-logs, ${new Date().toISOString().slice(0, 10)}\n`);
    appendFileSync(file, `\n## Run of ${new Date().toISOString()}\n\nmachine: ${results.machine.cpus} x ${results.machine.cpuModel}, node ${results.machine.node}\n\n${text}`);
    process.stdout.write(opts.json ? `${JSON.stringify(results)}\n` : `${text}\nwritten to ${file}\n`);
    return 0;
  } finally {
    await cluster?.stop();
    rmSync(dataDir, { recursive: true, force: true });
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

runCommand('many-logs-bench', main);
