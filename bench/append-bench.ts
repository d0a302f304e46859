/**
 * The append benchmark (issue "Performance"): starts a local cluster (etcd and
 * three replica processes on loopback, through LocalCluster like `tern
 * cluster` and the tests), creates one log per scenario and drives it with a
 * closed loop of concurrent producers for a fixed time: each producer sends
 * one raw append (`POST /v1/logs/{log}/entries`, application/octet-stream),
 * waits for the answer, and sends the next. Latency is the ack latency the
 * client sees (request sent -> 200 received), recorded in microseconds in an
 * HDR histogram. Only 200 answers count as throughput; anything else is an
 * error, counted by status and error code.
 *
 *   npm run bench -- [--duration S] [--warmup S] [--producers N]
 *                    [--sizes 1024,65536] [--target leader|spread] [--auth] [--json]
 *                    [--idempotent]
 *
 * With --idempotent every size runs twice on the same cluster, one scenario
 * after the other: plain appends, then appends that each carry a producer id
 * (one per closed-loop producer) and its next sequence number, so the pair
 * measures what the leader's producer check costs in one run.
 *
 * On the driver not being the bottleneck: the driver runs on the same (small)
 * machine as the three replicas and etcd, so every CPU cycle it takes is
 * taken from them. It is kept cheap: the entry bytes are generated once and
 * the same Buffer is sent every time (undici writes it to the socket without
 * copying), successful answers are drained without parsing, one undici Pool
 * per replica keeps a persistent connection per producer (no connection set-up
 * in the loop, no pipelining so each request is independent), and latency
 * recording is one histogram increment. It is a single event loop: with more
 * cores one could shard producers over worker threads, but on a 2-core machine
 * that only takes more CPU from the replicas. To show whether the driver is
 * saturated, each scenario reports the driver's CPU use and event-loop
 * utilisation over the measured window next to each replica's and etcd's CPU
 * (from /proc, Linux only): an ELU near 100% means the driver, not the server,
 * limits the figures. Measured on the 2-core dev VM (2 x AMD EPYC): at ~4-5k
 * appends/s of 1 KiB the driver used ~40% of one core with its event loop
 * ~50% busy, and ~10% at 64 KiB, while the leader replica sat at ~80% of a
 * core and the machine as a whole near saturation: the driver has headroom,
 * but its share of the CPU still comes out of the replicas' share.
 *
 * The replicas run with --max-buffer-bytes 3 GiB: the flusher releases entries
 * once s3rver holds them, but s3rver shares this machine's two cores and can
 * fall behind a 64 KiB scenario, and a 503 BUFFER_FULL would measure the
 * memory bound rather than the append path.
 *
 * Exit codes: 0 done, 1 the cluster or the run failed, 2 bad flags,
 * 130 interrupted (Ctrl-C / SIGTERM). The temp data dir is removed in every
 * case (the tail of the replica logs is printed first when something failed).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { build as buildHistogram, type Histogram } from 'hdr-histogram-js';
import { Agent, Pool, setGlobalDispatcher } from 'undici';
import { LocalCluster, freeClusterPorts } from '../src/cli/local-cluster.js';
import { ms, round1, round2, sizeLabel, table } from './lib/format.js';
import { OCTET_STREAM_HEADERS, append, authHeaders, committedEntries, createLog as createLogVia } from './lib/http.js';
import { clusterPids, cpuFigures, cpuSnapshot, machine, ownChildren, procRssMiB, runCommand, startedUnlessAborted, type CpuFigures, type CpuSnapshot } from './lib/proc.js';
import { UsageError, numberFlag, optionsOrExitCode, parseFlags } from './lib/flags.js';

const USAGE = `Usage: node dist/bench/append-bench.js [options]   (or: npm run bench -- [options])
  --duration S         measured seconds per scenario (default 10)
  --warmup S           warm-up seconds per scenario, not counted (default 2)
  --producers N        concurrent closed-loop producers (default 64)
  --sizes A,B,...      entry sizes in bytes, one scenario each (default 1024,65536; max 1048576)
  --target T           leader: send every append to the log's leader (default)
                       spread: round-robin over the three replicas (2 of 3 appends are forwarded)
  --auth               start the cluster with a tokens file (tern cluster --auth) and send its
                       token with every request: the cost of authentication, against a run without
  --tls                start the cluster with TLS (tern cluster --tls: HTTPS, mutual TLS between
                       replicas) and connect over HTTPS: with --auth, the cost of both, against a run without
  --idempotent         run each size twice, plain then as an idempotent producer (Tern-Producer-Id
                       and Tern-Producer-Seq on every append): the cost of the producer check
  --json               print the results as JSON on stdout (progress stays on stderr)
  -h, --help           this text`;

/** Replica flags: quiet logs, and a buffer big enough that the run never fills it (nothing flushes yet). */
const REPLICA_ARGS = ['--log-level', 'warn', '--max-buffer-bytes', String(3 * 1024 ** 3)];
/** The replicas' default --max-entry-bytes: larger entries would only measure 413s. */
const MAX_ENTRY_BYTES = 1024 * 1024;
/** After an error answer a producer pauses this long, so a failing server is not hammered by a tight loop of 503s. */
const ERROR_PAUSE_MS = 20;
/** Client-side timeout of one append (the server's own ack timeout is 2 s, its forwarding timeout 7 s). */
const REQUEST_TIMEOUT_MS = 30_000;

type Target = 'leader' | 'spread';
/** plain: bare appends; idempotent: each producer sends its id and next sequence number (README, Idempotent producer). */
type Mode = 'plain' | 'idempotent';

interface Options {
  durationS: number;
  warmupS: number;
  producers: number;
  sizes: number[];
  target: Target;
  auth: boolean;
  tls: boolean;
  idempotent: boolean;
  json: boolean;
}

function parseOptions(argv: readonly string[]): Options | 'help' {
  const values = parseFlags(argv, ['duration', 'warmup', 'producers', 'sizes', 'target'], ['json', 'auth', 'tls', 'idempotent']);
  if (values.help) return 'help';
  const str = (name: string) => values[name] as string | undefined;
  const durationS = numberFlag('duration', str('duration'), 10, 0.1, 3600, false);
  const warmupS = numberFlag('warmup', str('warmup'), 2, 0, 600, false);
  const producers = numberFlag('producers', str('producers'), 64, 1, 4096, true);
  const sizes = (str('sizes') ?? '1024,65536').split(',').map((s) => numberFlag('sizes', s.trim(), 0, 1, MAX_ENTRY_BYTES, true));
  const target = str('target') ?? 'leader';
  if (target !== 'leader' && target !== 'spread') throw new UsageError(`--target must be leader or spread, got "${target}"`);
  return { durationS, warmupS, producers, sizes, target, auth: values.auth === true, tls: values.tls === true, idempotent: values.idempotent === true, json: values.json === true };
}

// ---------------------------------------------------------------------------
// Results

interface ScenarioResult {
  log: string;
  leader: string;
  entryBytes: number;
  producers: number;
  target: Target;
  mode: Mode;
  measuredSeconds: number;
  acked: number;
  appendsPerSec: number;
  bytesPerSec: number;
  /** 10^6 bytes of entry payload per second. */
  mbPerSec: number;
  latencyMs: { p50: number; p99: number; p999: number; max: number; mean: number };
  /** Appends acked in each second of the measured window: shows stalls and drift that an average hides. */
  perSecond: number[];
  errors: number;
  /** Error answers in the measured window, by "status CODE" (status 0: no HTTP answer). */
  errorsByCode: Record<string, number>;
  warmupErrors: number;
  /** Appends acked over the whole scenario (warm-up and measured and drain) vs the leader's committedId + 1 after it. */
  check: { ackedTotal: number; committedEntries: number; ok: boolean };
  cpu: CpuFigures;
  /** Resident memory of each replica after the scenario, MiB (entries stay in memory: nothing flushes yet). */
  rssMiB: Record<string, number>;
}

// ---------------------------------------------------------------------------
// /proc sampling (Linux): CPU time and RSS of the cluster's processes

// ---------------------------------------------------------------------------
// HTTP helpers (setup only; the hot loop uses the pools directly; see lib/http.ts)

/** Creates the log and returns its leader's id, waiting (up to 15 s) until it has one. */
function createLog(cluster: LocalCluster, log: string, signal: AbortSignal): Promise<string> {
  return createLogVia(cluster.replicas[0]!.clientUrl, log, signal, cluster.adminToken);
}

// ---------------------------------------------------------------------------
// One scenario: a closed loop of producers against one log

interface ScenarioSpec {
  size: number;
  producers: number;
  target: Target;
  mode: Mode;
  warmupS: number;
  durationS: number;
}

async function runScenario(cluster: LocalCluster, spec: ScenarioSpec, signal: AbortSignal, progress: (line: string) => void): Promise<ScenarioResult> {
  const log = `bench-${spec.size}b-${spec.producers}p-${spec.target}-${spec.mode}`;
  const leader = await createLog(cluster, log, signal);
  const leaderUrl = cluster.replica(leader).clientUrl;
  progress(`scenario: ${sizeLabel(spec.size)} entries, ${spec.producers} ${spec.mode} producers, target ${spec.target} (log ${log}, leader ${leader})`);

  const urls = spec.target === 'leader' ? [leaderUrl] : cluster.replicas.map((r) => r.clientUrl);
  // One connection per producer on every pool: a producer never waits for a socket.
  const pools = urls.map(
    (url) =>
      new Pool(url, {
        connections: spec.producers,
        pipelining: 1,
        keepAliveTimeout: 60_000,
        headersTimeout: REQUEST_TIMEOUT_MS,
        bodyTimeout: REQUEST_TIMEOUT_MS,
        ...(cluster.tls ? { connect: { ca: cluster.tls.caPem } } : {}),
      }),
  );
  const payload = randomBytes(spec.size);
  const path = `/v1/logs/${log}/entries`;
  const headers = { ...OCTET_STREAM_HEADERS, ...authHeaders(cluster.adminToken) };

  const histogram: Histogram = buildHistogram({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });
  const errorsByCode: Record<string, number> = {};
  let acked = 0;
  let ackedTotal = 0;
  let errors = 0;
  let warmupErrors = 0;
  let next = 0;
  /** Acks per second of the measured window (the last slot is partial when the duration is fractional). */
  const perSecond: number[] = new Array<number>(Math.ceil(spec.durationS)).fill(0);

  const pids = clusterPids(cluster);
  const t0 = performance.now();
  const measureStart = t0 + spec.warmupS * 1000;
  const measureEnd = measureStart + spec.durationS * 1000;
  let before: CpuSnapshot | undefined;
  let after: CpuSnapshot | undefined;
  const startTimer = setTimeout(() => {
    before = cpuSnapshot(pids);
    if (spec.warmupS > 0) progress(`  measuring ${spec.durationS} s`);
  }, Math.max(0, measureStart - performance.now()));
  const endTimer = setTimeout(() => (after = cpuSnapshot(pids)), Math.max(0, measureEnd - performance.now()));
  if (spec.warmupS > 0) progress(`  warm-up ${spec.warmupS} s`);

  // On Ctrl-C, break the appends in flight (their outcome is not counted).
  const onAbort = () => void Promise.all(pools.map((p) => p.destroy().catch(() => undefined)));
  signal.addEventListener('abort', onAbort, { once: true });

  const producer = async (index: number): Promise<void> => {
    const producerId = `${log}-p${index}-${process.pid}`;
    // An idempotent producer resends the same sequence number after an error and moves on only once it is acked.
    let seq = 0;
    while (!signal.aborted && performance.now() < measureEnd) {
      const pool = pools.length === 1 ? pools[0]! : pools[next++ % pools.length]!;
      const sent = performance.now();
      const key = await append(pool, path, payload, spec.mode === 'plain' ? headers : { ...headers, 'tern-producer-id': producerId, 'tern-producer-seq': String(seq) });
      const done = performance.now();
      if (signal.aborted) return;
      if (key === undefined) {
        ackedTotal++;
        seq++;
        if (done >= measureStart && done < measureEnd) {
          acked++;
          const second = Math.floor((done - measureStart) / 1000);
          perSecond[second] = (perSecond[second] ?? 0) + 1;
          histogram.recordValue(Math.max(1, Math.round((done - sent) * 1000)));
        }
      } else {
        if (done >= measureStart && done < measureEnd) {
          errors++;
          errorsByCode[key] = (errorsByCode[key] ?? 0) + 1;
        } else if (done < measureStart) {
          warmupErrors++;
        }
        await sleep(ERROR_PAUSE_MS);
      }
    }
  };

  try {
    await Promise.all(Array.from({ length: spec.producers }, (_, i) => producer(i)));
  } finally {
    signal.removeEventListener('abort', onAbort);
    clearTimeout(startTimer);
    clearTimeout(endTimer);
    await Promise.all(pools.map((p) => p.close().catch(() => undefined)));
  }
  if (signal.aborted) throw new Error('interrupted');
  // Both timers normally fired; should the last answers have come in the same event-loop turn that
  // crossed measureEnd, the end timer was cleared first and this late snapshot stands in for it.
  after ??= cpuSnapshot(pids);
  before ??= after;

  const committed = await committedEntries(leaderUrl, log, cluster.adminToken);
  const rssMiB: Record<string, number> = {};
  for (const r of cluster.replicas) {
    const rss = procRssMiB(r.process.pid);
    if (rss !== undefined) rssMiB[r.id] = rss;
  }
  const measuredSeconds = spec.durationS;
  const appendsPerSec = acked / measuredSeconds;
  return {
    log,
    leader,
    entryBytes: spec.size,
    producers: spec.producers,
    target: spec.target,
    mode: spec.mode,
    measuredSeconds,
    acked,
    appendsPerSec: round1(appendsPerSec),
    bytesPerSec: Math.round(appendsPerSec * spec.size),
    mbPerSec: round2((appendsPerSec * spec.size) / 1e6),
    latencyMs: {
      p50: ms(histogram.getValueAtPercentile(50)),
      p99: ms(histogram.getValueAtPercentile(99)),
      p999: ms(histogram.getValueAtPercentile(99.9)),
      max: ms(histogram.maxValue),
      mean: ms(histogram.mean),
    },
    perSecond,
    errors,
    errorsByCode,
    warmupErrors,
    // Every acked append is committed; appends that failed with maybeApplied may also be (so >=, and = when no errors).
    check: { ackedTotal, committedEntries: committed, ok: committed >= ackedTotal },
    cpu: before === after ? { driverCpuPct: NaN, driverElPct: NaN, processCpuPct: {} } : cpuFigures(before, after),
    rssMiB,
  };
}


// ---------------------------------------------------------------------------
// Output

const HEADER = ['size', 'producers', 'target', 'mode', 'appends/s', 'MB/s', 'p50 ms', 'p99 ms', 'p99.9 ms', 'max ms', 'errors'];

function row(r: ScenarioResult): string[] {
  return [
    sizeLabel(r.entryBytes),
    String(r.producers),
    r.target,
    r.mode,
    r.appendsPerSec.toFixed(0),
    r.mbPerSec.toFixed(2),
    r.latencyMs.p50.toFixed(2),
    r.latencyMs.p99.toFixed(2),
    r.latencyMs.p999.toFixed(2),
    r.latencyMs.max.toFixed(2),
    String(r.errors),
  ];
}

function describeScenario(r: ScenarioResult): string {
  const lines = [table(HEADER, [row(r)])];
  const codes = Object.entries(r.errorsByCode).sort((a, b) => b[1] - a[1]);
  lines.push(`errors: ${codes.length === 0 ? 'none' : codes.map(([k, n]) => `${k} x${n}`).join(', ')}` + (r.warmupErrors ? ` (and ${r.warmupErrors} during warm-up)` : ''));
  if (r.perSecond.length > 1) lines.push(`appends per second of the window: ${r.perSecond.join(' ')}`);
  const procs = Object.entries(r.cpu.processCpuPct).map(([k, v]) => `${k}${k === r.leader ? ' (leader)' : ''} ${v.toFixed(0)}%`);
  lines.push(
    `cpu (% of one core, measured window): driver ${r.cpu.driverCpuPct.toFixed(0)}% (event loop busy ${r.cpu.driverElPct.toFixed(0)}%)` + (procs.length ? `, ${procs.join(', ')}` : ''),
  );
  const rss = Object.entries(r.rssMiB).map(([k, v]) => `${k} ${v} MiB`);
  if (rss.length) lines.push(`replica RSS after the scenario: ${rss.join(', ')}`);
  lines.push(
    `check: ${r.check.ackedTotal} appends acked in the scenario, leader's committedId + 1 = ${r.check.committedEntries}` +
      (r.check.ok ? (r.check.ackedTotal === r.check.committedEntries ? ' (equal)' : ' (more committed than acked: failed appends that were applied)') : ' -- FEWER COMMITTED THAN ACKED'),
  );
  return lines.join('\n');
}

/** The last lines of each replica's log, and how many warn/error lines each wrote. */
function replicaLogReport(cluster: LocalCluster, tailLines: number): string {
  const out: string[] = [];
  for (const r of cluster.replicas) {
    const file = join(cluster.dataDir, `${r.id}.log`);
    if (!existsSync(file)) continue;
    const lines = readFileSync(file, 'utf8').split('\n').filter((l) => l.length > 0);
    if (lines.length === 0) continue;
    out.push(`--- ${r.id}.log: ${lines.length} lines (log level warn); last ${Math.min(tailLines, lines.length)}:`);
    for (const l of lines.slice(-tailLines)) out.push(l.length > 400 ? l.slice(0, 400) + '...' : l);
  }
  return out.join('\n');
}

// ---------------------------------------------------------------------------
// Main

async function main(argv: string[]): Promise<number> {
  const opts = optionsOrExitCode('append-bench', USAGE, () => parseOptions(argv));
  if (typeof opts === 'number') return opts;
  const progress = (line: string) => console.error(line);
  const m = machine();
  progress(`machine: ${m.cpus} x ${m.cpuModel}, ${m.totalMemGiB} GiB, node ${m.node}, ${m.platform}`);

  const abort = new AbortController();
  let cluster: LocalCluster | undefined;
  let dataDir: string | undefined;
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      progress(`\n${sig}: stopping the run and the cluster (again to force)`);
      abort.abort();
      return;
    }
    // Forced: kill what we started (also while the cluster is still starting) and leave at once.
    for (const pid of new Set([...ownChildren(), ...(cluster ? Object.values(clusterPids(cluster)) : [])])) {
      try {
        if (pid) process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const results: ScenarioResult[] = [];
  let failed = false;
  try {
    dataDir = mkdtempSync(join(os.tmpdir(), 'tern-bench-'));
    progress(`starting etcd, s3rver and 3 replicas (data in ${dataDir})`);
    const startedAt = performance.now();
    // Run Tern as users run it: with its object store, flushing as it goes.
    const starting = LocalCluster.start({ dataDir, ...(await freeClusterPorts()), replicaArgs: REPLICA_ARGS, auth: opts.auth, tls: opts.tls });
    const started = await startedUnlessAborted(starting, abort.signal);
    if (started === 'aborted') return 130;
    cluster = started;
    // The helpers that create logs and read them back (bench/lib/http.ts) go through undici's global dispatcher.
    if (cluster.tls) setGlobalDispatcher(new Agent({ connect: { ca: cluster.tls.caPem } }));
    progress(`cluster ready in ${((performance.now() - startedAt) / 1000).toFixed(1)} s: ${cluster.replicas.map((r) => `${r.id} ${r.clientUrl}`).join(', ')}`);
    const c = cluster;
    const exited: string[] = [];
    for (const r of c.replicas) r.process.once('exit', (code, sig) => exited.push(`${r.id} exited (${sig ?? code})`));

    const modes: Mode[] = opts.idempotent ? ['plain', 'idempotent'] : ['plain'];
    for (const size of opts.sizes) {
      for (const mode of modes) {
        if (abort.signal.aborted) break;
        const r = await runScenario(c, { size, producers: opts.producers, target: opts.target, mode, warmupS: opts.warmupS, durationS: opts.durationS }, abort.signal, progress);
        results.push(r);
        if (!opts.json) console.log(`\n${describeScenario(r)}\n`);
        else progress(`  ${r.appendsPerSec.toFixed(0)} appends/s, ${r.mbPerSec.toFixed(2)} MB/s, p50 ${r.latencyMs.p50} ms, p99 ${r.latencyMs.p99} ms, p99.9 ${r.latencyMs.p999} ms, ${r.errors} errors`);
        if (exited.length) throw new Error(`replica died during the run: ${exited.join(', ')}`);
      }
    }
    if (abort.signal.aborted) return 130;

    if (opts.json) {
      console.log(JSON.stringify({ machine: m, options: opts, replicaArgs: REPLICA_ARGS, scenarios: results }, null, 2));
    } else {
      console.log(`machine: ${m.cpus} x ${m.cpuModel}, node ${m.node}; driver, 3 replicas and etcd share it`);
      console.log(`warm-up ${opts.warmupS} s, measured ${opts.durationS} s per scenario; MB/s = 10^6 entry bytes/s; latency = client-side ack latency\n`);
      console.log(table(HEADER, results.map(row)));
    }
    return results.some((r) => !r.check.ok) ? 1 : 0;
  } catch (err) {
    if (abort.signal.aborted) return 130;
    failed = true;
    console.error(`append-bench: failed: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  } finally {
    if (cluster && (failed || results.some((r) => r.errors > 0))) console.error(replicaLogReport(cluster, 20));
    if (cluster) await cluster.stop().catch((err) => console.error(`append-bench: stopping the cluster: ${(err as Error).message}`));
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

runCommand('append-bench', main);
