/**
 * The many-logs benchmark (issue 19): what each log costs a cluster that
 * holds thousands of them, most of them idle, what they take together, and
 * how they come back after a whole-cluster crash.
 *
 *   npm run bench:many-logs -- [--logs N] [--concurrency C] [--idle S] [--throughput-logs N]
 *       [--outstanding K] [--throughput-s S] [--kill-restart] [--restart-timeout S] [--kill-after S]
 *       [--out DIR] [--json] [--profile DIR] [-- REPLICA FLAGS]
 *
 * It starts a local cluster as bench/append-bench.ts does (etcd, s3rver and
 * three replica processes on loopback) and reports, in this order:
 *   - the idle CPU (% of one core) and RSS of each replica and of etcd with no
 *     log, and the series each replica's /metrics exposes;
 *   - the creation of `--logs` logs by `--concurrency` concurrent creators,
 *     spread over the replicas: logs a second;
 *   - one append to each log, sent to a replica in turn (a follower forwards
 *     to the leader), `--concurrency` at a time: p50/p99/max and failures;
 *   - how long until every log is quiesced (README, Quiescence), then the same
 *     idle figures with every log created, given one entry and asleep, and
 *     the etcd keys each log costs;
 *   - one append to each quiesced log, which reopens it: p50/p99/max;
 *   - aggregate appends/s over the first `--throughput-logs` logs, 1 KiB
 *     entries, `--outstanding` in flight from this one driver for
 *     `--throughput-s` seconds, in three rows: Tern with each append sent to
 *     its log's leader, Tern spread round-robin over the replicas, and NATS
 *     JetStream (a 3-node cluster started for this phase only, one R3 memory
 *     stream per log) (bench/lib/many-logs-throughput.ts);
 *   - with `--kill-restart`: every log flushed and quiesced, the three replicas SIGKILLed
 *     at once and started again on the same data: the time until all are
 *     ready, the time until every log took one append again, and a sample of
 *     logs read back, which must hold every entry acknowledged before the
 *     kill (bench/lib/many-logs-restart.ts).
 * The results go to stdout and are appended to <out>/<date>-many-logs.md
 * (`--out`, default bench/results).
 *
 * Exit codes: 0 done, 1 the cluster or the run failed or an acknowledged
 * entry was not read back after the restart, 2 bad flags or no nats-server,
 * 130 interrupted. The temp data dir is removed in every case.
 */
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { build as buildHistogram } from 'hdr-histogram-js';
import { Etcd3 } from 'etcd3';
import { Pool } from 'undici';
import { LocalCluster, freeClusterPorts } from '../src/cli/local-cluster.js';
import { keys } from '../src/fencing/keys.js';
import { AckedEntries, evenSample } from './lib/acked-entries.js';
import { markdownTable, ms } from './lib/format.js';
import { OCTET_STREAM_HEADERS, append, httpJson } from './lib/http.js';
import { appendOnceEach, killAndRestart, type KillRestartResult } from './lib/many-logs-restart.js';
import { ENTRY_BYTES, NatsManyStreams, TernManyLogsTarget, WARMUP_S, measureThroughput, type ThroughputRow } from './lib/many-logs-throughput.js';
import { NATS_INSTALL_HINT, NatsCluster, ensureNatsServer } from './lib/nats-cluster.js';
import { clusterPids, cpuFigures, cpuSnapshot, machine, procRssMiB, runCommand, startedUnlessAborted, stopOwnChildren } from './lib/proc.js';
import { numberFlag, optionsOrExitCode, parseFlags } from './lib/flags.js';
import { PROJECT_ROOT } from './lib/project.js';
import { runPool, waitFlushed, waitQuiesced } from './lib/tern-logs.js';

const USAGE = `Usage: node dist/bench/many-logs-bench.js [options] [-- REPLICA FLAGS]   (or: npm run bench:many-logs -- [options])
  --logs N              logs to create (default 10000)
  --concurrency C       creations and appends in flight at once (default 16)
  --idle S              seconds each idle measurement lasts (default 20)
  --throughput-logs N   aggregate appends/s over the first N logs (at most --logs), against NATS
                        JetStream with N streams; 0 skips this phase (default 1000)
  --outstanding K       appends in flight at once in that phase (default 64)
  --throughput-s S      measured seconds of each of its rows (default 20, after ${WARMUP_S} s of warm-up)
  --kill-restart        at the end, SIGKILL the three replicas at once, start them again on the same
                        data: time to ready and to one append to every log, acknowledged entries read back
  --restart-timeout S   how long to wait for the flushes before the kill, for readiness after it, and
                        for each log's first append (retried on 503) (default 60)
  --kill-after S        seconds the flushed logs stay idle before the kill (default 0)
  --out DIR             where the day's <date>-many-logs.md is appended (default bench/results)
  --json                print the results as JSON on stdout (progress stays on stderr)
  --profile DIR         run the replicas under node --cpu-prof, writing their profiles to DIR
  -h, --help            this text
Flags after -- go to every replica (an A/B comparison of a replica setting).`;

const REPLICA_ARGS = ['--log-level', 'warn'];
const REQUEST_TIMEOUT_MS = 60_000;
/** Between the last append and the idle measurement when logs do not quiesce: the default flush interval (1 s) and then some. */
const SETTLE_MS = 5_000;
/** How long every log has to quiesce (--quiesce-after-ms, 10 s, then one etcd transaction each) before the idle measurement. */
const QUIESCE_WAIT_MS = 300_000;
/** The cluster's name in etcd: the replicas' default (--cluster). */
const CLUSTER = 'tern';
/** Logs read back after the kill: spread evenly over all of them. */
const CHECK_SAMPLE_LOGS = 100;
/** Per-node memory store of the NATS nodes: room for a 20 s row at well over NATS's rate on this machine. */
const NATS_MAX_MEMORY_STORE = 2 * 1024 ** 3;

interface Options {
  logs: number;
  concurrency: number;
  idleS: number;
  throughputLogs: number;
  outstanding: number;
  throughputS: number;
  killRestart: boolean;
  restartTimeoutS: number;
  killAfterS: number;
  out: string;
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

interface Throughput {
  logs: number;
  outstanding: number;
  seconds: number;
  entryBytes: number;
  rows: ThroughputRow[];
  /** Tern appends/s over NATS appends/s, per Tern row. */
  ternOverNats: { leader: number; spread: number };
  natsStreamLeaders: string;
}

interface Results {
  machine: ReturnType<typeof machine>;
  options: Omit<Options, 'json' | 'profileDir' | 'out'>;
  idleEmpty: Idle;
  createdPerSecond: number;
  createFailures: number;
  idleFull: Idle;
  etcdKeysPerLog: number;
  appends: { p50Ms: number; p99Ms: number; maxMs: number; failures: number; seconds: number };
  /** From the last of those appends until every log was quiesced (or the wait ran out), and how many were. */
  quiescence: { seconds: number; quiesced: number };
  /** Then one append to each quiesced log: the first append, which reopens it (one etcd transaction). */
  wakeAppends: { p50Ms: number; p99Ms: number; maxMs: number; failures: number };
  throughput?: Throughput;
  killRestart?: KillRestartResult;
}

function parseOptions(argv: readonly string[]): Options | 'help' {
  const split = argv.indexOf('--');
  const own = split < 0 ? argv : argv.slice(0, split);
  const replicaArgs = split < 0 ? [] : argv.slice(split + 1);
  const f = parseFlags(own, ['logs', 'concurrency', 'idle', 'throughput-logs', 'outstanding', 'throughput-s', 'restart-timeout', 'kill-after', 'out', 'profile'], ['json', 'kill-restart']);
  if (f.help) return 'help';
  const str = (name: string) => f[name] as string | undefined;
  const logs = numberFlag('logs', str('logs'), 10_000, 1, 1_000_000, true);
  return {
    logs,
    concurrency: numberFlag('concurrency', str('concurrency'), 16, 1, 1024, true),
    idleS: numberFlag('idle', str('idle'), 20, 1, 3600, true),
    // The first N of the logs created: never more than there are.
    throughputLogs: Math.min(logs, numberFlag('throughput-logs', str('throughput-logs'), 1000, 0, 1_000_000, true)),
    outstanding: numberFlag('outstanding', str('outstanding'), 64, 1, 4096, true),
    throughputS: numberFlag('throughput-s', str('throughput-s'), 20, 0.5, 3600, false),
    killRestart: f['kill-restart'] === true,
    restartTimeoutS: numberFlag('restart-timeout', str('restart-timeout'), 60, 1, 3600, false),
    killAfterS: numberFlag('kill-after', str('kill-after'), 0, 0, 3600, false),
    out: resolve(str('out') ?? join(PROJECT_ROOT, 'bench', 'results')),
    json: f.json === true,
    profileDir: str('profile'),
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

/** False when the replica flags turn quiescence off (--quiesce-after-ms 0). */
function quiesces(replicaArgs: readonly string[]): boolean {
  const i = replicaArgs.indexOf('--quiesce-after-ms');
  return i < 0 || Number(replicaArgs[i + 1]) !== 0;
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

/**
 * The throughput phase: Tern to the leaders, Tern spread, then NATS on a
 * cluster started for it and stopped after it (its streams' Raft groups
 * would otherwise tick through the Tern rows and the crash).
 */
async function throughputPhase(opts: Options, cluster: LocalCluster, dataDir: string, acked: AckedEntries, signal: AbortSignal, progress: (line: string) => void): Promise<Throughput> {
  const logs = Array.from({ length: opts.throughputLogs }, (_, i) => logName(i));
  const run = { outstanding: opts.outstanding, seconds: opts.throughputS };
  const rows: ThroughputRow[] = [];
  const line = (r: ThroughputRow) =>
    progress(`  ${r.system}: ${r.appendsPerSec.toFixed(0)} appends/s, p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms, ${r.errors} errors${r.errors ? ` ${JSON.stringify(r.errorsByCode)}` : ''} (servers ${r.serverCpuPct ?? '?'} % CPU, driver loop ${r.driverLoopPct ?? '?'} %)`);
  for (const mode of ['leader', 'spread'] as const) {
    progress(`throughput, Tern ${mode}: ${logs.length} logs, ${opts.outstanding} outstanding, ${opts.throughputS} s`);
    const target = await TernManyLogsTarget.open(cluster, logs, mode, opts.outstanding, acked, signal);
    rows.push(await measureThroughput(`tern-${mode}`, target, run, clusterPids(cluster), signal));
    line(rows.at(-1)!);
    // The row's flushes are its work: they should not land in the next row.
    const late = await waitFlushed(cluster, logs, opts.concurrency, opts.restartTimeoutS * 1000, signal);
    if (late.length > 0) progress(`  ${late.length} logs not flushed ${opts.restartTimeoutS} s after the row`);
  }

  progress(`throughput, NATS: starting 3 nats-server nodes, creating ${logs.length} R3 memory streams`);
  const nats = await NatsCluster.start({ dir: join(dataDir, 'nats'), maxMemoryStore: NATS_MAX_MEMORY_STORE });
  let streams: NatsManyStreams | undefined;
  let natsStreamLeaders = '';
  try {
    streams = await NatsManyStreams.create(nats, logs.length, opts.concurrency, signal);
    natsStreamLeaders = streams.describeLeaders();
    progress(`  stream leaders: ${natsStreamLeaders}`);
    rows.push(await measureThroughput('nats', await streams.open(), run, nats.pids(), signal));
    line(rows.at(-1)!);
  } finally {
    await streams?.close();
    await nats.stop();
  }
  const rate = (s: string) => rows.find((r) => r.system === s)?.appendsPerSec ?? NaN;
  const ratio = (s: string) => Math.round((rate(s) / rate('nats')) * 100) / 100;
  return { logs: logs.length, outstanding: opts.outstanding, seconds: opts.throughputS, entryBytes: ENTRY_BYTES, rows, ternOverNats: { leader: ratio('tern-leader'), spread: ratio('tern-spread') }, natsStreamLeaders };
}

async function run(opts: Options, cluster: LocalCluster, dataDir: string, signal: AbortSignal, progress: (line: string) => void): Promise<Results> {
  const urls = cluster.replicas.map((r) => r.clientUrl);
  const names = Array.from({ length: opts.logs }, (_, i) => logName(i));
  const acked = new AckedEntries(ENTRY_BYTES, evenSample(names, CHECK_SAMPLE_LOGS));
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
  const appendStart = performance.now();
  const appendFailures = await runPool(opts.logs, opts.concurrency, signal, async (i) => {
    const sent = performance.now();
    const entry = acked.entry();
    const failure = await append(pools[i % pools.length]!, `/v1/logs/${logName(i)}/entries`, entry, OCTET_STREAM_HEADERS);
    if (failure !== undefined) throw new Error(failure);
    acked.ack(logName(i), entry);
    hist.recordValue(Math.max(1, Math.round((performance.now() - sent) * 1000)));
  });
  const appendSeconds = (performance.now() - appendStart) / 1000;
  await Promise.all(pools.map((p) => p.close()));
  progress(`appended in ${appendSeconds.toFixed(1)} s (${appendFailures} failed); waiting for the logs to quiesce`);
  // The appends' flushes and the seals are work, not idleness: wait them out first.
  await sleep(SETTLE_MS, undefined, { signal });
  const quiescence = quiesces(opts.replicaArgs) ? await waitQuiesced(cluster, opts.logs, QUIESCE_WAIT_MS, signal) : { seconds: 0, quiesced: 0 };
  progress(`${quiescence.quiesced} logs quiesced ${quiescence.seconds} s after the settle; idle with every log, ${opts.idleS} s`);

  const idleFull = await measureIdle(cluster, opts.idleS, signal);
  const etcdKeysPerLog = ((await etcdKeyCount(cluster.etcdEndpoint)) - keysBefore) / opts.logs;
  progress(`one append to each quiesced log (it reopens), ${opts.concurrency} at a time`);
  const wake = await appendOnceEach(urls, { logs: names, concurrency: opts.concurrency, timeoutMs: opts.restartTimeoutS * 1000, acked }, signal);
  progress(`woken: p50 ${wake.p50Ms} ms, p99 ${wake.p99Ms} ms, ${wake.failed} failed`);
  const results: Results = {
    machine: machine(),
    options: {
      logs: opts.logs,
      concurrency: opts.concurrency,
      idleS: opts.idleS,
      throughputLogs: opts.throughputLogs,
      outstanding: opts.outstanding,
      throughputS: opts.throughputS,
      killRestart: opts.killRestart,
      restartTimeoutS: opts.restartTimeoutS,
      killAfterS: opts.killAfterS,
      replicaArgs: opts.replicaArgs,
    },
    idleEmpty,
    createdPerSecond,
    createFailures,
    idleFull,
    etcdKeysPerLog,
    appends: { p50Ms: ms(hist.getValueAtPercentile(50)), p99Ms: ms(hist.getValueAtPercentile(99)), maxMs: ms(hist.maxValue), failures: appendFailures, seconds: appendSeconds },
    quiescence,
    wakeAppends: { p50Ms: wake.p50Ms, p99Ms: wake.p99Ms, maxMs: wake.maxMs, failures: wake.failed },
  };
  hist.destroy();
  if (opts.throughputLogs > 0 && !signal.aborted) results.throughput = await throughputPhase(opts, cluster, dataDir, acked, signal, progress);
  if (opts.killRestart && !signal.aborted) {
    results.killRestart = await killAndRestart(cluster, { logs: names, concurrency: opts.concurrency, timeoutMs: opts.restartTimeoutS * 1000, killAfterS: opts.killAfterS, acked }, signal, progress);
  }
  return results;
}

function idleRows(label: string, idle: Idle): string[][] {
  return Object.keys(idle.cpuPct).map((name) => [label, name, `${idle.cpuPct[name]} %`, `${idle.rssMiB[name] ?? '?'} MiB`, String(idle.metricSeries[name] ?? '-')]);
}

const num = (x: number | null | undefined, digits: number) => (x === null || x === undefined || Number.isNaN(x) ? '-' : x.toFixed(digits));

function throughputReport(t: Throughput): string {
  const ratio = (r: ThroughputRow) => (r.system === 'tern-leader' ? num(t.ternOverNats.leader, 2) : r.system === 'tern-spread' ? num(t.ternOverNats.spread, 2) : '');
  const errors = (r: ThroughputRow) => `${r.errors}${r.errors ? ` (${Object.entries(r.errorsByCode).map(([k, n]) => `${k} x${n}`).join(', ')})` : ''}`;
  const rows = t.rows.map((r) => [r.system, num(r.appendsPerSec, 0), `${num(r.p50Ms, 2)} ms`, `${num(r.p99Ms, 2)} ms`, errors(r), `${num(r.serverCpuPct, 0)} %`, `${num(r.driverLoopPct, 0)} %`, ratio(r)]);
  return [
    `Aggregate appends over ${t.logs} logs (NATS: ${t.logs} R3 memory streams, leaders ${t.natsStreamLeaders}), ${t.entryBytes / 1024} KiB entries, ${t.outstanding} in flight from one driver, ${t.seconds} s after ${WARMUP_S} s of warm-up:`,
    '',
    markdownTable(['system', 'appends/s', 'p50', 'p99', 'errors', 'server CPU (% of a core)', 'driver loop', 'Tern/NATS'], rows),
  ].join('\n');
}

function killRestartReport(k: KillRestartResult, logs: number): string {
  const fa = k.firstAppends;
  const codes = Object.entries(fa.failuresByCode).map(([c, n]) => `${c} x${n}`).join(', ');
  const lines = [
    `Whole-cluster crash: ${logs} logs flushed (${k.flushWaitS} s${k.notFlushed ? `, ${k.notFlushed} not flushed in time` : ''}), ${k.quiescedAtKill} quiesced (${k.quiesceWaitS} s more)${k.killAfterS ? `, idle ${k.killAfterS} s` : ''}, the 3 replicas SIGKILLed at once and restarted on the same data:`,
    '',
    markdownTable(
      ['all 3 ready', 'every log appended to', 'first append: p50', 'p99', 'max', 'taken / failed', 'entries read back (logs)', 'missing', 'logs unreadable'],
      [[k.readyS === null ? 'not in time' : `${k.readyS} s`, k.allAppendedS === null ? 'no' : `${k.allAppendedS} s`, `${num(fa.p50Ms, 1)} ms`, `${num(fa.p99Ms, 1)} ms`, `${num(fa.maxMs, 1)} ms`, `${fa.taken} / ${fa.failed}`, `${k.check.entries} (${k.check.logs})`, String(k.check.missing), String(k.check.unreadableLogs)]],
    ),
  ];
  if (codes) lines.push('', `First appends that failed: ${codes}.`);
  if (Object.keys(k.notReady).length > 0) lines.push('', `Not ready: ${Object.entries(k.notReady).map(([u, why]) => `${u}: ${why}`).join('; ')}.`);
  if (k.check.unreadableLogs > 0) lines.push('', `Unreadable: ${Object.entries(k.check.unreadable).slice(0, 5).map(([l, why]) => `${l}: ${why}`).join('; ')}.`);
  return lines.join('\n');
}

function report(r: Results): string {
  const o = r.options;
  const head = `${o.logs} logs, ${o.concurrency} at a time, idle windows of ${o.idleS} s${o.replicaArgs.length > 0 ? `, replica flags ${o.replicaArgs.join(' ')}` : ''}`;
  const idle = markdownTable(['logs', 'process', 'idle CPU (% of a core)', 'RSS', 'metric series'], [...idleRows('0', r.idleEmpty), ...idleRows(String(o.logs), r.idleFull)], 2);
  const rest = markdownTable(
    ['creation', 'etcd keys per log', 'one append to each: p50', 'p99', 'max', 'failed (create / append)'],
    [[`${r.createdPerSecond.toFixed(0)} logs/s`, r.etcdKeysPerLog.toFixed(1), `${r.appends.p50Ms} ms`, `${r.appends.p99Ms} ms`, `${r.appends.maxMs} ms`, `${r.createFailures} / ${r.appends.failures}`]],
  );
  const w = r.wakeAppends;
  const wake = markdownTable(
    ['quiesced before the idle window', 'then one append to each quiesced log (wake): p50', 'p99', 'max', 'failed'],
    [[`${r.quiescence.quiesced} of ${o.logs} (${r.quiescence.seconds} s after the settle)`, `${num(w.p50Ms, 1)} ms`, `${num(w.p99Ms, 1)} ms`, `${num(w.maxMs, 1)} ms`, String(w.failures)]],
  );
  const parts = [head, idle, rest, wake];
  if (r.throughput) parts.push(throughputReport(r.throughput));
  if (r.killRestart) parts.push(killRestartReport(r.killRestart, o.logs));
  return `${parts.join('\n\n')}\n`;
}

/** Whether every entry acknowledged on the sampled logs before the kill was read back after it (true without --kill-restart). */
function nothingLost(r: Results): boolean {
  return r.killRestart === undefined || (r.killRestart.check.missing === 0 && r.killRestart.check.unreadableLogs === 0);
}

async function main(argv: string[]): Promise<number> {
  const parsed = optionsOrExitCode('many-logs-bench', USAGE, () => parseOptions(argv));
  if (typeof parsed === 'number') return parsed;
  const opts = parsed;
  const progress = (line: string) => process.stderr.write(`${line}\n`);
  if (opts.throughputLogs > 0 && ensureNatsServer(progress) === 'unavailable') {
    console.error(`many-logs-bench: ${NATS_INSTALL_HINT}\n(or leave the throughput phase out: --throughput-logs 0)`);
    return 2;
  }
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
    const results = await run(opts, cluster, dataDir, abort.signal, progress);
    if (abort.signal.aborted) return 130;
    const text = report(results);
    const date = new Date().toISOString().slice(0, 10);
    mkdirSync(opts.out, { recursive: true });
    const file = join(opts.out, `${date}-many-logs.md`);
    // Appended, not written over: the day's file also holds the notes on earlier runs.
    if (!existsSync(file)) writeFileSync(file, `# bench:many-logs, ${date}\n`);
    appendFileSync(file, `\n## Run of ${new Date().toISOString()}\n\nmachine: ${results.machine.cpus} x ${results.machine.cpuModel}, node ${results.machine.node}\n\n${text}`);
    process.stdout.write(opts.json ? `${JSON.stringify(results)}\n` : `${text}\nwritten to ${file}\n`);
    if (!nothingLost(results)) {
      console.error(`many-logs-bench: entries acknowledged before the kill were not read back after it (${results.killRestart!.check.missing} missing, ${results.killRestart!.check.unreadableLogs} logs unreadable)`);
      return 1;
    }
    return 0;
  } finally {
    await cluster?.stop();
    // The NATS nodes are stopped by their phase; anything a failure left behind goes here.
    await stopOwnChildren(2000);
    rmSync(dataDir, { recursive: true, force: true });
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

runCommand('many-logs-bench', main);
