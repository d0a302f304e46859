/**
 * Where Tern's time goes in one benchmark scenario: runs a scenario of
 * bench/compare.ts against a local Tern cluster whose replicas run under
 * `node --cpu-prof`, then cuts the measured window out of each replica's
 * profile and writes
 *
 * - <out>/<date>-profile-<scenario>-<target>.md: the run's figures, CPU per
 *   process, each replica's wall time by component of Tern (replication
 *   sends, HTTP server, flusher, GC, idle...) and the leader's hottest
 *   functions;
 * - <out>/<date>-profile-<scenario>-<target>-<replica>.svg: a flame graph
 *   per replica.
 *
 *   npm run bench:profile -- --scenario 64k-16p [--target leader|spread]
 *       [--duration S] [--warmup S] [--rate N] [--out DIR]
 *
 * Profiling costs the replicas a few percent, so its throughput is not the
 * comparison's: read the shares, not the rate. Exit codes: 0 done, 1 the run
 * or a profile failed, 2 bad flags, 130 interrupted. The cluster and the temp
 * dir are gone in every case.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, relative, resolve } from 'node:path';
import { LocalCluster, freeClusterPorts } from '../src/cli/local-cluster.js';
import { componentShares, flameTree, selfTimes, type CpuProfile, type Share, type Window } from './lib/cpu-profile.js';
import { flameSvg } from './lib/flame-svg.js';
import { UsageError, numberFlag, optionsOrExitCode, parseFlags } from './lib/flags.js';
import { markdownTable, ms, round1 } from './lib/format.js';
import { createLog } from './lib/http.js';
import { objectStoreDir } from './lib/object-store-dir.js';
import { machine, runCommand } from './lib/proc.js';
import { PROJECT_ROOT, ternVersion } from './lib/project.js';
import { HttpTarget } from './lib/targets.js';
import { DEFAULT_RATE, runScenario, scenarios, type Scenario } from './lib/workload.js';

const SCENARIO_IDS = scenarios(DEFAULT_RATE).map((s) => s.id);
const TOP_FUNCTIONS = 20;
/** One run of the heaviest scenario (64 KiB x 16 for 11 s) stores about 1 GB of objects. */
const PROFILE_STORE_BYTES = 4 * 1024 ** 3;

const USAGE = `Usage: node dist/bench/profile.js --scenario ID [options]   (or: npm run bench:profile -- --scenario ID [options])
  --scenario ID      one of: ${SCENARIO_IDS.join(', ')}
  --target T         leader (appends sent to the log's leader, default) or spread (round-robin over the replicas)
  --duration S       profiled seconds (default 8)
  --warmup S         seconds of load before the profiled window (default 3)
  --rate N           appends/s of the open-loop scenario (default ${DEFAULT_RATE})
  --out DIR          where the report and flame graphs go (default bench/results)
  -h, --help         this text`;

interface Options {
  scenario: Scenario;
  target: 'leader' | 'spread';
  durationS: number;
  warmupS: number;
  out: string;
}

function parseOptions(argv: string[]): Options | 'help' {
  const f = parseFlags(argv, ['scenario', 'target', 'duration', 'warmup', 'rate', 'out']);
  if (f.help) return 'help';
  const str = (k: string) => f[k] as string | undefined;
  const rate = numberFlag('rate', str('rate'), DEFAULT_RATE, 1, 1_000_000, true);
  const scenario = scenarios(rate).find((s) => s.id === str('scenario'));
  if (!scenario) throw new UsageError(`--scenario must be one of ${SCENARIO_IDS.join(', ')}, got "${str('scenario') ?? ''}"`);
  const target = str('target') ?? 'leader';
  if (target !== 'leader' && target !== 'spread') throw new UsageError(`--target must be leader or spread, got "${target}"`);
  return {
    scenario,
    target,
    durationS: numberFlag('duration', str('duration'), 8, 0.5, 600, false),
    warmupS: numberFlag('warmup', str('warmup'), 3, 0, 600, false),
    out: resolve(str('out') ?? join(PROJECT_ROOT, 'bench', 'results')),
  };
}

/** Monotonic µs, the clock of V8's profile timestamps. */
function nowUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/** The profile each replica wrote when it exited (`CPU.<date>.<time>.<pid>.<tid>.<seq>.cpuprofile`), by replica id. */
function readProfiles(dir: string, pidToId: Map<number, string>): Map<string, CpuProfile> {
  const out = new Map<string, CpuProfile>();
  let files: string[] = [];
  try {
    files = readdirSync(dir);
  } catch {
    /* none written */
  }
  for (const f of files) {
    const id = pidToId.get(Number(f.split('.')[3]));
    if (id) out.set(id, JSON.parse(readFileSync(join(dir, f), 'utf8')) as CpuProfile);
  }
  return out;
}

/** One row per component, one column per replica: % of the window's wall time. */
function componentTable(columns: { title: string; shares: Share[] }[]): string {
  const names = [...new Set(columns.flatMap((c) => c.shares.map((s) => s.name)))];
  const pctOf = (shares: Share[], name: string) => shares.find((s) => s.name === name)?.pct ?? 0;
  names.sort((a, b) => pctOf(columns[0]!.shares, b) - pctOf(columns[0]!.shares, a));
  return markdownTable(
    ['component', ...columns.map((c) => c.title)],
    names.map((n) => [n, ...columns.map((c) => `${pctOf(c.shares, n).toFixed(1)}%`)]),
  );
}

async function main(argv: string[]): Promise<number> {
  const opts = optionsOrExitCode('profile', USAGE, () => parseOptions(argv));
  if (typeof opts === 'number') return opts;
  const progress = (line: string) => console.error(line);
  const sc = opts.scenario;
  const abort = new AbortController();
  const onSignal = () => abort.abort();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const tempDir = mkdtempSync(join(os.tmpdir(), 'tern-profile-'));
  const profDir = join(tempDir, 'prof');
  // As in bench:compare, so the profiles show the same machine load.
  const storeDir = objectStoreDir('tern-profile-s3-', PROFILE_STORE_BYTES);
  let cluster: LocalCluster | undefined;
  try {
    progress(`starting etcd, s3rver and 3 replicas under --cpu-prof (data in ${tempDir})`);
    cluster = await LocalCluster.start({ dataDir: join(tempDir, 'tern'), s3Dir: storeDir.dir, ...(await freeClusterPorts()), nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profDir}`] });
    const log = `profile-${sc.id}`;
    const leader = await createLog(cluster.replicas[0]!.clientUrl, log, abort.signal);
    const urls = opts.target === 'leader' ? [cluster.replica(leader).clientUrl] : cluster.replicas.map((r) => r.clientUrl);
    const described = cluster.describe();
    const pids: Record<string, number | undefined> = { etcd: described.etcd.pid ?? undefined, s3rver: described.objectStore?.pid };
    for (const r of described.replicas) pids[r.id] = r.pid;

    progress(`scenario ${sc.id} (${sc.title}) against the ${opts.target === 'leader' ? `leader ${leader}` : 'three replicas'}: ${opts.warmupS} s warm-up, ${opts.durationS} s profiled`);
    const target = HttpTarget.open(urls, `/v1/logs/${log}/entries`, sc.producers);
    const startedUs = nowUs();
    let outcome;
    try {
      outcome = await runScenario(target, sc, { warmupS: opts.warmupS, durationS: opts.durationS }, pids, abort.signal);
    } finally {
      await target.close();
    }
    if (abort.signal.aborted) return 130;
    const window: Window = { fromUs: startedUs + opts.warmupS * 1e6, toUs: startedUs + (opts.warmupS + opts.durationS) * 1e6 };

    // The replicas write their profiles as they exit.
    const pidToId = new Map(described.replicas.map((r) => [r.pid, r.id]));
    await cluster.stop();
    cluster = undefined;
    const profiles = readProfiles(profDir, pidToId);
    const ids = [leader, ...described.replicas.map((r) => r.id).filter((id) => id !== leader)];
    const missing = ids.filter((id) => !profiles.has(id));
    if (missing.length > 0) {
      console.error(`profile: no CPU profile from ${missing.join(', ')} (did the replica crash? its log is gone with the temp dir)`);
      return 1;
    }

    const date = new Date().toISOString().slice(0, 10);
    const base = `${date}-profile-${sc.id}-${opts.target}`;
    mkdirSync(opts.out, { recursive: true });
    const role = (id: string) => (id === leader ? `leader ${id}` : `follower ${id}`);
    const rate = outcome.acked / opts.durationS;
    const h = outcome.histogram;
    const runLine = `${round1(rate)} appends/s, p50 ${ms(h.getValueAtPercentile(50))} ms, p99 ${ms(h.getValueAtPercentile(99))} ms, ${outcome.errors} errors`;
    const cpuLine = outcome.cpu
      ? Object.entries(outcome.cpu.processCpuPct)
          .map(([n, p]) => `${n} ${p}%`)
          .join(', ') + `, driver ${outcome.cpu.driverCpuPct}%`
      : 'not sampled';
    const svgs: string[] = [];
    for (const id of ids) {
      const file = `${base}-${id}.svg`;
      const subtitle = `${sc.title}, appends to the ${opts.target}; ${opts.durationS} s after ${opts.warmupS} s of warm-up; ${runLine}`;
      writeFileSync(join(opts.out, file), flameSvg(`Tern ${role(id)}: where its main thread's time goes`, subtitle, flameTree(profiles.get(id)!, window)));
      svgs.push(`- ${role(id)}: [${file}](${file})`);
    }
    const m = machine();
    const leaderTop = selfTimes(profiles.get(leader)!, window).slice(0, TOP_FUNCTIONS);
    const report = [
      `# CPU profile: ${sc.id} against the ${opts.target}, ${date}`,
      '',
      `\`npm run bench:profile -- --scenario ${sc.id} --target ${opts.target} --duration ${opts.durationS} --warmup ${opts.warmupS}\``,
      '',
      `- machine: ${m.cpus} x ${m.cpuModel}, ${m.totalMemGiB} GiB, ${m.platform}; node ${m.node}; tern ${ternVersion()}`,
      `- scenario: ${sc.title}; appends ${opts.target === 'leader' ? `to the log's leader (${leader})` : 'round-robin over r1 r2 r3'}`,
      `- run (replicas under --cpu-prof, so a little slower than in the comparison): ${runLine}`,
      `- CPU over the window, % of one core (/proc): ${cpuLine}`,
      '',
      '## Wall time of each replica\'s main thread, by component',
      '',
      'From V8\'s sampling profiler over the measured window. Each sample is charged to the innermost frame that belongs to a component, so the',
      'kernel time of a socket write counts for the code that wrote (the peer link for replication, the HTTP server for answers). "(idle)" is the event',
      'loop waiting for I/O; "(program)" is native work V8 cannot attribute.',
      '',
      componentTable(ids.map((id) => ({ title: role(id), shares: componentShares(profiles.get(id)!, window) }))),
      '',
      `## Leader ${leader}: the ${TOP_FUNCTIONS} functions with the most self time`,
      '',
      markdownTable(
        ['function', 'self ms', 'share'],
        leaderTop.map((s) => [s.name.replace(/\|/g, '\\|'), (s.us / 1000).toFixed(0), `${s.pct.toFixed(1)}%`]),
      ),
      '',
      '## Flame graphs',
      '',
      ...svgs,
      '',
    ].join('\n');
    const mdPath = join(opts.out, `${base}.md`);
    writeFileSync(mdPath, report);
    console.log(report);
    progress(`wrote ${relative(process.cwd(), mdPath)} and ${ids.length} flame graph(s)`);
    return 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await cluster?.stop();
    rmSync(tempDir, { recursive: true, force: true });
    storeDir.remove();
  }
}

runCommand('profile', main);
