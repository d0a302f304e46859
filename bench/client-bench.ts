/**
 * The client benchmark: appends/s from one client (`tern/client`) with its
 * client-side batching, against the same load sent one append per request.
 *
 *   npm run bench:client -- [--duration S] [--warmup S] [--outstanding 1,64,512]
 *                           [--size 1024] [--out bench/results]
 *
 * Starts a local cluster (etcd, s3rver, three replicas, as `tern cluster`),
 * and for each level of outstanding appends N runs two closed loops of N
 * callers, each on a log of its own, both through the client, both to the
 * log's leader:
 * - batched: one producer (idempotent, the default: its producer id and
 *   sequence on every request); concurrent appends share requests (those
 *   made while one is in flight form the next; up to 1000 entries / 1 MiB);
 * - unbatched: a producer with batches of one entry, not idempotent, up to N
 *   requests in flight: one append per request, as curl or a naive client sends.
 * Every caller awaits its append's id, then appends again. Latency is from
 * the call of `append` to its id. One run per row; the driver shares the
 * machine's two cores with the replicas. Writes `<out>/<date>-client.md`.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { LocalCluster, freeClusterPorts } from '../src/cli/local-cluster.js';
import { createClient, type ProducerOptions, type TernClient } from '../src/client/index.js';
import { markdownTable, round1, round2, sizeLabel, table } from './lib/format.js';
import { UsageError, numberFlag, optionsOrExitCode, parseFlags } from './lib/flags.js';
import { machine } from './lib/proc.js';

const USAGE = `Usage: npm run bench:client -- [options]
  --duration S          measured seconds per row (default 5)
  --warmup S            warm-up seconds per row, not counted (default 1)
  --outstanding A,B,..  concurrent appends awaited at once, one pair of rows each (default 1,64,512)
  --size BYTES          entry size (default 1024)
  --out DIR             where the report goes (default bench/results)`;

/** As the append benchmark: quiet logs, and a buffer the run never fills. */
const REPLICA_ARGS = ['--log-level', 'warn', '--max-buffer-bytes', String(3 * 1024 ** 3)];

interface Options {
  durationS: number;
  warmupS: number;
  outstanding: number[];
  size: number;
  out: string;
}

interface Row {
  outstanding: number;
  mode: 'batched' | 'unbatched';
  appendsPerS: number;
  mbPerS: number;
  p50Ms: number;
  p99Ms: number;
  entriesPerRequest: number;
  errors: number;
}

function parseOptions(argv: readonly string[]): Options | 'help' {
  const v = parseFlags(argv, ['duration', 'warmup', 'outstanding', 'size', 'out']);
  if (v.help) return 'help';
  const s = (n: string) => v[n] as string | undefined;
  const outstanding = (s('outstanding') ?? '1,64,512').split(',').map((x) => numberFlag('outstanding', x.trim(), 1, 1, 10_000, true));
  if (outstanding.length === 0) throw new UsageError('--outstanding needs at least one level');
  return {
    durationS: numberFlag('duration', s('duration'), 5, 0.1, 3600, false),
    warmupS: numberFlag('warmup', s('warmup'), 1, 0, 600, false),
    outstanding,
    size: numberFlag('size', s('size'), 1024, 1, 1024 * 1024, true),
    out: s('out') ?? 'bench/results',
  };
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** N callers appending in a closed loop through one producer for warm-up + duration; figures over the measured window. */
async function runRow(client: TernClient, log: string, n: number, mode: Row['mode'], payload: Buffer, o: Options): Promise<Row> {
  await client.createLog(log);
  const options: ProducerOptions = mode === 'batched' ? {} : { idempotent: false, maxBatchEntries: 1, maxInFlight: n, lingerMs: 0 };
  const producer = client.producer(log, options);
  const start = performance.now();
  const measureFrom = start + o.warmupS * 1000;
  const end = measureFrom + o.durationS * 1000;
  const latencies: number[] = [];
  let errors = 0;
  let batchesAtStart = 0;
  let appendsAtStart = 0;
  const caller = async () => {
    for (;;) {
      const t0 = performance.now();
      if (t0 >= end) return;
      try {
        await producer.append(payload);
        const t1 = performance.now();
        if (t0 >= measureFrom && t1 <= end) latencies.push(t1 - t0);
      } catch {
        errors++;
      }
    }
  };
  const snapshot = setTimeout(() => {
    batchesAtStart = producer.stats.batches;
    appendsAtStart = producer.stats.appended;
  }, o.warmupS * 1000);
  await Promise.all(Array.from({ length: n }, caller));
  clearTimeout(snapshot);
  await producer.close();
  latencies.sort((a, b) => a - b);
  const perS = latencies.length / o.durationS;
  const batches = producer.stats.batches - batchesAtStart;
  return {
    outstanding: n,
    mode,
    appendsPerS: Math.round(perS),
    mbPerS: round1((perS * payload.length) / 1e6),
    p50Ms: round2(percentile(latencies, 50)),
    p99Ms: round2(percentile(latencies, 99)),
    entriesPerRequest: round1((producer.stats.appended - appendsAtStart) / Math.max(1, batches)),
    errors,
  };
}

async function main(): Promise<number> {
  const o = optionsOrExitCode('bench:client', USAGE, () => parseOptions(process.argv.slice(2)));
  if (typeof o === 'number') return o;
  const dataDir = mkdtempSync(join(tmpdir(), 'tern-client-bench-'));
  const cluster = await LocalCluster.start({ dataDir, ...(await freeClusterPorts()), replicaArgs: REPLICA_ARGS });
  const client = createClient(cluster.replicas.map((r) => r.clientUrl), { connections: Math.max(16, ...o.outstanding) });
  const rows: Row[] = [];
  try {
    const payload = randomBytes(o.size);
    for (const n of o.outstanding) {
      for (const mode of ['batched', 'unbatched'] as const) {
        console.error(`bench:client: ${n} outstanding, ${mode}...`);
        rows.push(await runRow(client, `${mode}-${n}`, n, mode, payload, o));
      }
    }
  } finally {
    await client.close();
    await cluster.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
  const header = ['outstanding', 'mode', 'appends/s', 'MB/s', 'p50 ms', 'p99 ms', 'entries/request', 'errors', 'batched / unbatched'];
  const cells = rows.map((r) => {
    const other = rows.find((x) => x.outstanding === r.outstanding && x.mode === 'unbatched')!;
    return [String(r.outstanding), r.mode, String(r.appendsPerS), String(r.mbPerS), String(r.p50Ms), String(r.p99Ms), String(r.entriesPerRequest), String(r.errors), r.mode === 'batched' ? `${round1(r.appendsPerS / Math.max(1, other.appendsPerS))}x` : ''];
  });
  console.log(table(header, cells));
  const date = new Date().toISOString().slice(0, 10);
  const m = machine();
  const report = `# Client benchmark, ${date}

\`npm run bench:client -- --duration ${o.durationS} --warmup ${o.warmupS} --outstanding ${o.outstanding.join(',')} --size ${o.size}\`: one client
(\`tern/client\`) appending ${sizeLabel(o.size)} entries to a local cluster (etcd, s3rver, three replicas, default
settings but \`--max-buffer-bytes 3 GiB\`) on this machine (${m.cpus} x ${m.cpuModel}, Node ${process.version}), the
driver sharing the cores with the replicas. One run per row, ${o.durationS} s measured after ${o.warmupS} s of warm-up,
each row on a log of its own. *outstanding*: callers in a closed loop, each awaiting its append's id before
the next. *batched*: one idempotent producer at its defaults (producer id and sequence on every request; one
request in flight, the appends made meanwhile forming the next, up to 1000 entries or 1 MiB; no linger). *unbatched*: the same callers through a
producer with batches of one entry (not idempotent, as many requests in flight as callers): one append per
request. Latency is from \`append()\` to its id.

${markdownTable(header, cells, 2)}
`;
  const file = join(o.out, `${date}-client.md`);
  writeFileSync(file, report);
  console.error(`bench:client: wrote ${file}`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error('bench:client:', err instanceof Error ? (err.stack ?? err.message) : err);
    process.exit(1);
  },
);
