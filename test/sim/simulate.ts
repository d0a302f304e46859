/**
 * One seeded run of the simulated cluster: three replicas, two logs, three
 * clients appending, a fault phase chosen by the seed, a healing phase, a
 * liveness check (every log takes an append again) and final reads of every
 * replica, judged by jepsen-lite's checker. Everything is decided by the
 * seed, so a failing seed replays exactly.
 */
import { decodeObject, timeInObject } from '../../src/flusher/object-format.js';
import type { FinalState, Verdict } from '../jepsen-lite/checker.js';
import { EtcdEndpoint } from './etcd-client.js';
import { SimEtcd } from './etcd.js';
import { FaultPlanner, type FaultWindow } from './faults.js';
import { History } from './history.js';
import { SimNetwork } from './network.js';
import { Rng } from './random.js';
import { SimReplica, type AppendAnswer, type SimParts, type TimedEntry } from './replica.js';
import { ROUTINE, Scheduler } from './scheduler.js';
import { SimObjectStore } from './store.js';

export interface SimOptions {
  /** Virtual ms of faults. */
  faultMs: number;
  /** Virtual ms of appends after healing, before the liveness check. */
  healMs: number;
  logs: number;
  clients: number;

  /** Trace lines kept for a failure report. */
  traceLines: number;
}

export const DEFAULT_SIM: SimOptions = { faultMs: 20_000, healMs: 5_000, logs: 2, clients: 3, traceLines: 400 };

export interface SimResult {
  seed: number;
  valid: boolean;
  verdict: Verdict;
  /** Logs that did not take an append after healing, and other liveness failures. */
  liveness: string[];
  /** More than one replica failed at once: liveness was not required, only safety. */
  overlapped: boolean;
  faults: FaultWindow[];
  /** heldAcked: appends a follower answered from a held answer (forwarded, then committed there by the pair rule). */
  stats: { acked: number; heldAcked: number; failed: number; indeterminate: number; virtualMs: number; events: number };
  fingerprint: string;
  trace: string[];
}

const REPLICAS = ['r1', 'r2', 'r3'];
/** A client gives up on an append after this long (its outcome is then unknown). */
const CLIENT_TIMEOUT_MS = 3_000;
/** The share of client operations that are reads, and how many entries a read returns at most (the newest). */
const READ_SHARE = 0.2;
const READ_MAX_ENTRIES = 50;
/** Time between two appends of one client. */
const THINK_MS: [number, number] = [5, 40];
/** How long a restarted replica may take to be counted by every log again once the faults are healed. */
const READY_LIMIT_MS = 30_000;
const READY_POLL_MS = 100;
/** How long the liveness check tries each log for after healing. */
const LIVENESS_LIMIT_MS = 20_000;

export function simulate(seed: number, options: SimOptions = DEFAULT_SIM): SimResult {
  const sched = new Scheduler(options.traceLines);
  try {
    return run(seed, options, sched);
  } catch (err) {
    // An invariant the production code asserts broke (or the simulation itself did): a failure of this seed, with its trace.
    const message = (err as Error).stack?.split('\n').slice(0, 4).join(' | ') ?? String(err);
    sched.note(`sim: threw: ${message}`);
    const stats = { acked: 0, heldAcked: 0, failed: 0, indeterminate: 0, virtualMs: sched.now, events: sched.executed };
    return { seed, valid: false, verdict: { valid: false, logs: {} }, liveness: [`threw: ${message}`], overlapped: false, faults: [], stats, fingerprint: sched.fingerprint(), trace: sched.trace() };
  }
}

function run(seed: number, options: SimOptions, sched: Scheduler): SimResult {
  const rng = new Rng(seed);
  const clients = Array.from({ length: options.clients }, (_, i) => `c${i + 1}`);
  const net = new SimNetwork(sched, rng, [...REPLICAS, ...clients]);
  const etcd = new SimEtcd(sched);
  const parts: SimParts = { sched, net, etcd: new EtcdEndpoint(etcd, sched, rng), store: new SimObjectStore(sched, rng), rng, replicas: new Map() };
  for (const id of REPLICAS) parts.replicas.set(id, new SimReplica(id, parts));
  const replicas = [...parts.replicas.values()];
  const history = new History(sched);
  const logs = Array.from({ length: options.logs }, (_, i) => `sim-${i}`);
  const liveness: string[] = [];

  for (const r of replicas) r.boot();
  if (!sched.runWhile(() => !replicas.every((r) => r.registered), 5_000)) liveness.push('replicas did not register');
  for (const name of logs) etcd.createLog(name, REPLICAS.length);
  sched.runWhile(() => !replicas.every((r) => logs.every((l) => r.view.log(l))), 5_000);
  for (const name of logs) {
    const first = replicas[0]!;
    const candidate = first.candidates(name)[0] ?? first.id;
    if (candidate === first.id) first.leading.takeOver(name, 0, undefined, () => undefined);
    else first.leading.command(candidate, name, 0, undefined, () => undefined);
  }
  if (!sched.runWhile(() => !logs.every((l) => etcd.getLog(l)?.segments.length), 10_000)) liveness.push('logs got no first leader');

  const workload = new Workload(parts, history, clients, logs, rng.fork('clients'));
  workload.start();
  const planner = new FaultPlanner({
    rng, sched, net, etcdFaults: parts.etcd.faults, store: parts.store, replicas: REPLICAS,
    targets: {
      crash: (id) => parts.replicas.get(id)!.crash(),
      restart: (id) => parts.replicas.get(id)!.boot(),
      pause: (id) => parts.replicas.get(id)!.pause(),
      resume: (id) => parts.replicas.get(id)!.resume(),
      gracefulRestart: (id, done) => parts.replicas.get(id)!.gracefulRestart(done),
      whenReady: (id, done) => whenReady(parts, id, done),
      someLeader: () => etcd.getLog(rng.pick(logs))?.leader?.id,
    },
  });
  planner.start(options.faultMs);
  sched.runUntil(sched.now + options.faultMs);
  // A restart under way finishes on its own; the restarted replica must then be caught up and counted again.
  if (!sched.runWhile(() => planner.replicaFaultActive, READY_LIMIT_MS)) liveness.push(`a restarted replica was not ready (counted by every log) within ${READY_LIMIT_MS} ms of healing`);
  sched.note('sim: healed; appends go on');
  sched.runUntil(sched.now + options.healMs);
  workload.stop();
  sched.runWhile(() => history.openCount() > 0, CLIENT_TIMEOUT_MS * 2);
  const unavailable = new Set<string>();
  for (const name of logs) {
    if (workload.probe(name, LIVENESS_LIMIT_MS)) continue;
    unavailable.add(name);
    liveness.push(`log ${name} took no append within ${LIVENESS_LIMIT_MS} ms of healing`);
  }
  // Let commit points reach every follower before the final reads.
  sched.runUntil(sched.now + 2_000);

  for (const r of replicas) checkMarks(r);

  const final: FinalState = {};
  for (const name of logs) {
    const fromObjects = objectEntries(etcd, parts.store, name);
    final[name] = { firstId: 0, replicas: Object.fromEntries(replicas.map((r) => [r.id, r.committedEntries(name, () => [...fromObjects])])) };
  }
  // Beyond one failed replica a log may rightly stay unavailable: it waits for the unsafe override, and
  // until then its replicas serve only what they know committed, so its final reads cannot judge loss.
  // Everything else is judged as always, and a log that did recover must have lost nothing.
  const livenessApplies = !planner.overlapped;
  const verdict = livenessApplies ? history.verdict(final) : unjudgedLoss(history.verdict(final), unavailable);
  const ops = history.ops().filter((op) => op.type === 'append');
  return {
    seed,
    valid: verdict.valid && (liveness.length === 0 || !livenessApplies),
    overlapped: planner.overlapped,
    verdict,
    liveness,
    faults: planner.windows,
    stats: { acked: ops.filter((o) => o.outcome === 'ok').length, heldAcked: replicas.reduce((n, r) => n + r.leading.heldAcked, 0), failed: ops.filter((o) => o.outcome === 'fail').length, indeterminate: ops.filter((o) => o.outcome === 'info').length, virtualMs: sched.now, events: sched.executed },
    fingerprint: sched.fingerprint(),
    trace: sched.trace(),
  };
}

/** The verdict without the 'lost' anomalies of logs still unavailable (they await the unsafe override). */
function unjudgedLoss(verdict: Verdict, unavailable: ReadonlySet<string>): Verdict {
  const logs = Object.fromEntries(
    Object.entries(verdict.logs).map(([name, v]) => {
      if (!unavailable.has(name)) return [name, v];
      const anomalies = v.anomalies.filter((a) => a.kind !== 'lost');
      return [name, { ...v, anomalies, valid: anomalies.length === 0 }];
    }),
  );
  return { valid: Object.values(logs).every((v) => v.valid), logs };
}

/**
 * The idempotent producers' marks travel with their entries (replication,
 * recovery fetches, truncation, release): every entry a replica holds has
 * exactly the mark it was proposed with (the workload names each one-entry
 * batch after its value), and no mark outlives its entry. Throws: the seed fails.
 */
function checkMarks(r: SimReplica): void {
  for (const [name, log] of r.logs) {
    const buffer = log.replica.buffer;
    const marks = buffer.marksBetween(buffer.startId, buffer.lastId);
    if (marks.length !== buffer.length) throw new Error(`marks: ${r.id} holds ${buffer.length} entries of ${name} but ${marks.length} marks`);
    for (const m of marks) {
      const value = buffer.get(m.firstId)?.toString();
      if (value !== m.producerId || m.count !== 1) throw new Error(`marks: ${r.id} ${name} id ${m.firstId} holds "${value}" under the mark of "${m.producerId}" (count ${m.count})`);
    }
  }
}

/** Calls `done` once replica `id` is ready (polled, as a rolling restart polls /readyz). */
function whenReady(parts: SimParts, id: string, done: () => void): void {
  const poll = () => (parts.replicas.get(id)!.isReady ? done() : parts.sched.at(READY_POLL_MS, `${ROUTINE}ready? ${id}`, poll));
  poll();
}

/** Every entry object storage holds for the log, by the manifest in etcd. */
function objectEntries(etcd: SimEtcd, store: SimObjectStore, name: string): TimedEntry[] {
  const out: TimedEntry[] = [];
  for (const m of etcd.manifest(name)) {
    const body = store.peek(m.key);
    if (!body) throw new Error(`manifest of ${name} names ${m.key}, which the store does not hold`);
    const object = decodeObject(body);
    object.entries.forEach((data, i) => {
      const id = object.firstId + i;
      if (id === (out.at(-1)?.id ?? -1) + 1) out.push({ id, value: data.toString(), timeMs: timeInObject(object, id) });
    });
  }
  return out;
}

/** Clients appending unique values, one append at a time each, to a log's last known leader or a random replica. */
class Workload {
  private running = false;
  private readonly leaderOf = new Map<string, string>();

  constructor(
    private readonly parts: SimParts,
    private readonly history: History,
    private readonly clients: readonly string[],
    private readonly logs: readonly string[],
    private readonly rng: Rng,
  ) {}

  start(): void {
    this.running = true;
    for (const c of this.clients) this.next(c);
  }

  stop(): void {
    this.running = false;
  }

  /** Tries appends to `name` until one is acknowledged or `limitMs` passes. */
  probe(name: string, limitMs: number): boolean {
    let acked = false;
    let inFlight = false;
    const until = this.parts.sched.now + limitMs;
    while (!acked && this.parts.sched.now < until) {
      if (!inFlight) {
        inFlight = true;
        this.append('probe', name, (a) => {
          inFlight = false;
          acked = a.kind === 'ok';
        });
      }
      this.parts.sched.runWhile(() => inFlight, CLIENT_TIMEOUT_MS * 2);
      if (!acked) this.parts.sched.runUntil(this.parts.sched.now + 100);
    }
    return acked;
  }

  private next(client: string): void {
    if (!this.running) return;
    this.parts.sched.at(this.rng.between(...THINK_MS), `${ROUTINE}${client} thinks`, () => {
      if (!this.running) return;
      const log = this.rng.pick(this.logs);
      if (this.rng.chance(READ_SHARE)) this.read(client, log, () => this.next(client));
      else this.append(client, log, () => this.next(client));
    });
  }

  /**
   * Reads what a random replica holds committed in memory: every entry it
   * serves must be at its final id (divergent, beyond), whichever replica,
   * leader or not, serves it ("readable from any replica").
   */
  private read(client: string, log: string, then: () => void): void {
    const { net, replicas } = this.parts;
    const target = this.rng.pick([...replicas.keys()]);
    const handle = this.history.invokeRead(client, log, target, false);
    net.call(client, target, `${ROUTINE}read`, () => replicas.get(target)!.committedInMemory(log, READ_MAX_ENTRIES), CLIENT_TIMEOUT_MS, (entries, failure) => {
      if (entries) handle.ok(entries);
      else if (failure === 'refused') handle.fail();
      else handle.info();
      then();
    });
  }

  private append(client: string, log: string, then: (a: AppendAnswer) => void): void {
    const { net, replicas } = this.parts;
    if (!net.nodes().includes(client)) net.addNode(client);
    const target = this.leaderOf.get(log) ?? this.rng.pick([...replicas.keys()]);
    const value = this.history.nextValue(client);
    const handle = this.history.invokeAppend(client, log, target, value);
    let done = false;
    const finish = (a: AppendAnswer) => {
      if (done) return;
      done = true;
      if (a.kind === 'ok') {
        handle.ok(a.id);
        this.leaderOf.set(log, target);
      } else {
        if (a.kind === 'fail') handle.fail();
        else handle.info();
        if (a.kind === 'fail' && a.leader) this.leaderOf.set(log, a.leader);
        else this.leaderOf.delete(log);
      }
      then(a);
    };
    net.call(client, target, `${ROUTINE}append`, () => {
      replicas.get(target)!.clientAppend(log, value, (a) => net.send(target, client, `${ROUTINE}append answer`, () => finish(a)));
      return undefined;
    }, CLIENT_TIMEOUT_MS, (_res, failure) => finish(failure === 'refused' ? { kind: 'fail', reason: 'refused' } : { kind: 'info', reason: 'timeout' }));
  }
}
