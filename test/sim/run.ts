/**
 * `npm run sim -- [--seeds N | --budget-ms MS] [--seed S] [--fault-ms MS]`:
 * runs seeded simulations of the whole cluster (simulate.ts) and reports
 * every failing seed with its anomalies and the end of its trace; rerunning
 * `--seed S` replays that run exactly. Exits 1 if any seed failed.
 */
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { DEFAULT_SIM, simulate, type SimOptions, type SimResult } from './simulate.js';

/** Trace lines a failure report prints (--trace-lines keeps more, all printed). */
const TRACE_TAIL = 60;

export interface SimRunOptions {
  /** First seed; the next ones follow it. */
  seed: number;
  /** How many seeds to run, unless a time budget ends the run first. */
  seeds: number;
  /** Wall-clock budget: stop starting seeds after it. */
  budgetMs: number;
  sim: SimOptions;
}

export interface SimRunSummary {
  ran: number;
  failed: SimResult[];
  wallMs: number;
  acked: number;
  faults: number;
  /** Seeds whose faults overlapped (two replicas failed at once): judged on safety only. */
  overlapped: number;
}

export function runSeeds(options: SimRunOptions, progress: (line: string) => void = () => {}): SimRunSummary {
  const started = Date.now();
  const summary: SimRunSummary = { ran: 0, failed: [], wallMs: 0, acked: 0, faults: 0, overlapped: 0 };
  for (let seed = options.seed; summary.ran < options.seeds && Date.now() - started < options.budgetMs; seed++) {
    const result = simulate(seed, options.sim);
    summary.ran++;
    summary.acked += result.stats.acked;
    summary.faults += result.faults.length;
    if (result.overlapped) summary.overlapped++;
    if (!result.valid) {
      summary.failed.push(result);
      progress(describeFailure(result));
    }
  }
  summary.wallMs = Date.now() - started;
  return summary;
}

export function describeFailure(r: SimResult): string {
  const anomalies = Object.entries(r.verdict.logs).flatMap(([log, v]) => v.anomalies.slice(0, 5).map((a) => `  ${log}: ${a.kind}: ${a.detail}`));
  return [
    `seed ${r.seed} FAILED (replay: npm run sim -- --seed ${r.seed} --seeds 1)`,
    ...anomalies,
    ...r.liveness.map((l) => `  liveness: ${l}`),
    `  faults: ${r.faults.map((f) => `${f.kind}@${f.target} ${f.startMs}-${f.endMs ?? '?'}`).join(', ')}`,
    '  trace (last events):',
    ...r.trace.slice(-Math.max(TRACE_TAIL, r.trace.length > 400 ? r.trace.length : 0)).map((line) => `    ${line}`),
  ].join('\n');
}

function parseSimArgs(argv: string[]): SimRunOptions {
  const { values } = parseArgs({
    args: argv,
    options: { seed: { type: 'string' }, seeds: { type: 'string' }, 'budget-ms': { type: 'string' }, 'fault-ms': { type: 'string' }, 'trace-lines': { type: 'string' } },
    strict: true,
  });
  const int = (v: string | undefined, fallback: number, name: string) => {
    if (v === undefined) return fallback;
    if (!/^\d+$/.test(v)) throw new Error(`--${name} takes a non-negative integer, got "${v}"`);
    return Number(v);
  };
  const seeds = int(values.seeds, values['budget-ms'] === undefined ? 100 : Number.MAX_SAFE_INTEGER, 'seeds');
  return {
    seed: int(values.seed, 1, 'seed'),
    seeds,
    budgetMs: int(values['budget-ms'], Number.MAX_SAFE_INTEGER, 'budget-ms'),
    sim: { ...DEFAULT_SIM, faultMs: int(values['fault-ms'], DEFAULT_SIM.faultMs, 'fault-ms'), traceLines: int(values['trace-lines'], DEFAULT_SIM.traceLines, 'trace-lines') },
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const options = parseSimArgs(process.argv.slice(2));
  const summary = runSeeds(options, (line) => console.log(line));
  const perSecond = summary.ran / Math.max(summary.wallMs / 1000, 0.001);
  console.log(`sim: ${summary.ran} seeds from ${options.seed} in ${(summary.wallMs / 1000).toFixed(1)} s (${perSecond.toFixed(2)} seeds/s), ${summary.faults} faults (${summary.overlapped} seeds with two replicas failed at once: safety only), ${summary.acked} acked appends; ${summary.failed.length} failed${summary.failed.length ? ': seeds ' + summary.failed.map((f) => f.seed).join(', ') : ''}`);
  process.exitCode = summary.failed.length > 0 ? 1 : 0;
}
