/**
 * SimEtcdClient: one replica process's connection to SimEtcd. Every
 * operation is a request with random latency, answered through a callback;
 * the faults of the node it runs on apply (etcd unreachable: the request
 * fails after a timeout without being applied; answer lost: it IS applied,
 * yet the client is told it failed). Watches deliver each revision's changes
 * late but in revision order, and hold them while the node cannot reach etcd.
 * A closed client (its process crashed or stopped) gets no more callbacks.
 */
import type { LeaderInfo, LogMeta, LogRecord, ManifestEntry, MemberInfo, SegmentMeta } from '../../src/fencing/keys.js';
import type { SimEtcd, WatchEvent } from './etcd.js';
import type { Rng } from './random.js';
import { ROUTINE, type Scheduler } from './scheduler.js';

/** A request that got no answer: it may or may not have been applied (only `unreachable` is known not to). */
export class EtcdUnavailable {
  constructor(readonly reason: 'unreachable' | 'answer-lost') {}
}

/** An answer, with etcd's revision once it applied the request (what a real txn response's header carries). */
export type Reply<T> = (result: T | EtcdUnavailable, revision?: number) => void;

export interface EtcdClientConfig {
  /** One-way latency between a replica and etcd, ms. @default [1, 4] */
  latencyMs: [number, number];
  /** How long a request waits for an answer before failing, ms. @default 500 */
  requestTimeoutMs: number;
  /** Extra lateness of each watch event, ms (drawn per event, order kept). @default [0, 30] */
  watchLagMs: [number, number];
}

export const DEFAULT_ETCD_CLIENT: Readonly<EtcdClientConfig> = Object.freeze<EtcdClientConfig>({ latencyMs: [1, 4], requestTimeoutMs: 500, watchLagMs: [0, 30] });

interface NodeFaults {
  unreachable: boolean;
  /** Probability that an applied request's answer is lost. */
  answerLoss: number;
}

/** Faults are per node (the host's path to etcd), so a restarted process's new client inherits them. */
export class EtcdFaults {
  private readonly byNode = new Map<string, NodeFaults>();
  private readonly healed = new Map<string, Set<() => void>>();

  get(node: string): Readonly<NodeFaults> {
    return this.byNode.get(node) ?? { unreachable: false, answerLoss: 0 };
  }

  setUnreachable(node: string, unreachable: boolean): void {
    this.byNode.set(node, { ...this.get(node), unreachable });
    if (!unreachable) for (const resume of this.healed.get(node) ?? []) resume();
  }

  setAnswerLoss(node: string, p: number): void {
    this.byNode.set(node, { ...this.get(node), answerLoss: p });
  }

  healAll(): void {
    const nodes = [...this.byNode.keys()];
    this.byNode.clear();
    for (const node of nodes) for (const resume of this.healed.get(node) ?? []) resume();
  }

  /** `resume` runs whenever `node` can reach etcd again. */
  onHeal(node: string, resume: () => void): () => void {
    const set = this.healed.get(node) ?? new Set();
    this.healed.set(node, set);
    set.add(resume);
    return () => set.delete(resume);
  }
}

export class SimEtcdClient {
  private closed = false;
  private readonly leasesGranted = new Set<string>();
  private readonly watches: Watch[] = [];
  private readonly rng: Rng;

  constructor(
    private readonly etcd: SimEtcd,
    private readonly faults: EtcdFaults,
    private readonly sched: Scheduler,
    rng: Rng,
    /** The node (replica id) this process runs on: its faults apply. */
    readonly node: string,
    private readonly config: Readonly<EtcdClientConfig> = DEFAULT_ETCD_CLIENT,
  ) {
    this.rng = rng.fork(`etcd-client:${node}`);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  grantLease(ttlMs: number, done: Reply<string>): void {
    this.request('grantLease', () => {
      const id = this.etcd.grantLease(ttlMs);
      this.leasesGranted.add(id);
      return id;
    }, done);
  }
  keepAlive(leaseId: string, done: Reply<boolean>): void {
    this.request('keepAlive', () => this.etcd.keepAlive(leaseId), done);
  }
  revokeLease(leaseId: string, done: Reply<boolean>): void {
    this.request('revokeLease', () => this.etcd.revokeLease(leaseId), done);
  }
  register(member: MemberInfo, leaseId: string, done: Reply<boolean>): void {
    this.request('register', () => this.etcd.register(member, leaseId), done);
  }
  markDraining(id: string, done: Reply<boolean>): void {
    this.request('markDraining', () => this.etcd.markDraining(id), done);
  }
  campaign(id: string, leaseId: string, done: Reply<string | undefined>): void {
    this.request('campaign', () => this.etcd.campaign(id, leaseId), done);
  }
  resign(id: string, done: Reply<boolean>): void {
    this.request('resign', () => this.etcd.resign(id), done);
  }
  createLog(name: string, replicas: number, done: Reply<{ created: boolean; error?: string }>): void {
    this.request('createLog', () => this.etcd.createLog(name, replicas), done);
  }
  deleteLog(name: string, done: Reply<LogMeta | undefined>): void {
    this.request('deleteLog', () => this.etcd.deleteLog(name), done);
  }
  claimLeadership(name: string, expectedEpoch: number, leader: Pick<LeaderInfo, 'id' | 'incarnation'>, leaseId: string, replacing: LeaderInfo | undefined, done: Reply<number | undefined>): void {
    this.request('claimLeadership', () => this.etcd.claimLeadership(name, expectedEpoch, leader, leaseId, replacing), done);
  }
  releaseLeadership(name: string, leader: LeaderInfo, done: Reply<boolean>): void {
    this.request('releaseLeadership', () => this.etcd.releaseLeadership(name, leader), done);
  }
  openSegment(name: string, leader: LeaderInfo, seals: readonly SegmentMeta[], open: SegmentMeta, done: Reply<boolean>): void {
    this.request('openSegment', () => this.etcd.openSegment(name, leader, seals, open), done);
  }
  updateSegment(name: string, leader: LeaderInfo, segment: SegmentMeta, done: Reply<boolean>): void {
    this.request('updateSegment', () => this.etcd.updateSegment(name, leader, segment), done);
  }
  closeSegmentClean(name: string, leader: LeaderInfo, segment: SegmentMeta, done: Reply<boolean>): void {
    this.request('closeSegmentClean', () => this.etcd.closeSegmentClean(name, leader, segment), done);
  }
  recordFlush(name: string, leader: LeaderInfo, entry: ManifestEntry, done: Reply<boolean>): void {
    this.request('recordFlush', () => this.etcd.recordFlush(name, leader, entry), done);
  }
  forgetFlushed(name: string, leader: LeaderInfo, entries: readonly ManifestEntry[], knownMark: number | undefined, done: Reply<boolean>): void {
    this.request('forgetFlushed', () => this.etcd.forgetFlushed(name, leader, entries, knownMark), done);
  }
  getLog(name: string, done: Reply<{ log: LogRecord | undefined; flushedId: number; manifest: ManifestEntry[] }>): void {
    this.request('getLog', () => ({ log: this.etcd.getLog(name), flushedId: this.etcd.flushedId(name), manifest: this.etcd.manifest(name) }), done);
  }
  /** Everything at one revision, as changes; start a watch from its revision to miss nothing. */
  snapshot(done: Reply<WatchEvent>): void {
    this.request('snapshot', () => this.etcd.snapshot(), done);
  }

  /**
   * Delivers every event after `fromRevision` (0: all), each once, in revision
   * order, each at least `watchLagMs` late, none while the node cannot reach
   * etcd (they wait and follow in order once it can). Returns a cancel.
   */
  watch(fromRevision: number, onEvent: (ev: WatchEvent) => void): () => void {
    const w = new Watch(this, onEvent);
    this.watches.push(w);
    for (const ev of this.etcd.events) if (ev.revision > fromRevision) w.enqueue(ev);
    const unlisten = this.etcd.onEvent((ev) => w.enqueue(ev));
    const unheal = this.faults.onHeal(this.node, () => w.pump());
    w.stop = () => {
      unlisten();
      unheal();
      w.queue.length = 0;
    };
    return () => w.stop();
  }

  /** The process is gone: no more callbacks. Graceful: revoke the leases granted through this client (best effort, if etcd is reachable). */
  close(revokeLeases = false): void {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.watches) w.stop();
    if (!revokeLeases || this.faults.get(this.node).unreachable) return;
    const leases = [...this.leasesGranted];
    this.sched.at(this.latency(), `etcd: ${this.node} revokes ${leases.join(',')}`, () => {
      for (const id of leases) this.etcd.revokeLease(id);
    });
  }

  /** @internal for Watch */
  reachable(): boolean {
    return !this.faults.get(this.node).unreachable;
  }
  /** @internal for Watch */
  lag(): number {
    return this.latency() + this.rng.between(...this.config.watchLagMs);
  }
  /** @internal for Watch */
  get scheduler(): Scheduler {
    return this.sched;
  }

  /**
   * The life of one request: it reaches etcd after a latency (and is applied)
   * only if the node can reach etcd then; its answer comes back after another
   * latency unless it is lost (by chance, or the node became unreachable).
   * A request without an answer fails at its timeout.
   */
  private request<T>(label: string, apply: () => T, done: Reply<T>): void {
    let answered = false;
    const answer = (result: T | EtcdUnavailable, revision?: number) => {
      if (answered) return;
      answered = true;
      timeout.cancel();
      if (!this.closed) done(result, revision);
    };
    const timeout = this.sched.at(this.config.requestTimeoutMs, `etcd: ${this.node} ${label} times out`, () => answer(new EtcdUnavailable(this.reachable() ? 'answer-lost' : 'unreachable')));
    if (!this.reachable()) return;
    // Keep-alives are routine: out of the trace.
    const mark = label === 'keepAlive' ? ROUTINE : '';
    this.sched.at(this.latency(), `${mark}etcd: ${this.node} ${label}`, () => {
      if (!this.reachable() || answered) return;
      const result = apply();
      const revision = this.etcd.revision;
      if (this.rng.chance(this.faults.get(this.node).answerLoss)) return this.sched.note(`etcd: ${this.node} ${label} answer lost`);
      this.sched.at(this.latency(), `${mark}etcd: ${this.node} ${label} answered`, () => {
        if (this.reachable()) answer(result, revision);
      });
    });
  }

  private latency(): number {
    return this.rng.between(...this.config.latencyMs);
  }
}

/** One watch's queue: events wait here until due and until the node can reach etcd. */
class Watch {
  readonly queue: { ev: WatchEvent; dueAt: number }[] = [];
  private armed = false;
  stop: () => void = () => undefined;

  constructor(
    private readonly client: SimEtcdClient,
    private readonly onEvent: (ev: WatchEvent) => void,
  ) {}

  enqueue(ev: WatchEvent): void {
    this.queue.push({ ev: structuredClone(ev), dueAt: this.client.scheduler.now + this.client.lag() });
    this.pump();
  }

  /** Arms one delivery for the head of the queue; the next is armed after it ran, so order is kept. */
  pump(): void {
    const head = this.queue[0];
    if (this.armed || !head || this.client.isClosed || !this.client.reachable()) return;
    this.armed = true;
    const sched = this.client.scheduler;
    sched.at(Math.max(0, head.dueAt - sched.now), `etcd: ${this.client.node} watch rev ${head.ev.revision}`, () => {
      this.armed = false;
      if (this.client.isClosed || !this.client.reachable() || this.queue[0] !== head) return this.pump();
      this.queue.shift();
      this.onEvent(head.ev);
      this.pump();
    });
  }
}

/** Where replicas connect to etcd: the model, the per-node faults, and a client per process incarnation. */
export class EtcdEndpoint {
  readonly faults = new EtcdFaults();
  private readonly rng: Rng;

  constructor(
    readonly etcd: SimEtcd,
    private readonly sched: Scheduler,
    rng: Rng,
    private readonly config: Readonly<EtcdClientConfig> = DEFAULT_ETCD_CLIENT,
  ) {
    this.rng = rng.fork('etcd');
  }

  /** A new process on `node` connects (close the old one's client when it dies). */
  connect(node: string): SimEtcdClient {
    return new SimEtcdClient(this.etcd, this.faults, this.sched, this.rng, node, this.config);
  }
}
