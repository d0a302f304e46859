/**
 * Side-by-side benchmark (issue "Benchmark side by side: Tern against NATS
 * JetStream"): the same driver, workload and histogram against
 *
 * - tern-leader: a local Tern cluster as users run it (LocalCluster: etcd,
 *   s3rver as the object store, three replica processes at default settings,
 *   logs at the default level into files), every append sent to the log's
 *   leader;
 * - tern-spread: the same cluster, appends round-robin over the three
 *   replicas (two thirds are forwarded to the leader);
 * - nats: a three-node NATS cluster with JetStream (one nats-server process
 *   per node, each with its own config file), a memory stream with
 *   num_replicas 3; js.publish() resolves with the PubAck once the stream's
 *   quorum holds the message, which is the ack compared with Tern's 200;
 * - nats-spread: the same stream, published to round-robin over connections
 *   to the three nodes, as tern-spread is to tern-leader;
 * - ceiling: a fastify process answering every append at once
 *   (bench/ceiling-server.ts): what HTTP alone costs.
 *
 *   npm run bench:compare -- [--duration S] [--open-duration S] [--warmup S] [--runs N]
 *       [--scenarios 1k-64p,64k-16p,1k-1p,open-1k,batch-100x1k] [--rate N]
 *       [--systems tern-leader,tern-spread,nats,nats-spread,ceiling] [--out DIR]
 *
 * Opt-in: --scenarios tail-light,tail-1k-64p measure append-to-reader latency
 * (bench/lib/tail-latency.ts) at a reader on the leader and one on a follower
 * (Tern: follow=true streams; NATS: ordered push consumers from the stream
 * leader's node and another node), beside the ack; a reader that misses an
 * acked entry fails the run. The ceiling sits them out.
 *
 * For each scenario, the systems take turns (tern-leader, tern-spread, nats,
 * ceiling, then again, --runs times), each run with its own warm-up; the
 * table has the median of the runs. After each run the system settles (Tern
 * flushes what it committed into s3rver; the NATS stream is purged) so that
 * its background work does not land in the next system's run. Nothing is
 * pinned to a CPU: every process shares every core, which the output says.
 *
 * Writes <out>/<YYYY-MM-DD>.md (tables, machine, versions, flags) and
 * <out>/<YYYY-MM-DD>-<scenario>.svg (latency CDF per system, runs merged);
 * <out> defaults to bench/results/ in the project.
 *
 * Exit codes: 0 done, 1 a system failed or acked less than it holds, 2 bad
 * flags or no nats-server, 130 interrupted. Every process started (Tern
 * cluster, NATS nodes, ceiling) and the temp dir are gone in every case.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, relative, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type { Histogram } from 'hdr-histogram-js';
import { LocalCluster, freeClusterPorts } from '../src/cli/local-cluster.js';
import { freePort, stopChild, waitForHttp } from '../src/cli/processes.js';
import { REPLICA_NODE_FLAGS } from '../src/replica/node-flags.js';
import { markdownTable, median, ms, round1, round2, table } from './lib/format.js';
import { NATS_INSTALL_HINT, NatsCluster, ensureNatsServer } from './lib/nats-cluster.js';
import { objectStoreDir, type ObjectStoreDir } from './lib/object-store-dir.js';
import { machine, ownChildren, runCommand, signalPids, startedUnlessAborted, stopOwnChildren } from './lib/proc.js';
import { cdfSvg, type CdfSeries } from './lib/svg.js';
import { CeilingSystem, NatsSystem, TernSystem } from './lib/systems.js';
import { SYSTEM_NAMES, type System, type SystemName } from './lib/targets.js';
import { TailProbe, latencyFigures, type LatencyFigures, type TailReaders } from './lib/tail-latency.js';
import { DEFAULT_RATE, MAX_OUTSTANDING, TAIL_LIGHT_RATE, newHistogram, runScenario, scenarios, tailScenarios, type Scenario } from './lib/workload.js';
import { UsageError, numberFlag, optionsOrExitCode, parseFlags } from './lib/flags.js';
import { PROJECT_ROOT, ternVersion } from './lib/project.js';

const DEFAULT_SCENARIO_IDS = scenarios(DEFAULT_RATE).map((s) => s.id);
/**
 * The tail scenarios are opt-in: with three systems and three runs they add about 4.5 min
 * (tail-light's open loop measures --open-duration) to a default run of about 5.
 */
const TAIL_SCENARIO_IDS = tailScenarios().map((s) => s.id);
const ALL_SCENARIO_IDS = [...DEFAULT_SCENARIO_IDS, ...TAIL_SCENARIO_IDS];
/** How long the readers of a tail scenario get, after the run's last ack, to deliver the entries they have not yet. */
const TAIL_DRAIN_MS = 5_000;

/**
 * An open loop's p99 at 5,000/s over 5 s rests on the worst 250 samples, about 50 ms of
 * the run: one flush or GC pause decides it, and run-to-run it swung 4x for both systems
 * (2026-11-30). 20 s gives 1,000 samples and spans both systems' background work.
 */
const DEFAULT_OPEN_DURATION_S = 20;

const USAGE = `Usage: node dist/bench/compare.js [options]   (or: npm run bench:compare -- [options])
  --duration S       measured seconds per closed-loop run (default 5)
  --open-duration S  measured seconds per open-loop run (default ${DEFAULT_OPEN_DURATION_S}): long enough for p99 to rest
                     on ~1,000 samples and to span each system's periodic background work
  --warmup S         warm-up seconds before each run, not counted (default 2)
  --runs N           runs per (system, scenario); the table has their median (default 3)
  --scenarios LIST   comma-separated, from: ${ALL_SCENARIO_IDS.join(', ')}
                     (default: ${DEFAULT_SCENARIO_IDS.join(',')}). Opt-in: ${TAIL_SCENARIO_IDS.join(', ')}, append-to-reader
                     latency at a reader following the log on the leader and on a follower (NATS: ordered push
                     consumers), ${TAIL_LIGHT_RATE}/s open loop and 1 KiB x 64 closed loop; ceiling sits them out
  --rate N           appends/s of the open-loop scenario (default ${DEFAULT_RATE})
  --systems LIST     comma-separated, from: ${SYSTEM_NAMES.join(', ')} (default all)
  --out DIR          where the report and plots go (default bench/results)
  -h, --help         this text`;

/** Room on tmpfs for Tern's objects: a 5-run comparison stored about 9 GB on 2026-11-30 (they stay until the end). */
const COMPARE_STORE_BYTES = 16 * 1024 ** 3;
/** Per-node memory store limit of the NATS nodes (each run's messages are purged after it). */
const NATS_MAX_MEMORY_STORE = 3 * 1024 ** 3;

const COLORS: Record<SystemName, { color: string; dashed?: boolean }> = {
  'tern-leader': { color: '#1f77b4' },
  'tern-spread': { color: '#9467bd' },
  nats: { color: '#2ca02c' },
  'nats-spread': { color: '#98df8a' },
  ceiling: { color: '#7f7f7f', dashed: true },
};

interface Options {
  durationS: number;
  openDurationS: number;
  warmupS: number;
  runs: number;
  scenarios: string[];
  rate: number;
  systems: SystemName[];
  out: string;
}

function parseOptions(argv: readonly string[]): Options | 'help' {
  const values = parseFlags(argv, ['duration', 'open-duration', 'warmup', 'runs', 'scenarios', 'rate', 'systems', 'out']);
  if (values.help) return 'help';
  const str = (name: string) => values[name] as string | undefined;
  const number = (flag: string, def: number, min: number, max: number, integer: boolean) => numberFlag(flag, str(flag), def, min, max, integer);
  const list = <T extends string>(flag: string, raw: string | undefined, all: readonly T[], defaults: readonly T[] = all): T[] => {
    if (raw === undefined) return [...defaults];
    const items = raw.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
    for (const i of items) if (!all.includes(i as T)) throw new UsageError(`--${flag}: unknown "${i}" (known: ${all.join(', ')})`);
    if (items.length === 0) throw new UsageError(`--${flag} needs at least one of: ${all.join(', ')}`);
    // Keep the canonical order (the systems alternate in it) and drop repeats.
    return all.filter((a) => items.includes(a));
  };
  return {
    durationS: number('duration', 5, 0.1, 3600, false),
    openDurationS: number('open-duration', DEFAULT_OPEN_DURATION_S, 0.1, 3600, false),
    warmupS: number('warmup', 2, 0, 600, false),
    runs: number('runs', 3, 1, 100, true),
    scenarios: list('scenarios', str('scenarios'), ALL_SCENARIO_IDS, DEFAULT_SCENARIO_IDS),
    rate: number('rate', DEFAULT_RATE, 1, 1_000_000, true),
    systems: list('systems', str('systems'), SYSTEM_NAMES),
    out: resolve(str('out') ?? join(PROJECT_ROOT, 'bench', 'results')),
  };
}

/** Measured seconds of one run of `sc`. */
function windowS(sc: Scenario, o: Options): number {
  return sc.kind === 'open' ? o.openDurationS : o.durationS;
}

function flagsLine(o: Options): string {
  return `--duration ${o.durationS} --open-duration ${o.openDurationS} --warmup ${o.warmupS} --runs ${o.runs} --rate ${o.rate} --scenarios ${o.scenarios.join(',')} --systems ${o.systems.join(',')}`;
}

// ---------------------------------------------------------------------------
// The ceiling server

async function startCeiling(dir: string): Promise<{ url: string; process: ChildProcess }> {
  const port = await freePort();
  const script = fileURLToPath(new URL('./ceiling-server.js', import.meta.url));
  const log = openSync(join(dir, 'ceiling.log'), 'a');
  // With a replica's node flags: the ceiling differs from Tern by the work it skips, not by its runtime.
  const child = spawn(process.execPath, [...REPLICA_NODE_FLAGS, script, '--port', String(port)], { stdio: ['ignore', log, log] });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitForHttp(`${url}/healthz`, 20_000, child);
  } catch (err) {
    await stopChild(child, 'SIGKILL');
    throw err;
  }
  return { url, process: child };
}

// ---------------------------------------------------------------------------
// Results

interface RunRecord {
  appendsPerSec: number;
  entriesPerSec: number;
  mbPerSec: number;
  p50: number;
  p99: number;
  p999: number;
  errors: number;
  warmupErrors: number;
  errorsByCode: Record<string, number>;
  /** Sum over the system's server processes, % of one core; NaN when /proc was not readable. */
  serverCpuPct: number;
  driverCpuPct: number;
  driverElPct: number;
  settleNote?: string;
}

/** A tail scenario's run: latency of the ack and of each reader ("ack", "reader@leader", ...), and entries each reader missed. */
interface TailRunRecord {
  latency: Record<string, LatencyFigures>;
  missing: Record<string, number>;
}

interface Cell {
  system: SystemName;
  scenario: Scenario;
  runs: RunRecord[];
  merged: Histogram;
  /** Tail scenarios: per run, and each reader's histogram over the runs (for the CDF). */
  tailRuns: TailRunRecord[];
  tailMerged: Map<string, Histogram>;
}

/** Medians over a cell's runs (errors summed). */
type Summary = Omit<RunRecord, 'warmupErrors' | 'errorsByCode' | 'settleNote'>;

function summarize(c: Cell): Summary {
  const m = (f: (r: RunRecord) => number) => median(c.runs.map(f));
  return {
    appendsPerSec: m((r) => r.appendsPerSec),
    entriesPerSec: m((r) => r.entriesPerSec),
    mbPerSec: m((r) => r.mbPerSec),
    p50: m((r) => r.p50),
    p99: m((r) => r.p99),
    p999: m((r) => r.p999),
    errors: c.runs.reduce((a, r) => a + r.errors, 0),
    serverCpuPct: m((r) => r.serverCpuPct),
    driverCpuPct: m((r) => r.driverCpuPct),
    driverElPct: m((r) => r.driverElPct),
  };
}

const HEADER = ['system', 'scenario', 'appends/s', 'entries/s', 'MB/s', 'p50 ms', 'p99 ms', 'p99.9 ms', 'errors', 'server CPU%', 'driver CPU%', 'driver loop%'];

function fmt(x: number, digits: number): string {
  return Number.isNaN(x) ? '-' : x.toFixed(digits);
}

function resultRows(cells: Cell[]): string[][] {
  return cells.filter((c) => !c.scenario.tail).map((c) => {
    const s = summarize(c);
    return [
      c.system,
      c.scenario.id,
      fmt(s.appendsPerSec, 0),
      fmt(s.entriesPerSec, 0),
      fmt(s.mbPerSec, 2),
      fmt(s.p50, 2),
      fmt(s.p99, 2),
      fmt(s.p999, 2),
      String(s.errors),
      fmt(s.serverCpuPct, 0),
      fmt(s.driverCpuPct, 0),
      fmt(s.driverElPct, 0),
    ];
  });
}

const RATIO_HEADER = ['scenario', 'leader/NATS thr', 'leader/NATS p99', 'spread/NATS thr', 'spread/NATS p99', 'spread/NATS-spread thr', 'spread/NATS-spread p99', 'leader/ceiling thr'];

function ratioRows(cells: Cell[], scenarioIds: string[]): string[][] {
  const get = (sys: SystemName, sc: string) => {
    const c = cells.find((x) => x.system === sys && x.scenario.id === sc);
    return c ? summarize(c) : undefined;
  };
  const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined || !(b > 0) || Number.isNaN(a) ? '-' : (a / b).toFixed(2));
  return scenarioIds.map((sc) => {
    const leader = get('tern-leader', sc);
    const spread = get('tern-spread', sc);
    const nats = get('nats', sc);
    const natsSpread = get('nats-spread', sc);
    const ceiling = get('ceiling', sc);
    return [
      sc,
      ratio(leader?.entriesPerSec, nats?.entriesPerSec),
      ratio(leader?.p99, nats?.p99),
      ratio(spread?.entriesPerSec, nats?.entriesPerSec),
      ratio(spread?.p99, nats?.p99),
      ratio(spread?.entriesPerSec, natsSpread?.entriesPerSec),
      ratio(spread?.p99, natsSpread?.p99),
      ratio(leader?.entriesPerSec, ceiling?.entriesPerSec),
    ];
  });
}

/** A cell's p99 per run for the report: the ack's, and for a tail scenario (from the send) the ack's and each reader's. */
function runsP99(c: Cell): string {
  const perRun = (f: (i: number) => number) => c.runs.map((_, i) => fmt(f(i), 2)).join(' / ');
  if (c.tailRuns.length === 0) return `p99 ms per run ${perRun((i) => c.runs[i]!.p99)}`;
  return `p99 ms per run (from the send): ${Object.keys(c.tailRuns[0]!.latency)
    .map((what) => `${what} ${perRun((i) => c.tailRuns[i]?.latency[what]?.p99 ?? NaN)}`)
    .join(', ')}`;
}

/** One tail run's figures over its measured window; each reader's histogram is merged into the cell's for the CDF. */
function tailRecord(probe: TailProbe, window: { start: number; end: number }, cell: Cell): TailRunRecord {
  const f = probe.figures(window.start, window.end);
  const latency: Record<string, LatencyFigures> = { ack: latencyFigures(f.ack) };
  const missing: Record<string, number> = {};
  for (const [name, h] of f.readers) {
    latency[name] = latencyFigures(h);
    missing[name] = probe.missing(name);
    const merged = cell.tailMerged.get(name) ?? newHistogram();
    merged.add(h);
    cell.tailMerged.set(name, merged);
    h.destroy();
  }
  f.ack.destroy();
  return { latency, missing };
}

/** A reader that missed an acked entry (over the whole run, warm-up included) fails the command. */
function tailCheck(c: Cell): { ok: boolean; line: string } {
  const missed = c.tailRuns.flatMap((r, i) => Object.entries(r.missing).filter(([, n]) => n > 0).map(([reader, n]) => `run ${i + 1} ${reader} ${n}`));
  const readers = Object.keys(c.tailRuns[0]?.missing ?? {});
  return missed.length
    ? { ok: false, line: `${c.system} ${c.scenario.id}: ACKED ENTRIES MISSING at a reader (${missed.join(', ')})` }
    : { ok: true, line: `${c.system} ${c.scenario.id}: ${readers.join(' and ')} saw every acked entry in ${c.tailRuns.length} run(s)` };
}

const TAIL_HEADER = ['system', 'scenario', 'latency of', 'appends/s', 'p50 ms', 'p99 ms', 'p99.9 ms', 'samples', 'missing', 'server CPU%'];

/** Tail scenarios: per (system, scenario), the ack row then one row per reader; medians of the runs, samples and missing summed. */
function tailRows(cells: Cell[]): string[][] {
  const out: string[][] = [];
  for (const c of cells.filter((x) => x.scenario.tail && x.tailRuns.length > 0)) {
    const whats = Object.keys(c.tailRuns[0]!.latency);
    for (const what of whats) {
      const m = (f: (l: LatencyFigures) => number) => median(c.tailRuns.map((r) => f(r.latency[what]!)));
      const samples = c.tailRuns.reduce((n, r) => n + r.latency[what]!.count, 0);
      const missing = what === 'ack' ? '' : String(c.tailRuns.reduce((n, r) => n + (r.missing[what] ?? 0), 0));
      const s = summarize(c);
      const ack = what === 'ack';
      out.push([c.system, c.scenario.id, what, ack ? fmt(s.appendsPerSec, 0) : '', fmt(m((l) => l.p50), 2), fmt(m((l) => l.p99), 2), fmt(m((l) => l.p999), 2), String(samples), missing, ack ? fmt(s.serverCpuPct, 0) : '']);
    }
  }
  return out;
}

function errorLines(cells: Cell[]): string[] {
  const out: string[] = [];
  for (const c of cells) {
    const by: Record<string, number> = {};
    let warmup = 0;
    for (const r of c.runs) {
      warmup += r.warmupErrors;
      for (const [k, n] of Object.entries(r.errorsByCode)) by[k] = (by[k] ?? 0) + n;
    }
    const codes = Object.entries(by).sort((a, b) => b[1] - a[1]);
    if (codes.length === 0 && warmup === 0) continue;
    out.push(`${c.system} ${c.scenario.id}: ${codes.length ? codes.map(([k, n]) => `${k} x${n}`).join(', ') : 'none measured'}${warmup ? ` (and ${warmup} during warm-up)` : ''}`);
  }
  return out;
}

function localDate(d = new Date()): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}

// ---------------------------------------------------------------------------
// Main

async function main(argv: string[]): Promise<number> {
  const opts = optionsOrExitCode('compare', USAGE, () => parseOptions(argv));
  if (typeof opts === 'number') return opts;
  const progress = (line: string) => console.error(line);
  const wants = (s: SystemName) => opts.systems.includes(s);

  let natsVersion = 'not used';
  if (wants('nats') || wants('nats-spread')) {
    const v = ensureNatsServer(progress);
    if (v === 'unavailable') {
      console.error(`compare: ${NATS_INSTALL_HINT}\n(or leave NATS out: --systems tern-leader,tern-spread,ceiling)`);
      return 2;
    }
    natsVersion = v;
  }
  const m = machine();
  const versions = { node: m.node, natsServer: natsVersion, tern: ternVersion() };
  const machineLine = `machine: ${m.cpus} x ${m.cpuModel}, ${m.totalMemGiB} GiB memory, ${m.platform}`;
  const versionLine = `versions: node ${versions.node}, nats-server ${versions.natsServer}, nats.js ${natsJsVersion()}, tern ${versions.tern}`;
  const pinningLine =
    `CPU pinning: none. The driver, Tern (3 replicas, etcd, s3rver), the 3 NATS nodes and the ceiling server all share the ${m.cpus} cores; ` +
    'only the system under test is loaded during a run, the others stay up and idle.';
  progress(machineLine);
  progress(versionLine);
  progress(pinningLine);

  const abort = new AbortController();
  let tempDir: string | undefined;
  let storeDir: ObjectStoreDir | undefined;
  let cluster: LocalCluster | undefined;
  let nats: NatsCluster | undefined;
  let natsSystem: NatsSystem | undefined;
  let ceiling: { url: string; process: ChildProcess } | undefined;
  let signals = 0;
  const forceKill = () => {
    signalPids(new Set([...ownChildren(), ...(cluster ? cluster.describe().replicas.map((r) => r.pid) : []), ...(nats ? Object.values(nats.pids()) : []), ceiling?.process.pid]), 'SIGKILL');
    if (tempDir) rmSync(tempDir, { recursive: true, force: true });
    storeDir?.remove();
  };
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      progress(`\n${sig}: stopping the run and every process started (again to force)`);
      abort.abort();
      return;
    }
    forceKill();
    process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // Last resort (a crash past the finally below): nothing started may outlive this process.
  process.on('exit', forceKill);

  const exited: string[] = [];
  const watch = (name: string, child: ChildProcess) => child.once('exit', (code, sig) => exited.push(`${name} exited (${sig ?? code})`));
  const cells: Cell[] = [];
  const checks: { ok: boolean; line: string }[] = [];
  const notes: string[] = [];
  let failed = false;
  try {
    tempDir = mkdtempSync(join(os.tmpdir(), 'tern-compare-'));
    const systems: System[] = [];

    if (wants('tern-leader') || wants('tern-spread')) {
      storeDir = objectStoreDir('tern-compare-s3-', COMPARE_STORE_BYTES);
      progress(`starting Tern: etcd, s3rver and 3 replicas at default settings (data and replica logs in ${tempDir}/tern, objects on ${storeDir.where})`);
      const t = performance.now();
      const starting = LocalCluster.start({ dataDir: join(tempDir, 'tern'), s3Dir: storeDir.dir, ...(await freeClusterPorts()) });
      const started = await startedUnlessAborted(starting, abort.signal);
      if (started === 'aborted') return 130;
      cluster = started;
      for (const r of cluster.replicas) watch(`tern replica ${r.id}`, r.process);
      progress(`  ready in ${((performance.now() - t) / 1000).toFixed(1)} s: ${cluster.replicas.map((r) => `${r.id} ${r.clientUrl}`).join(', ')}`);
    }
    if (wants('nats') || wants('nats-spread')) {
      progress(`starting NATS: 3 nats-server nodes with JetStream (configs and logs in ${tempDir}/nats)`);
      const t = performance.now();
      nats = await NatsCluster.start({ dir: join(tempDir, 'nats'), maxMemoryStore: NATS_MAX_MEMORY_STORE });
      for (const n of nats.nodes) watch(`nats-server ${n.name}`, n.process);
      natsSystem = await NatsSystem.start(nats, abort.signal);
      progress(`  ready in ${((performance.now() - t) / 1000).toFixed(1)} s: ${nats.nodes.map((n) => `${n.name} ${n.url}`).join(', ')}; stream leader ${natsSystem.streamLeader}`);
    }
    if (wants('ceiling')) {
      ceiling = await startCeiling(tempDir);
      watch('ceiling server', ceiling.process);
      progress(`ceiling server: ${ceiling.url}`);
    }
    for (const name of opts.systems) {
      if (name === 'tern-leader') systems.push(new TernSystem(cluster!, 'leader', abort.signal));
      if (name === 'tern-spread') systems.push(new TernSystem(cluster!, 'spread', abort.signal));
      if (name === 'nats') systems.push(natsSystem!);
      if (name === 'nats-spread') systems.push(natsSystem!.spread());
      if (name === 'ceiling') systems.push(new CeilingSystem(ceiling!.url, ceiling!.process.pid));
    }

    const chosen = [...scenarios(opts.rate), ...tailScenarios()].filter((s) => opts.scenarios.includes(s.id));
    const systemsOf = (sc: Scenario) => (sc.tail ? systems.filter((sys) => sys.openReaders !== undefined) : systems);
    const etaS = chosen.reduce((sum, sc) => sum + opts.runs * systemsOf(sc).length * (opts.warmupS + windowS(sc, opts)), 0);
    progress(`${chosen.length} scenario(s) x ${systems.length} system(s) x ${opts.runs} run(s), ${opts.warmupS} s of warm-up each: at least ${etaS >= 120 ? `${Math.round(etaS / 60)} min` : `${Math.round(etaS)} s`}`);

    for (const sc of chosen) {
      if (abort.signal.aborted) break;
      progress(`\nscenario ${sc.id}: ${sc.title}`);
      const measuredS = windowS(sc, opts);
      const scSystems = systemsOf(sc);
      for (const sys of systems.filter((x) => !scSystems.includes(x))) {
        notes.push(`${sys.name} sits ${sc.id} out: it stores nothing, so there is nothing to read`);
        progress(`  ${sys.name}: not in tail scenarios (stores nothing to read)`);
      }
      const scCells = scSystems.map((s): Cell => ({ system: s.name, scenario: sc, runs: [], merged: newHistogram(), tailRuns: [], tailMerged: new Map() }));
      cells.push(...scCells);
      for (let run = 1; run <= opts.runs && !abort.signal.aborted; run++) {
        for (const [i, sys] of scSystems.entries()) {
          if (abort.signal.aborted) break;
          const target = await sys.open(sc.id, sc.producers);
          const probe = sc.tail ? new TailProbe(sc.entryBytes) : undefined;
          let readers: TailReaders | undefined;
          let outcome;
          try {
            if (probe) readers = await sys.openReaders!(sc.id, probe);
            if (run === 1) progress(`  ${sys.name}: ${sys.describe(sc.id)}${readers ? `; readers ${readers.names.join(', ')}` : ''}`);
            outcome = await runScenario(target, sc, { warmupS: opts.warmupS, durationS: measuredS }, sys.pids(), abort.signal, probe);
            if (probe) await probe.drain(TAIL_DRAIN_MS, abort.signal);
          } finally {
            await readers?.close();
            await target.close();
          }
          if (abort.signal.aborted) break;
          sys.recordAcked(sc.id, outcome.ackedEntriesTotal);
          const settleNote = await sys.settle(sc.id);
          if (settleNote) notes.push(`${sys.name} ${sc.id} run ${run}: ${settleNote}`);
          const h = outcome.histogram;
          const appendsPerSec = outcome.acked / measuredS;
          const rec: RunRecord = {
            appendsPerSec: round1(appendsPerSec),
            entriesPerSec: round1(appendsPerSec * sc.batch),
            mbPerSec: round2((appendsPerSec * sc.batch * sc.entryBytes) / 1e6),
            p50: h.totalCount ? ms(h.getValueAtPercentile(50)) : NaN,
            p99: h.totalCount ? ms(h.getValueAtPercentile(99)) : NaN,
            p999: h.totalCount ? ms(h.getValueAtPercentile(99.9)) : NaN,
            errors: outcome.errors,
            warmupErrors: outcome.warmupErrors,
            errorsByCode: outcome.errorsByCode,
            serverCpuPct: outcome.cpu ? round1(Object.values(outcome.cpu.processCpuPct).reduce((a, b) => a + b, 0)) : NaN,
            driverCpuPct: outcome.cpu?.driverCpuPct ?? NaN,
            driverElPct: outcome.cpu?.driverElPct ?? NaN,
            ...(settleNote ? { settleNote } : {}),
          };
          const cell = scCells[i]!;
          cell.runs.push(rec);
          cell.merged.add(h);
          h.destroy();
          const tail = probe ? tailRecord(probe, outcome.window, cell) : undefined;
          if (tail) cell.tailRuns.push(tail);
          progress(
            `  run ${run}/${opts.runs} ${sys.name.padEnd(11)} ${fmt(rec.entriesPerSec, 0).padStart(7)} ${sc.batch > 1 ? 'entries' : 'appends'}/s ` +
              `${fmt(rec.mbPerSec, 2).padStart(7)} MB/s  p50 ${fmt(rec.p50, 2)}  p99 ${fmt(rec.p99, 2)}  p99.9 ${fmt(rec.p999, 2)} ms  ` +
              `${rec.errors} errors  (CPU: servers ${fmt(rec.serverCpuPct, 0)}%, driver ${fmt(rec.driverCpuPct, 0)}%, driver event loop ${fmt(rec.driverElPct, 0)}% busy)`,
          );
          if (tail) {
            progress(
              `      append-to-reader (from the send): ${Object.entries(tail.latency)
                .map(([what, l]) => `${what} p50 ${fmt(l.p50, 2)} p99 ${fmt(l.p99, 2)} p99.9 ${fmt(l.p999, 2)} ms`)
                .join('; ')}; missing ${JSON.stringify(tail.missing)}`,
            );
          }
          if (exited.length) throw new Error(`a process died during the run: ${exited.join(', ')}`);
        }
      }
      if (abort.signal.aborted) break;
      for (const sys of scSystems) checks.push(await sys.verify(sc.id));
      if (sc.tail) checks.push(...scCells.map(tailCheck));
    }
    if (abort.signal.aborted) return 130;

    // ---- Report
    const date = localDate();
    const rows = resultRows(cells);
    const ratios = ratioRows(cells, chosen.filter((s) => !s.tail).map((s) => s.id));
    const tails = tailRows(cells);
    const tailExplain = [
      'Tail scenarios: append-to-reader latency, from the moment an append is handed to the client to the moment a reader has decoded the entry,',
      'and the ack latency from the same moment (so the open loop\'s pace sets when appends go, not where their latency starts). Medians of the runs;',
      'samples are the measured window\'s entries summed over the runs; missing = entries acked (warm-up included) that a reader never delivered, which fails the run;',
      'server CPU% as in the table above (the system\'s processes, % of one core; the readers are in the driver, as a client\'s would be).',
      'Tern: a stream (GET entries?follow=true) on the log\'s leader (reader@leader) and one on a follower (reader@follower); tern-leader appends to the leader,',
      'tern-spread round-robin over the three replicas (two thirds forwarded), with the same two readers. NATS: an ordered push consumer (ephemeral, deliver new)',
      'on the scenario\'s subject from a connection to the stream leader\'s node (reader@leader) and from one to another node (reader@follower). The ceiling stores nothing and sits them out.',
    ];
    const errs = errorLines(cells);
    const scenarioLines = chosen.map((s) => `  ${s.id}: ${s.title}${s.batch > 1 ? ' (appends/s counts batches, entries/s entries)' : ''}`);
    const explain = [
      `Medians of ${opts.runs} run(s) of ${opts.durationS} s (open loop: ${opts.openDurationS} s), after ${opts.warmupS} s of warm-up each; errors are summed over the runs.`,
      'Latency: client-side ack latency (Tern: HTTP 200; NATS: PubAck; open loop: from the intended send time). MB/s = 10^6 entry bytes/s.',
      'CPU: % of one core over the measured window (median of runs); "server" sums the system\'s processes (Tern: 3 replicas, etcd, s3rver; NATS: 3 nodes);',
      '"driver loop" is the driver\'s event-loop utilisation: near 100% the driver, not the system, limits the row.',
      'Ratios: throughput ratio > 1 means Tern acked more; p99 ratio < 1 means Tern\'s p99 is lower. leader/ceiling = Tern-leader throughput / ceiling throughput.',
    ];
    console.log('');
    console.log(machineLine);
    console.log(versionLine);
    console.log(pinningLine);
    console.log(`flags: ${flagsLine(opts)}`);
    console.log(`scenarios:\n${scenarioLines.join('\n')}\n`);
    if (rows.length) {
      console.log(table(HEADER, rows));
      console.log('');
      console.log(table(RATIO_HEADER, ratios));
      console.log('');
      for (const l of explain) console.log(l);
    }
    if (tails.length) {
      console.log('');
      console.log(table(TAIL_HEADER, tails));
      console.log('');
      for (const l of tailExplain) console.log(l);
    }
    console.log(`errors: ${errs.length ? '\n  ' + errs.join('\n  ') : 'none'}`);
    console.log(`checks:\n  ${checks.map((c) => c.line).join('\n  ')}`);
    if (notes.length) console.log(`notes:\n  ${notes.join('\n  ')}`);

    mkdirSync(opts.out, { recursive: true });
    const svgs: string[] = [];
    for (const sc of chosen) {
      const scCells = cells.filter((c) => c.scenario.id === sc.id);
      // Tail scenarios plot their readers (the follower's dashed), the others their acks.
      const series: CdfSeries[] = sc.tail
        ? scCells.flatMap((c) => [...c.tailMerged].map(([reader, h]) => ({ label: `${c.system} ${reader}`, histogram: h, color: COLORS[c.system].color, dashed: reader !== 'reader@leader' })))
        : scCells.map((c) => ({ label: c.system, histogram: c.merged, ...COLORS[c.system] }));
      const what = sc.tail ? 'append-to-reader latency' : 'ack latency';
      const file = join(opts.out, `${date}-${sc.id}.svg`);
      writeFileSync(
        file,
        cdfSvg(`${sc.id}: ${sc.title}`, `${what}, ${opts.runs} run(s) of ${windowS(sc, opts)} s merged per system; ${m.cpus} x ${m.cpuModel}; no CPU pinning`, series),
      );
      svgs.push(file);
    }
    const md = [
      `# Tern vs NATS JetStream, ${date}`,
      '',
      'Produced by `npm run bench:compare` (bench/compare.ts). Same driver (one Node process, undici / nats.js), same workload and',
      'same HDR histogram for every system; the systems take turns per scenario, each run with its own warm-up.',
      '',
      `- ${machineLine}`,
      `- ${versionLine}`,
      `- ${pinningLine}`,
      `- flags: \`${flagsLine(opts)}\``,
      '- systems: tern-leader (appends to the log\'s leader), tern-spread (round-robin over the 3 replicas, 2/3 forwarded), ' +
        'nats (JetStream memory stream, 3 replicas, js.publish awaited for its PubAck, client connected to the stream leader\'s node), ' +
        'nats-spread (the same, round-robin over connections to the 3 nodes, 2/3 routed to the stream leader), ' +
        'ceiling (a fastify server answering at once: HTTP alone)',
      `- Tern runs as \`tern cluster\` does: LocalCluster with etcd and s3rver, replicas at default settings (log level info, logs to files, metrics on).` +
        (storeDir ? ` s3rver keeps its files on ${storeDir.where}: in production the object store is a remote service, not the replicas' disk (bench/lib/object-store-dir.ts).` : ''),
      `- open loop: at most ${MAX_OUTSTANDING} requests outstanding; requests due beyond that are not sent and count as errors.`,
      '',
      '## Scenarios',
      '',
      ...chosen.map((s) => `- \`${s.id}\`: ${s.title}${s.batch > 1 ? ' (appends/s counts batches, entries/s entries)' : ''}`),
      '',
      ...(rows.length ? ['## Results', '', markdownTable(HEADER, rows, 2), '', markdownTable(RATIO_HEADER, ratios), '', ...explain.map((l) => `${l}  `), ''] : []),
      ...(tails.length ? ['## Tail scenarios: append-to-reader latency', '', markdownTable(TAIL_HEADER, tails, 3), '', ...tailExplain.map((l) => `${l}  `), ''] : []),
      '## Runs',
      '',
      ...cells.map((c) => `- ${c.system} ${c.scenario.id}: entries/s per run ${c.runs.map((r) => fmt(r.entriesPerSec, 0)).join(' / ')}; ${runsP99(c)}`),
      '',
      '## Errors and checks',
      '',
      ...(errs.length ? errs.map((e) => `- ${e}`) : ['- no errors']),
      ...checks.map((c) => `- ${c.line}`),
      ...notes.map((n) => `- note: ${n}`),
      '',
      '## Latency CDFs',
      '',
      ...svgs.map((f) => `![${relative(opts.out, f)}](${relative(opts.out, f)})`),
      '',
    ].join('\n');
    const mdFile = join(opts.out, `${date}.md`);
    writeFileSync(mdFile, md);
    progress(`\nwrote ${relative(process.cwd(), mdFile) || mdFile} and ${svgs.length} plot(s) in ${relative(process.cwd(), opts.out) || opts.out}`);
    return checks.every((c) => c.ok) ? 0 : 1;
  } catch (err) {
    if (abort.signal.aborted) return 130;
    failed = true;
    console.error(`compare: failed: ${err instanceof Error ? err.message : String(err)}${exited.length ? ` (${exited.join(', ')})` : ''}`);
    return 1;
  } finally {
    if (failed && tempDir) printLogTails(tempDir);
    await natsSystem?.close().catch(() => undefined);
    await Promise.all([
      cluster?.stop().catch((err) => console.error(`compare: stopping Tern: ${(err as Error).message}`)),
      nats?.stop().catch((err) => console.error(`compare: stopping NATS: ${(err as Error).message}`)),
      ceiling ? stopChild(ceiling.process).catch(() => undefined) : undefined,
    ]);
    await stopOwnChildren(2000);
    if (tempDir) rmSync(tempDir, { recursive: true, force: true });
    storeDir?.remove();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function natsJsVersion(): string {
  try {
    return JSON.parse(readFileSync(join(PROJECT_ROOT, 'node_modules', 'nats', 'package.json'), 'utf8')).version;
  } catch {
    return 'unknown';
  }
}

/** The last lines of every log file the run wrote (Tern replicas, NATS nodes, ceiling), when something failed. */
function printLogTails(dir: string): void {
  const files = [
    ...['r1', 'r2', 'r3'].map((r) => join(dir, 'tern', `${r}.log`)),
    ...['n1', 'n2', 'n3'].map((n) => join(dir, 'nats', n, 'nats.log')),
    join(dir, 'ceiling.log'),
  ];
  for (const f of files) {
    if (!existsSync(f)) continue;
    const lines = readFileSync(f, 'utf8').split('\n').filter((l) => l.length > 0);
    if (lines.length === 0) continue;
    console.error(`--- ${relative(dir, f)}: last ${Math.min(15, lines.length)} of ${lines.length} lines`);
    for (const l of lines.slice(-15)) console.error(l.length > 400 ? l.slice(0, 400) + '...' : l);
  }
}

runCommand('compare', main);
