/**
 * The streaming-tail benchmark: how long an appended entry takes to reach a
 * reader that follows the log (GET entries?follow=true), on the leader and on
 * a follower, under a light open-loop load.
 *
 *   npm run bench:tail -- [--duration S] [--warmup S] [--rate N] [--size B] [--runs N]
 *                         [--json] [-- REPLICA FLAGS]
 *
 * It starts a local cluster as bench/append-bench.ts does (etcd, s3rver and
 * three replica processes on loopback, flushing as they go), and for each run
 * creates a log, opens one stream on its leader and one on a follower, and
 * appends `--rate` entries a second of `--size` bytes to the leader (open
 * loop: each append is sent at its scheduled time, whatever the others do;
 * 8 connections). Each entry carries its sequence number in its first bytes;
 * latency is measured from just before its append request is sent to the
 * moment each reader has decoded it (append-to-reader), and to the append's
 * 200 (ack latency, for comparison). Recorded in microseconds in HDR
 * histograms over the measured window; the report gives p50/p99/p99.9/max of
 * each, entries missing from either stream (must be 0), and the machine's
 * load average and CPU use at the time (the run shares the machine with
 * whatever else runs on it).
 *
 * Exit codes: 0 done, 1 the cluster or the run failed (or an entry went
 * missing), 2 bad flags, 130 interrupted. The temp data dir is removed in
 * every case.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { LocalCluster, freeClusterPorts } from '../src/cli/local-cluster.js';
import { table } from './lib/format.js';
import { createLog } from './lib/http.js';
import { TailProbe, STAMP_BYTES, latencyFigures, openTernReaders, type LatencyFigures } from './lib/tail-latency.js';
import { HttpTarget } from './lib/targets.js';
import { cpuFigures, cpuSnapshot, machine, runCommand, startedUnlessAborted } from './lib/proc.js';
import { numberFlag, optionsOrExitCode, parseFlags } from './lib/flags.js';

const USAGE = `Usage: node dist/bench/tail-bench.js [options] [-- REPLICA FLAGS]   (or: npm run bench:tail -- [options])
  --duration S   measured seconds per run (default 20)
  --warmup S     warm-up seconds per run, not counted (default 2)
  --rate N       appends per second, open loop (default 200)
  --size B       entry bytes (default 1024, at least ${STAMP_BYTES})
  --runs N       runs, each on a log of its own on the same cluster (default 3)
  --json         print the results as JSON on stdout (progress stays on stderr)
  -h, --help     this text
Flags after -- go to every replica (an A/B comparison of a replica setting).`;

const REPLICA_ARGS = ['--log-level', 'warn'];
/** Connections to the leader that carry the appends: enough that an open loop at a light rate never queues behind one. */
const APPEND_CONNECTIONS = 8;
/** How long the streams get to deliver the last entries after the last ack. */
const DRAIN_MS = 3_000;

interface Options {
  durationS: number;
  warmupS: number;
  rate: number;
  size: number;
  runs: number;
  json: boolean;
  replicaArgs: string[];
}

function parseOptions(argv: readonly string[]): Options | 'help' {
  const dashes = argv.indexOf('--');
  const own = dashes < 0 ? argv : argv.slice(0, dashes);
  const replicaArgs = dashes < 0 ? [] : argv.slice(dashes + 1);
  const values = parseFlags(own, ['duration', 'warmup', 'rate', 'size', 'runs'], ['json']);
  if (values.help) return 'help';
  const str = (name: string) => values[name] as string | undefined;
  return {
    durationS: numberFlag('duration', str('duration'), 20, 1, 3600, false),
    warmupS: numberFlag('warmup', str('warmup'), 2, 0, 600, false),
    rate: numberFlag('rate', str('rate'), 200, 1, 20_000, false),
    size: numberFlag('size', str('size'), 1024, STAMP_BYTES, 1024 * 1024, true),
    runs: numberFlag('runs', str('runs'), 3, 1, 100, true),
    json: values.json === true,
    replicaArgs,
  };
}

interface RunResult {
  run: number;
  log: string;
  leader: string;
  follower: string;
  appends: number;
  errors: number;
  ack: LatencyFigures;
  leaderTail: LatencyFigures;
  followerTail: LatencyFigures;
  /** Entries acked but never seen by the stream (must be 0). */
  missing: { leader: number; follower: number };
  loadAvg: { before: number[]; after: number[] };
  cpu: Record<string, number>;
}

async function runOnce(cluster: LocalCluster, run: number, opts: Options, signal: AbortSignal, progress: (line: string) => void): Promise<RunResult> {
  const log = `tail-bench-${run}`;
  const leader = await createLog(cluster.replicas[0]!.clientUrl, log, signal);
  const follower = cluster.replicas.find((r) => r.id !== leader)!.id;
  progress(`run ${run}: log ${log}, leader ${leader}, follower stream on ${follower}; ${opts.rate}/s of ${opts.size} B for ${opts.warmupS} + ${opts.durationS} s`);

  const probe = new TailProbe(opts.size);
  const readers = await openTernReaders(
    log,
    [
      { name: 'leader', url: cluster.replica(leader).clientUrl },
      { name: 'follower', url: cluster.replica(follower).clientUrl },
    ],
    probe,
  );
  const target = HttpTarget.open([cluster.replica(leader).clientUrl], `/v1/logs/${log}/entries`, APPEND_CONNECTIONS);
  const send = (entry: Buffer) => target.append(entry);
  const total = Math.ceil((opts.warmupS + opts.durationS) * opts.rate);
  const warmup = Math.floor(opts.warmupS * opts.rate);
  let errors = 0;
  const inFlight: Promise<void>[] = [];
  const pids: Record<string, number | undefined> = Object.fromEntries(cluster.replicas.map((r) => [r.id, r.process.pid]));
  const loadBefore = os.loadavg();
  let cpuBefore = cpuSnapshot(pids);
  const t0 = performance.now();
  let measureFrom = t0;
  for (let k = 0; k < total && !signal.aborted; k++) {
    const due = t0 + (k * 1000) / opts.rate;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    if (k === warmup) {
      cpuBefore = cpuSnapshot(pids);
      measureFrom = performance.now();
    }
    inFlight.push(probe.append(send).catch(() => void errors++));
    if (inFlight.length > 1000) await Promise.all(inFlight.splice(0, 500));
  }
  await Promise.all(inFlight);
  const cpuAfter = cpuSnapshot(pids);
  const loadAfter = os.loadavg();
  await probe.drain(DRAIN_MS, signal);
  await readers.close();
  await target.close();
  const cpu = cpuFigures(cpuBefore, cpuAfter);
  const f = probe.figures(measureFrom);
  return {
    run,
    log,
    leader,
    follower,
    appends: probe.acked,
    errors,
    ack: latencyFigures(f.ack),
    leaderTail: latencyFigures(f.readers.get('leader')!),
    followerTail: latencyFigures(f.readers.get('follower')!),
    missing: { leader: probe.missing('leader'), follower: probe.missing('follower') },
    loadAvg: { before: loadBefore.map((x) => Math.round(x * 100) / 100), after: loadAfter.map((x) => Math.round(x * 100) / 100) },
    cpu: { driver: Math.round(cpu.driverCpuPct), ...Object.fromEntries(Object.entries(cpu.processCpuPct).map(([k, v]) => [k, Math.round(v)])) },
  };
}

const HEADER = ['run', 'what', 'p50 ms', 'p99 ms', 'p99.9 ms', 'max ms', 'samples'];

function rows(r: RunResult): string[][] {
  const line = (what: string, f: LatencyFigures) => [String(r.run), what, f.p50.toFixed(2), f.p99.toFixed(2), f.p999.toFixed(2), f.max.toFixed(2), String(f.count)];
  return [line('append ack', r.ack), line(`reader on leader (${r.leader})`, r.leaderTail), line(`reader on follower (${r.follower})`, r.followerTail)];
}

async function main(argv: string[]): Promise<number> {
  const opts = optionsOrExitCode('tail-bench', USAGE, () => parseOptions(argv));
  if (typeof opts === 'number') return opts;
  const progress = (line: string) => console.error(line);
  const m = machine();
  progress(`machine: ${m.cpus} x ${m.cpuModel}, node ${m.node}; load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  const abort = new AbortController();
  const onSignal = () => abort.abort();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const dataDir = mkdtempSync(join(os.tmpdir(), 'tern-tail-bench-'));
  let cluster: LocalCluster | undefined;
  const results: RunResult[] = [];
  try {
    const started = await startedUnlessAborted(LocalCluster.start({ dataDir, ...(await freeClusterPorts()), replicaArgs: [...REPLICA_ARGS, ...opts.replicaArgs] }), abort.signal);
    if (started === 'aborted') return 130;
    cluster = started;
    for (let run = 1; run <= opts.runs && !abort.signal.aborted; run++) {
      const r = await runOnce(cluster, run, opts, abort.signal, progress);
      results.push(r);
      if (!opts.json) console.log(`${table(HEADER, rows(r))}\n  ${r.appends} appends acked, ${r.errors} errors, missing: leader ${r.missing.leader}, follower ${r.missing.follower}; load average ${r.loadAvg.before.join(' ')} -> ${r.loadAvg.after.join(' ')}; cpu % ${JSON.stringify(r.cpu)}\n`);
    }
    if (abort.signal.aborted) return 130;
    if (opts.json) console.log(JSON.stringify({ machine: m, options: opts, results }, null, 2));
    return results.some((r) => r.missing.leader + r.missing.follower > 0) ? 1 : 0;
  } catch (err) {
    if (abort.signal.aborted) return 130;
    console.error(`tail-bench: failed: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  } finally {
    if (cluster) await cluster.stop().catch((err) => console.error(`tail-bench: stopping the cluster: ${(err as Error).message}`));
    rmSync(dataDir, { recursive: true, force: true });
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

runCommand('tail-bench', main);
