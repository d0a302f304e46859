/**
 * jepsen-lite: one fault-injection run against a real local cluster.
 *
 *   npm run jepsen -- [--nemesis all|none|kill-leader,partition-leader,...] [--time S]
 *                     [--seed N] [--logs N] [--clients N] [--producers mixed|plain|idempotent] [--out DIR]
 *                     [--idle-logs N] [--quiesce-after-ms MS]
 *
 * Phases, as in Jepsen and TigerBeetle's VOPR: a safety phase (workload plus
 * faults on a seeded schedule), a healing phase (every fault removed, every
 * process up, the workload still running: the cluster must serve again), and
 * the final reads of every log from every replica. The checker judges the
 * history; the report directory holds history.jsonl, verdict.json,
 * report.html and the replica logs. Exit code 0 only for a valid verdict.
 */
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { Agent, request, setGlobalDispatcher } from 'undici';
import { check, type AppendOp, type FinalEntry, type FinalState, type KillAll, type LogVerdict, type Op, type Verdict } from './checker.js';
import { startProxiedCluster, type ProxiedCluster } from './cluster.js';
import { DEFAULT_NEMESES, NEMESIS_NAMES, OPT_IN_NEMESES, healAll, notServed, nemeses, type ActiveFault, type NemesisContext, type NemesisName } from './nemesis.js';
import { renderReport, summarizeByNemesis, type FaultWindow, type NemesisSummary } from './report.js';
import { History, IDLE_CLIENTS, PRODUCER_MODES, Workload, decodeValue, forgotten, type ProducerMode } from './workload.js';

export interface RunOptions {
  nemeses: NemesisName[];
  timeS: number;
  /** When set, the fault phase runs exactly this many cycles through the nemeses, however long they take, instead of `timeS`. */
  rounds?: number;
  seed: number;
  logs: number;
  clientsPerLog: number;
  /** Plain appenders, idempotent producers (retrying until answered), or half of each. */
  producers: ProducerMode;
  /** How long a fault lasts, and the quiet between two faults. */
  faultMs: number;
  quietMs: number;
  healS: number;
  outDir: string;
  /** Mutual TLS between replicas and HTTPS for the clients (a throwaway CA); plain HTTP when absent. */
  tls?: boolean;
  /** Extra logs `jepsen-idle-<i>`, appended to rarely so that they quiesce and are woken, judged like the others (0: none). */
  idleLogs?: number;
  /** Passed to the replicas as --quiesce-after-ms when set; their default otherwise. */
  quiesceAfterMs?: number;
}

export interface RunResult {
  valid: boolean;
  verdict: Verdict;
  /** Problems that are not anomalies of the history: the cluster did not heal, a final read failed. */
  liveness: string[];
  nemeses: NemesisSummary[];
  faults: FaultWindow[];
  /** The kill-alls, with the logs quiesced at each. */
  killAlls: KillAll[];
  outDir: string;
}

/** At most this many appends a second to all idle logs together (two clients), however many there are. */
const IDLE_MAX_RATE = 20;

/**
 * How often each idle-log client appends to one idle log chosen at random:
 * so that a log's mean gap between two appends is three times the quiescence
 * delay (the server's default, 10 s, when not given): most gaps long enough
 * to quiesce, some not. Within IDLE_MAX_RATE.
 */
/** Idle logs of a run unless --idle-logs says otherwise. */
export const DEFAULT_IDLE_LOGS = 50;
/** The replicas' --quiesce-after-ms in a run unless told otherwise: short, so idle logs sleep and wake many times in a minute. */
export const DEFAULT_QUIESCE_AFTER_MS = 2000;

export function idleEveryMs(idleLogs: number, quiesceAfterMs = 10_000): number {
  const meanGapMs = 3 * (quiesceAfterMs > 0 ? quiesceAfterMs : 10_000);
  return Math.max(Math.round((meanGapMs * IDLE_CLIENTS) / Math.max(1, idleLogs)), Math.round((1000 * IDLE_CLIENTS) / IDLE_MAX_RATE));
}

/** A small seeded generator (mulberry32): the same seed gives the same schedule and choices. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

export async function runJepsen(options: RunOptions, progress: (line: string) => void = () => {}): Promise<RunResult> {
  mkdirSync(options.outDir, { recursive: true });
  const random = seeded(options.seed);
  const logs = Array.from({ length: options.logs }, (_, i) => `jepsen-${i}`);
  const idleLogs = Array.from({ length: options.idleLogs ?? 0 }, (_, i) => `jepsen-idle-${i}`);
  const allLogs = [...logs, ...idleLogs];
  // A short lease makes leader loss quick to detect; flushing often makes reads cross into object storage.
  // --quiesce-after-ms only when asked: a replica that does not know a flag refuses to start.
  const replicaArgs = ['--lease-ttl-seconds', '3', '--flush-interval-ms', '300', '--flush-max-bytes', '65536', '--orphan-grace-ms', '5000', ...(options.quiesceAfterMs === undefined ? [] : ['--quiesce-after-ms', String(options.quiesceAfterMs)])];
  const pc = await startProxiedCluster({ replicaArgs, tls: options.tls });
  // The harness's own requests (status, creation, final reads, the nemeses' checks) must trust the cluster's CA too.
  if (pc.cluster.tls) setGlobalDispatcher(new Agent({ connect: { ca: pc.cluster.tls.caPem } }));
  progress(`cluster up (data in ${pc.dataDir}); logs ${logs.join(', ')}${idleLogs.length ? ` and ${idleLogs.length} idle (jepsen-idle-0..${idleLogs.length - 1}, each client appends to one every ${idleEveryMs(idleLogs.length, options.quiesceAfterMs)} ms)` : ''}; seed ${options.seed}`);
  const history = new History(join(options.outDir, 'history.jsonl'));
  const replicas = pc.cluster.replicas.map((r) => ({ id: r.id, url: r.clientUrl }));
  const workload = new Workload(history, {
    logs,
    replicas,
    clientsPerLog: options.clientsPerLog,
    thinkMs: 20,
    appendTimeoutMs: 5000,
    random,
    ca: pc.cluster.tls?.caPem,
    producers: options.producers,
    idleLogs,
    idleEveryMs: idleEveryMs(idleLogs.length, options.quiesceAfterMs),
  });
  const faults: FaultWindow[] = [];
  const liveness: string[] = [];
  const killAlls: KillAll[] = [];
  const ctx: NemesisContext = {
    pc,
    logs,
    idleLogs,
    random,
    run: { now: () => history.now(), hold: (ms) => workload.hold(ms), release: (logs) => workload.release(logs), probe: (log, ms) => workload.probe(log, ms), killAlls, liveness },
  };
  try {
    await inBatches(allLogs, 8, (log) => createLog(pc, log));
    workload.start();
    await schedule(ctx, options, history, faults, liveness, progress);
    progress('healing: every fault removed, every process up');
    await healAll(ctx);
    for (const log of allLogs) if (!(await workload.probe(log, 30_000))) liveness.push(`${log} acknowledged no append within 30 s after healing`);
    await sleep(options.healS * 1000);
    await workload.stop();
    await history.close();
    progress('final reads');
    const final = await finalReads(pc, allLogs, liveness);
    const verdict = check(history.ops, final, killAlls);
    const unanswered = history.ops.filter((op) => op.type === 'append' && op.idempotent && op.outcome === 'info').length;
    if (unanswered > 0) liveness.push(`${unanswered} idempotent appends got no answer however long their producers retried`);
    liveness.push(...forgottenProducers(history.ops, killAlls));
    const summary = summarizeByNemesis(history.ops, faults);
    const result: RunResult = { valid: verdict.valid && liveness.length === 0, verdict, liveness, nemeses: summary, faults, killAlls, outDir: options.outDir };
    writeReport(options, result, history, allLogs);
    return result;
  } finally {
    await workload.stop().catch(() => {});
    await history.close();
    for (const r of pc.cluster.replicas) {
      const file = join(pc.dataDir, `${r.id}.log`);
      if (existsSync(file)) copyFileSync(file, join(options.outDir, `${r.id}.log`));
    }
    await pc.stop();
  }
}

/**
 * A producer's sequence refused (SEQUENCE_GAP/STALE) means the cluster forgot
 * what it had acknowledged to the producer: a failure unless a kill-all before
 * it met the log not quiesced (then the loss, and this, are outside the promise).
 */
export function forgottenProducers(history: readonly Op[], killAlls: readonly KillAll[]): string[] {
  const unexplained = history.filter(
    (op): op is AppendOp => op.type === 'append' && forgotten(op) && !killAlls.some((k) => k.killMs < op.completeMs && !k.quiesced.includes(op.log)),
  );
  if (unexplained.length === 0) return [];
  const first = unexplained[0]!;
  return [`${unexplained.length} producer appends refused ${first.error} (the cluster forgot the producer) with no kill-all of their log unquiesced before them; first: ${first.process} on ${first.log} at ${(first.invokeMs / 1000).toFixed(1)} s`];
}

/** Faults one at a time: a seeded order that cycles through every chosen nemesis, a quiet gap between two. */
async function schedule(ctx: NemesisContext, options: RunOptions, history: History, faults: FaultWindow[], liveness: string[], progress: (line: string) => void): Promise<void> {
  const endMs = options.rounds === undefined ? history.now() + options.timeS * 1000 : Infinity;
  await sleep(Math.min(options.quietMs, options.timeS * 1000));
  if (options.nemeses.length === 0) return sleep(Math.max(0, endMs - history.now()));
  let order: NemesisName[] = [];
  let cycles = 0;
  while (options.rounds === undefined ? history.now() + options.faultMs <= endMs : cycles < options.rounds || order.length > 0) {
    if (order.length === 0) {
      order = shuffled(options.nemeses, ctx.random);
      cycles++;
    }
    const name = order.shift()!;
    // One fault at a time: the next waits until the last one's damage is repaired.
    const waitStart = Date.now();
    const stuck = await notServed(ctx, 30_000);
    if (stuck.length > 0) {
      liveness.push(`${stuck.slice(0, 5).join(', ')}${stuck.length > 5 ? ` and ${stuck.length - 5} more logs` : ''} had no serving leader 30 s after the fault before ${name} ended; stopped injecting faults`);
      return;
    }
    if (Date.now() - waitStart > 5000) progress(`${(history.now() / 1000).toFixed(1)} s  every log whole again after ${((Date.now() - waitStart) / 1000).toFixed(1)} s`);
    const startMs = history.now();
    let active: ActiveFault | undefined;
    try {
      active = await nemeses[name](ctx);
      progress(`${(startMs / 1000).toFixed(1)} s  ${name}: ${active.detail}`);
      await sleep(options.faultMs * (0.75 + ctx.random() / 2));
    } finally {
      await active?.stop();
    }
    faults.push({ nemesis: name, detail: active?.detail ?? 'failed to start', startMs, endMs: history.now() });
    await sleep(Math.max(0, Math.min(options.quietMs, endMs - history.now())));
  }
  if (endMs !== Infinity) await sleep(Math.max(0, endMs - history.now()));
}

async function inBatches<T>(items: readonly T[], size: number, each: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(each));
}

async function json(url: string, init: { method?: 'GET' | 'PUT' } = {}): Promise<{ status: number; body: any }> {
  const res = await request(url, { method: init.method ?? 'GET', headersTimeout: 5000, bodyTimeout: 5000 });
  return { status: res.statusCode, body: await res.body.json() };
}

async function createLog(pc: ProxiedCluster, log: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const res = await json(`${pc.cluster.replicas[attempt % 3]!.clientUrl}/v1/logs/${log}`, { method: 'PUT' });
    if (res.status === 200 || res.status === 201) return;
    if (attempt > 50) throw new Error(`cannot create ${log}: ${res.status} ${JSON.stringify(res.body)}`);
    await sleep(200);
  }
}

/**
 * Every log from every replica, once the replicas agree on the commit point
 * (a follower learns it from the leader's next message).
 */
async function finalReads(pc: ProxiedCluster, logs: readonly string[], liveness: string[]): Promise<FinalState> {
  const final: FinalState = {};
  for (const log of logs) {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const committed = await Promise.all(pc.cluster.replicas.map(async (r) => (await json(`${r.clientUrl}/v1/logs/${log}`).catch(() => undefined))?.body?.committedId));
      if (committed.every((c) => c === committed[0] && typeof c === 'number')) break;
      if (Date.now() > deadline) {
        liveness.push(`${log}: replicas disagree on the commit point 20 s after healing: ${committed.join(', ')}`);
        break;
      }
      await sleep(200);
    }
    const status = (await json(`${pc.cluster.replicas[0]!.clientUrl}/v1/logs/${log}`)).body as { firstId: number };
    final[log] = { firstId: Math.max(0, status.firstId), replicas: {} };
    for (const r of pc.cluster.replicas) {
      try {
        final[log]!.replicas[r.id] = await readAll(r.clientUrl, log);
      } catch (err) {
        liveness.push(`final read of ${log} on ${r.id} failed: ${(err as Error).message}`);
      }
    }
  }
  return final;
}

/** A log's entries with their times: the checker's time rules need every one's. */
async function readAll(url: string, log: string): Promise<FinalEntry[]> {
  const out: FinalEntry[] = [];
  for (let from = 0; ; ) {
    const res = await json(`${url}/v1/logs/${log}/entries?from=${from}&limit=5000`);
    if (res.status !== 200) throw new Error(`${res.status} ${JSON.stringify(res.body)}`);
    const page = res.body as { entries: { id: number; timeMs?: unknown; data: string }[]; nextId: number };
    if (page.entries.length === 0) return out;
    for (const e of page.entries) {
      if (typeof e.timeMs !== 'number') throw new Error(`entry ${e.id} has no timeMs`);
      out.push({ id: e.id, value: decodeValue(e.data), timeMs: e.timeMs });
    }
    from = page.nextId;
  }
}

function writeReport(options: RunOptions, result: RunResult, history: History, logs: readonly string[]): void {
  const verdictFile = { valid: result.valid, liveness: result.liveness, nemeses: result.nemeses, faults: result.faults, killAlls: result.killAlls, logs: result.verdict.logs };
  writeFileSync(join(options.outDir, 'verdict.json'), JSON.stringify(verdictFile, null, 2) + '\n');
  const meta = { seed: options.seed, nemeses: options.nemeses, timeS: options.timeS, startedAt: new Date().toISOString(), logs: [...logs], command: process.argv.slice(1).join(' ') };
  // Liveness problems are shown with the anomalies: the page's verdict must agree with the exit code.
  const verdict: Verdict = { ...result.verdict, valid: result.valid };
  writeFileSync(join(options.outDir, 'report.html'), renderReport({ meta, history: history.ops, verdict, faults: result.faults, liveness: result.liveness }));
}

const USAGE = `Usage: npm run jepsen -- [options]
  --nemesis LIST   comma-separated faults, or all, or none (default all); all,kill-all adds one
                   that all leaves out. Faults: ${NEMESIS_NAMES.join(', ')}
                   (not in all: ${OPT_IN_NEMESES.join(', ')})
  --time S         seconds of the fault phase (default 60)
  --rounds N       instead of --time: run every chosen nemesis N times (a quick pass: --rounds 1)
  --seed N         seed of every random choice (default: from the clock, printed)
  --logs N         logs under test (default 3)
  --clients N      appending clients per log (default 8)
  --producers M    mixed (default): odd clients append through the client library's idempotent
                   producer, retrying every indeterminate append until answered; plain or idempotent: all
  --fault-ms MS    how long one fault lasts (default 5000), --quiet-ms MS the gap between faults (default 3000)
  --heal S         seconds the workload runs after healing (default 8)
  --out DIR        report directory (default jepsen-reports/<time>-seed<N>)
  --tls            run the cluster with TLS (HTTPS, mutual TLS between replicas through the proxies)
  --idle-logs N    N more logs (jepsen-idle-<i>, default 0), each appended to rarely so it quiesces and is
                   woken many times; judged like the others
  --quiesce-after-ms MS  passed to the replicas (0: never quiesce); their default when absent`;

const VALUE_OPTIONS = ['nemesis', 'time', 'rounds', 'seed', 'logs', 'clients', 'producers', 'fault-ms', 'quiet-ms', 'heal', 'out', 'idle-logs', 'quiesce-after-ms'] as const;

export function parseRunArgs(argv: string[], now = new Date()): RunOptions {
  const { values } = parseArgs({
    args: argv,
    options: { ...Object.fromEntries(VALUE_OPTIONS.map((k) => [k, { type: 'string' as const }])), tls: { type: 'boolean' } },
    strict: true,
  }) as { values: Partial<Record<(typeof VALUE_OPTIONS)[number], string>> & { tls?: boolean } };
  const int = (name: (typeof VALUE_OPTIONS)[number], fallback: number, min: number): number => {
    const raw = values[name];
    if (raw === undefined) return fallback;
    if (!/^\d+$/.test(raw) || Number(raw) < min) throw new Error(`--${name} must be an integer >= ${min}, got "${raw}"`);
    return Number(raw);
  };
  const list = values.nemesis ?? 'all';
  // `all` may be combined with opt-in nemeses: all,kill-all.
  const chosen = list === 'none' ? [] : [...new Set(list.split(',').flatMap((s): string[] => (s.trim() === 'all' ? [...DEFAULT_NEMESES] : [s.trim()])))];
  const unknown = chosen.filter((n) => !(n in nemeses));
  if (unknown.length > 0) throw new Error(`unknown nemesis ${unknown.join(', ')}; known: ${NEMESIS_NAMES.join(', ')}`);
  const seed = int('seed', now.getTime() % 1_000_000, 0);
  const producers = (values.producers ?? 'mixed') as ProducerMode;
  if (!PRODUCER_MODES.includes(producers)) throw new Error(`--producers must be one of ${PRODUCER_MODES.join(', ')}, got "${values.producers}"`);
  return {
    nemeses: chosen as NemesisName[],
    timeS: int('time', 60, 1),
    ...(values.rounds === undefined ? {} : { rounds: int('rounds', 1, 1) }),
    seed,
    logs: int('logs', 3, 1),
    clientsPerLog: int('clients', 8, 1),
    producers,
    faultMs: int('fault-ms', 5000, 100),
    quietMs: int('quiet-ms', 3000, 0),
    healS: int('heal', 8, 0),
    outDir: resolve(values.out ?? join('jepsen-reports', `${now.toISOString().replace(/[:.]/g, '-')}-seed${seed}`)),
    tls: values.tls === true,
    // Many logs, most of them idle, quiescing and waking under every nemesis (issue 19): the default run attacks it.
    idleLogs: int('idle-logs', DEFAULT_IDLE_LOGS, 0),
    quiesceAfterMs: int('quiesce-after-ms', DEFAULT_QUIESCE_AFTER_MS, 0),
  };
}

function printSummary(result: RunResult): void {
  console.log('\nnemesis              windows      ok    fail    info  longest unavailable');
  for (const n of result.nemeses) {
    console.log(`${n.nemesis.padEnd(20)} ${String(n.windows).padStart(7)} ${String(n.ok).padStart(7)} ${String(n.fail).padStart(7)} ${String(n.info).padStart(7)}  ${Math.round(n.longestUnavailableMs)} ms`);
  }
  const kindsOf = (anomalies: readonly { kind: string }[]) => anomalies.reduce<Record<string, number>>((acc, a) => ({ ...acc, [a.kind]: (acc[a.kind] ?? 0) + 1 }), {});
  const outside = (v: LogVerdict) => (v.outsidePromise.length ? `; outside the promise (kill-all, not quiesced) ${JSON.stringify(kindsOf(v.outsidePromise))}` : '');
  const idle: [string, LogVerdict][] = [];
  for (const [log, v] of Object.entries(result.verdict.logs)) {
    if (log.startsWith('jepsen-idle-')) {
      idle.push([log, v]);
      continue;
    }
    console.log(`${log}: ok ${v.counts.ok}, fail ${v.counts.fail}, info ${v.counts.info}, reads ${v.counts.reads}, seeks judged ${v.counts.seeks} (${v.counts.seeksNoneYet} none yet), final entries ${v.counts.finalEntries}; anomalies ${v.anomalies.length === 0 ? 'none' : JSON.stringify(kindsOf(v.anomalies))}${outside(v)}; ack p50 ${v.latencyMs.p50.toFixed(1)} ms, p99 ${v.latencyMs.p99.toFixed(1)} ms; longest unavailable ${Math.round(v.longestUnavailableMs)} ms`);
  }
  if (idle.length) {
    // The idle logs on one line, plus one for each that has something to show.
    const sum = (f: (v: LogVerdict) => number) => idle.reduce((n, [, v]) => n + f(v), 0);
    const anomalies = idle.flatMap(([, v]) => v.anomalies);
    const outsideAll = idle.flatMap(([, v]) => v.outsidePromise);
    console.log(`${idle.length} idle logs: ok ${sum((v) => v.counts.ok)}, fail ${sum((v) => v.counts.fail)}, info ${sum((v) => v.counts.info)}, seeks judged ${sum((v) => v.counts.seeks)} (${sum((v) => v.counts.seeksNoneYet)} none yet), final entries ${sum((v) => v.counts.finalEntries)}; anomalies ${anomalies.length === 0 ? 'none' : JSON.stringify(kindsOf(anomalies))}${outsideAll.length ? `; outside the promise (kill-all, not quiesced) ${JSON.stringify(kindsOf(outsideAll))}` : ''}`);
    for (const [log, v] of idle) if (v.anomalies.length) console.log(`  ${log}: anomalies ${JSON.stringify(kindsOf(v.anomalies))}`);
  }
  const total = Object.keys(result.verdict.logs).length;
  for (const k of result.killAlls) {
    console.log(`kill-all at ${(k.killMs / 1000).toFixed(1)} s: ${k.quiesced.length} of ${total} logs quiesced at the kill (judged in full); the other ${total - k.quiesced.length} judged on what followed the restart`);
  }
  if (result.killAlls.length) {
    const lost = Object.values(result.verdict.logs).reduce((n, v) => n + v.counts.lostOutsidePromise, 0);
    console.log(`lost outside the promise: ${lost} acknowledged appends, on logs not quiesced at a kill-all`);
  }
  for (const problem of result.liveness) console.log(`liveness: ${problem}`);
  console.log(`\nverdict: ${result.valid ? 'VALID' : 'INVALID'}; report ${join(result.outDir, 'report.html')}`);
}

async function main(): Promise<number> {
  let options: RunOptions;
  try {
    options = parseRunArgs(process.argv.slice(2));
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  console.log(`jepsen-lite: nemeses ${options.nemeses.join(', ') || 'none'}; ${options.timeS} s; seed ${options.seed}; ${options.producers} producers${options.tls ? '; TLS' : ''}${options.idleLogs ? `; ${options.idleLogs} idle logs` : ''}${options.quiesceAfterMs === undefined ? '' : `; --quiesce-after-ms ${options.quiesceAfterMs}`}`);
  const result = await runJepsen(options, (line) => console.log(line));
  printSummary(result);
  return result.valid ? 0 : 1;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().then(
    (code) => process.exit(code),
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
}
