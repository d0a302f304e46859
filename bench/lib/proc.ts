/**
 * Process plumbing shared by the benchmarks (Linux /proc): the machine's
 * description, CPU time and RSS of processes, CPU snapshots over a measured
 * window, and finding and stopping this process's own children.
 */
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { round1 } from './format.js';

export interface Machine {
  cpus: number;
  cpuModel: string;
  node: string;
  platform: string;
  totalMemGiB: number;
}

export function machine(): Machine {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    node: process.version,
    platform: `${os.platform()} ${os.arch()} ${os.release()}`,
    totalMemGiB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
  };
}

/** Clock ticks per second of /proc/<pid>/stat times; 100 on every common Linux build. */
const CLK_TCK = 100;

/** CPU seconds (user + system) a process has used, or undefined when /proc cannot tell. */
export function procCpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined || pid <= 0) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After "pid (comm) ": state is field 0, utime field 11, stime field 12.
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
  } catch {
    return undefined;
  }
}

export function procRssMiB(pid: number | undefined): number | undefined {
  if (pid === undefined || pid <= 0) return undefined;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 1024) : undefined;
  } catch {
    return undefined;
  }
}

export interface CpuFigures {
  /** Percent of one core over the measured window. */
  driverCpuPct: number;
  /** Event-loop utilisation of the driver, percent: near 100 means the driver is the bottleneck. */
  driverElPct: number;
  /** Percent of one core per named process; absent where /proc is not readable. */
  processCpuPct: Record<string, number>;
}

export interface CpuSnapshot {
  at: number;
  driver: NodeJS.CpuUsage;
  elu: ReturnType<typeof performance.eventLoopUtilization>;
  procs: Record<string, number | undefined>;
}

export function cpuSnapshot(pids: Record<string, number | undefined>): CpuSnapshot {
  const procs: Record<string, number | undefined> = {};
  for (const [name, pid] of Object.entries(pids)) procs[name] = procCpuSeconds(pid);
  return { at: performance.now(), driver: process.cpuUsage(), elu: performance.eventLoopUtilization(), procs };
}

export function cpuFigures(a: CpuSnapshot, b: CpuSnapshot): CpuFigures {
  const wallS = (b.at - a.at) / 1000;
  const d = { user: b.driver.user - a.driver.user, system: b.driver.system - a.driver.system };
  const driverS = (d.user + d.system) / 1e6;
  const elu = performance.eventLoopUtilization(b.elu, a.elu);
  const processCpuPct: Record<string, number> = {};
  for (const name of Object.keys(b.procs)) {
    const x = a.procs[name];
    const y = b.procs[name];
    if (x !== undefined && y !== undefined) processCpuPct[name] = round1(((y - x) / wallS) * 100);
  }
  return { driverCpuPct: round1((driverS / wallS) * 100), driverElPct: round1(elu.utilization * 100), processCpuPct };
}

/** Pids of this process's direct children (Linux /proc; none elsewhere). */
export function ownChildren(): number[] {
  const out: number[] = [];
  let entries: string[] = [];
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      // After "pid (comm) ": state, then ppid.
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === process.pid) out.push(Number(e));
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

export function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

/** Sends `sig` to each pid, ignoring those already gone. */
export function signalPids(pids: Iterable<number | undefined>, sig: NodeJS.Signals): void {
  for (const pid of pids) {
    if (!pid) continue;
    try {
      process.kill(pid, sig);
    } catch {
      /* already gone */
    }
  }
}

/** SIGTERM this process's children (those started so far), SIGKILL the ones still there after `graceMs`. */
export async function stopOwnChildren(graceMs = 5000): Promise<void> {
  signalPids(ownChildren(), 'SIGTERM');
  const deadline = Date.now() + graceMs;
  // A dead child stays a zombie (still listed) until node reaps it, which it does between these sleeps.
  while (Date.now() < deadline && ownChildren().some((pid) => !isZombie(pid))) await sleep(50);
  signalPids(ownChildren(), 'SIGKILL');
}

/** Resolves 'aborted' once `signal` fires (at once if it already has): to race a run against Ctrl-C. */
export function aborted(signal: AbortSignal): Promise<'aborted'> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve('aborted');
    signal.addEventListener('abort', () => resolve('aborted'), { once: true });
  });
}

/**
 * The started cluster (or other set of processes), or 'aborted' when `signal`
 * fires first. A terminal's Ctrl-C also reaches etcd and the replicas, and a
 * start would then wait out its readiness timeout (30 s) before it gives up:
 * on abort it is not waited for; what it started is stopped, and this
 * process's children with it.
 */
export async function startedUnlessAborted<T extends { stop(): Promise<void> }>(starting: Promise<T>, signal: AbortSignal): Promise<T | 'aborted'> {
  const first = await Promise.race([starting, aborted(signal)]);
  if (first !== 'aborted') return first;
  starting.then((c) => c.stop(), () => undefined);
  await stopOwnChildren();
  return 'aborted';
}

/** Runs a benchmark command's `main` on this process's arguments and exits with its code (1, after printing it, on an error it did not catch). */
export function runCommand(name: string, main: (argv: string[]) => Promise<number>): void {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err) => {
      console.error(`${name}: fatal:`, err);
      process.exit(1);
    },
  );
}

/** The pids of a local cluster's replicas (by id) and of its etcd: what the CPU snapshots follow. */
export function clusterPids(cluster: { replicas: readonly { id: string; process: { pid?: number | undefined } }[]; describe(): { etcd: { pid: number | null } } }): Record<string, number | undefined> {
  const out: Record<string, number | undefined> = {};
  for (const r of cluster.replicas) out[r.id] = r.process.pid;
  out.etcd = cluster.describe().etcd.pid ?? undefined;
  return out;
}
