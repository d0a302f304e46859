/**
 * The seeded fault planner (the nemesis): during a fault phase it runs a
 * random sequence of faults, then heals everything. Two kinds:
 * - replica faults, one at a time (the cluster promises safety and
 *   progress only while at most one replica is failed): a replica crashed,
 *   paused, restarted gracefully, partitioned from its peers (both ways or
 *   one way), or cut from etcd;
 * - ambient faults, overlapping freely, one per target at a time: a flaky
 *   link direction, lost etcd answers for one node, the object store down,
 *   slow or losing answers.
 * Process faults are done by the replica side through FaultTargets; network,
 * etcd and store faults the planner does itself. Every fault is traced and
 * kept as a window (start, end) for reports.
 */
import type { EtcdFaults } from './etcd-client.js';
import type { SimNetwork } from './network.js';
import type { Rng } from './random.js';
import type { Scheduler, Timer } from './scheduler.js';
import type { SimObjectStore } from './store.js';

/** What the replica side does for process faults. Each must also take the node off/on the network (SimNetwork.setDown) and close/open its etcd client. */
export interface FaultTargets {
  /** The process dies now and forgets its memory (no graceful close, its lease lives until its TTL). */
  crash(node: string): void;
  /** A fresh incarnation starts on a node that crashed. */
  restart(node: string): void;
  /** The process stops running (no timers, no handling) without dying. */
  pause(node: string): void;
  resume(node: string): void;
  /** Controlled shutdown, then a fresh incarnation; call `done` once it is up (the failure lasts until then). */
  gracefulRestart(node: string, done: () => void): void;
  /**
   * Calls `done` once a restarted node is ready: caught up and counted by
   * every log again. A restart loses the process's memory, so until then the
   * node still counts as the one failed replica (as an operator waits for
   * readiness before restarting the next one).
   */
  whenReady(node: string, done: () => void): void;
  /** The leader of some log now, if any: replica faults aim at leaders half the time. */
  someLeader?(): string | undefined;
}

/** How soon the crash that overlaps a catching-up replica follows its restart, ms (jepsen-lite's restart-two, without the wait). */
const OVERLAP_GAP_MS: [number, number] = [20, 400];
/** The chance that a replica fault aims at a leader rather than at any replica. */
const LEADER_BIAS = 0.5;

export const REPLICA_FAULTS = ['partition', 'cut-out', 'cut-in', 'etcd-unreachable', 'crash', 'pause', 'graceful-restart'] as const;
export const AMBIENT_FAULTS = ['flaky-link', 'etcd-answer-loss', 'store-down', 'store-slow', 'store-answer-loss'] as const;
export type ReplicaFault = (typeof REPLICA_FAULTS)[number];
export type AmbientFault = (typeof AMBIENT_FAULTS)[number];

export interface FaultPlanConfig {
  /** Replica faults to draw from. @default all */
  replicaFaults: readonly ReplicaFault[];
  /** Ambient faults to draw from. @default all */
  ambientFaults: readonly AmbientFault[];
  /** How long a replica fault lasts, ms. @default [500, 4000] */
  replicaFaultMs: [number, number];
  /** Quiet time after a replica fault ends before the next, ms. @default [200, 2000] */
  replicaGapMs: [number, number];
  /** How often an ambient fault may start, ms, and the chance it does. @default 500, 0.3 */
  ambientEveryMs: number;
  ambientChance: number;
  /** How long an ambient fault lasts, ms. @default [200, 3000] */
  ambientFaultMs: [number, number];
  /**
   * The chance that the next replica fault does not wait for a crashed
   * replica to be ready again: two memories lost at once, beyond the bound
   * under which every log must stay available. Safety (nothing acknowledged
   * lost, duplicated, reordered or divergent) must hold all the same; only
   * the liveness check is waived for such a run. @default 0.1
   */
  overlapChance: number;
}

export const DEFAULT_FAULT_PLAN: Readonly<FaultPlanConfig> = Object.freeze({
  replicaFaults: REPLICA_FAULTS,
  ambientFaults: AMBIENT_FAULTS,
  replicaFaultMs: [500, 4000] as [number, number],
  replicaGapMs: [200, 2000] as [number, number],
  ambientEveryMs: 500,
  ambientChance: 0.3,
  ambientFaultMs: [200, 3000] as [number, number],
  overlapChance: 0.1,
});

export interface FaultWindow {
  kind: ReplicaFault | AmbientFault;
  /** What it hit: a replica, a link "a->b", or "store". */
  target: string;
  startMs: number;
  /** Undefined while it lasts. */
  endMs?: number;
}

export interface FaultWorld {
  rng: Rng;
  sched: Scheduler;
  net: SimNetwork;
  etcdFaults: EtcdFaults;
  store: SimObjectStore;
  /** The replica ids; the only nodes replica faults hit. */
  replicas: readonly string[];
  targets: FaultTargets;
}

interface Active {
  window: FaultWindow;
  undo: () => void;
  timer?: Timer;
}

export class FaultPlanner {
  readonly windows: FaultWindow[] = [];
  /** True once a fault overlapped a crashed replica's catching up: more than one replica failed. */
  overlapped = false;
  private readonly rng: Rng;
  private readonly active = new Map<string, Active>();
  private replicaFailed = false;
  private phaseEnd = 0;
  private running = false;
  private ambientTimer: Timer | undefined;
  private nextReplicaTimer: Timer | undefined;

  constructor(
    private readonly w: FaultWorld,
    private readonly config: Readonly<FaultPlanConfig> = DEFAULT_FAULT_PLAN,
  ) {
    this.rng = w.rng.fork('faults');
  }

  /** Runs faults from now for `phaseMs` of virtual time, then heals everything. */
  start(phaseMs: number): void {
    this.running = true;
    this.phaseEnd = this.w.sched.now + phaseMs;
    this.w.sched.note(`faults: phase of ${phaseMs} ms begins`);
    if (this.config.replicaFaults.length > 0) this.scheduleReplicaFault();
    if (this.config.ambientFaults.length > 0) this.ambientTimer = this.w.sched.every(this.config.ambientEveryMs, 'faults: ambient draw', () => this.maybeAmbient());
    this.w.sched.at(phaseMs, 'faults: phase ends', () => this.healAll());
  }

  /** Whether a replica fault is in force (a graceful restart counts until its new process is up). */
  get replicaFaultActive(): boolean {
    return this.replicaFailed;
  }

  /** Ends every fault now and stops planning; a graceful restart under way still finishes on its own. */
  healAll(): void {
    this.running = false;
    this.ambientTimer?.cancel();
    this.nextReplicaTimer?.cancel();
    for (const channel of [...this.active.keys()]) this.end(channel);
    this.w.net.heal();
    this.w.etcdFaults.healAll();
    this.w.store.heal();
    this.w.sched.note('faults: all healed');
  }

  /** `catchingUp`: a replica just restarted and is not waited for: crash another, a leader if one is, while it catches up. */
  private scheduleReplicaFault(catchingUp?: string): void {
    const gap = catchingUp === undefined ? this.rng.between(...this.config.replicaGapMs) : this.rng.between(...OVERLAP_GAP_MS);
    this.nextReplicaTimer = this.w.sched.at(gap, 'faults: next replica fault', () => {
      if (!this.running || this.w.sched.now >= this.phaseEnd) return;
      if (catchingUp === undefined) return this.startReplicaFault(this.rng.pick(this.config.replicaFaults), this.victim());
      const leader = this.w.targets.someLeader?.();
      this.startReplicaFault('crash', leader !== undefined && leader !== catchingUp ? leader : this.rng.pick(this.w.replicas.filter((r) => r !== catchingUp)));
    });
  }

  /** Half the time a log's leader (as the jepsen nemeses aim at leaders: where faults matter most), else any replica. */
  private victim(): string {
    const leader = this.rng.chance(LEADER_BIAS) ? this.w.targets.someLeader?.() : undefined;
    return leader ?? this.rng.pick(this.w.replicas);
  }

  private startReplicaFault(kind: ReplicaFault, node: string): void {
    const { net, etcdFaults, targets } = this.w;
    const peers = this.w.replicas.filter((r) => r !== node);
    this.replicaFailed = true;
    if (kind === 'graceful-restart') {
      const window = this.open(kind, node);
      targets.gracefulRestart(node, () => targets.whenReady(node, () => this.replicaFaultOver(window)));
      return;
    }
    const undo = ((): (() => void) => {
      switch (kind) {
        case 'partition': {
          // Sometimes from everyone (clients too), sometimes from its peers only.
          const others = this.rng.chance(0.5) ? net.nodes().filter((n) => n !== node) : peers;
          net.partition([node], others);
          return () => net.reconnect([node], others);
        }
        case 'cut-out':
          for (const p of peers) net.cutOneWay(node, p);
          return () => peers.forEach((p) => net.uncutOneWay(node, p));
        case 'cut-in':
          for (const p of peers) net.cutOneWay(p, node);
          return () => peers.forEach((p) => net.uncutOneWay(p, node));
        case 'etcd-unreachable':
          etcdFaults.setUnreachable(node, true);
          return () => etcdFaults.setUnreachable(node, false);
        case 'crash':
          targets.crash(node);
          return () => targets.restart(node);
        case 'pause':
          targets.pause(node);
          return () => targets.resume(node);
      }
    })();
    const window = this.open(kind, node);
    this.hold(`replica:${node}`, window, this.config.replicaFaultMs, () => {
      undo();
      if (kind === 'crash' && this.rng.chance(this.config.overlapChance)) {
        this.overlapped = true;
        this.w.sched.note(`faults: ${node} restarted; another crash follows before it catches up (beyond the one-failure bound)`);
        this.replicaFaultOver(window, node);
      } else if (kind === 'crash') targets.whenReady(node, () => this.replicaFaultOver(window));
      else this.replicaFaultOver(window);
    });
  }

  private replicaFaultOver(window: FaultWindow, catchingUp?: string): void {
    window.endMs ??= this.w.sched.now;
    this.replicaFailed = false;
    this.w.sched.note(`faults: end ${window.kind} ${window.target}`);
    if (this.running) this.scheduleReplicaFault(catchingUp);
  }

  private maybeAmbient(): void {
    if (!this.running || this.w.sched.now >= this.phaseEnd || !this.rng.chance(this.config.ambientChance)) return;
    const kind = this.rng.pick(this.config.ambientFaults);
    const { net, etcdFaults, store } = this.w;
    const [a, b] = this.rng.shuffle(this.w.replicas);
    const node = a!;
    const channel = kind === 'flaky-link' ? `link:${a}->${b}` : kind === 'etcd-answer-loss' ? `etcd-loss:${node}` : kind;
    if (this.active.has(channel)) return;
    const target = kind === 'flaky-link' ? `${a}->${b}` : kind === 'etcd-answer-loss' ? node : 'store';
    let undo: () => void;
    switch (kind) {
      case 'flaky-link':
        net.flaky(a!, b!, { drop: this.rng.next() * 0.3, dup: this.rng.next() * 0.2, delayMs: [1, this.rng.between(5, 60)] });
        undo = () => net.steady(a!, b!);
        break;
      case 'etcd-answer-loss':
        etcdFaults.setAnswerLoss(node, 0.2 + this.rng.next() * 0.6);
        undo = () => etcdFaults.setAnswerLoss(node, 0);
        break;
      case 'store-down':
        store.setDown(true);
        undo = () => store.setDown(false);
        break;
      case 'store-slow':
        store.setSlow([50, this.rng.between(100, 1000)]);
        undo = () => store.setSlow([0, 0]);
        break;
      case 'store-answer-loss':
        store.setAnswerLoss(0.2 + this.rng.next() * 0.6);
        undo = () => store.setAnswerLoss(0);
        break;
    }
    this.hold(channel, this.open(kind, target), this.config.ambientFaultMs, () => {
      undo();
      this.w.sched.note(`faults: end ${kind} ${target}`);
    });
  }

  /** Keeps a fault for a random duration (never past the phase's end), then runs `finish`. */
  private hold(channel: string, window: FaultWindow, durationMs: [number, number], finish: () => void): void {
    const duration = Math.min(this.rng.between(...durationMs), Math.max(0, this.phaseEnd - this.w.sched.now));
    const entry: Active = { window, undo: finish };
    entry.timer = this.w.sched.at(duration, `faults: ${window.kind} ${window.target} ends`, () => this.end(channel));
    this.active.set(channel, entry);
  }

  private end(channel: string): void {
    const entry = this.active.get(channel);
    if (!entry) return;
    this.active.delete(channel);
    entry.timer?.cancel();
    entry.window.endMs = this.w.sched.now;
    entry.undo();
  }

  private open(kind: ReplicaFault | AmbientFault, target: string): FaultWindow {
    const window: FaultWindow = { kind, target, startMs: this.w.sched.now };
    this.windows.push(window);
    this.w.sched.note(`faults: start ${kind} ${target}`);
    return window;
  }
}
