/**
 * SimEtcd: the cluster's etcd as an in-memory model with one revision
 * counter. Each operation is one transaction of src/fencing (same compares,
 * same writes, applied atomically at one revision), over the key model of
 * src/fencing/keys.ts. Leases expire on virtual time and take their keys
 * (member, leader and coordinator keys) with them. Every change is recorded
 * as a watch event for SimEtcdClient (etcd-client.ts), which adds latency,
 * faults and late watch delivery; the model itself answers at once.
 */
import { leaderKeyValue, type LeaderInfo, type LogMeta, type LogRecord, type ManifestEntry, type MemberInfo, type SegmentMeta } from '../../src/fencing/keys.js';
import { describeChange, type EtcdChange, type WatchEvent } from './etcd-events.js';
import type { Scheduler, Timer } from './scheduler.js';

export type { EtcdChange, WatchEvent } from './etcd-events.js';

interface Leased<T> {
  value: T;
  leaseId: string;
}

interface LogState {
  meta: LogMeta;
  leader: Leased<LeaderInfo> | undefined;
  segments: Map<number, SegmentMeta>;
  manifest: Map<number, ManifestEntry>;
  flushedThrough: number | undefined;
}

interface Lease {
  ttlMs: number;
  expiresAt: number;
  timer: Timer;
}

export class SimEtcd {
  revision = 0;
  /** Every change since the start, for watches that start from an old revision. */
  readonly events: WatchEvent[] = [];
  private readonly listeners = new Set<(ev: WatchEvent) => void>();
  private readonly leases = new Map<string, Lease>();
  private leaseCounter = 0;
  private readonly nodeIds = new Set<string>();
  private readonly memberKeys = new Map<string, Leased<MemberInfo>>();
  private coordinatorKey: Leased<string> | undefined;
  private readonly logs = new Map<string, LogState>();
  /** Outlives the log's deletion: a log created again counts on from it. */
  private readonly epochs = new Map<string, number>();
  private pending: EtcdChange[] = [];

  constructor(private readonly sched: Scheduler) {}

  // Leases.

  grantLease(ttlMs: number): string {
    const id = `lease-${++this.leaseCounter}`;
    const lease: Lease = { ttlMs, expiresAt: this.sched.now + ttlMs, timer: this.expiryTimer(id, ttlMs) };
    this.leases.set(id, lease);
    return id;
  }

  /** Extends the lease by its TTL from now; false if it is gone (expired or revoked). */
  keepAlive(leaseId: string): boolean {
    const lease = this.leases.get(leaseId);
    if (!lease) return false;
    lease.timer.cancel();
    lease.expiresAt = this.sched.now + lease.ttlMs;
    lease.timer = this.expiryTimer(leaseId, lease.ttlMs);
    return true;
  }

  /** Ends the lease now, deleting its keys in one revision; false if it was already gone. */
  revokeLease(leaseId: string): boolean {
    const lease = this.leases.get(leaseId);
    if (!lease) return false;
    lease.timer.cancel();
    this.endLease(leaseId, 'revoked');
    return true;
  }

  leaseAlive(leaseId: string): boolean {
    return this.leases.has(leaseId);
  }

  // Members and the coordinator (session.ts, coordinator-election.ts, directory.ts).

  /** join(): the permanent node key, then the member key bound to the lease. False if the lease is gone. */
  register(member: MemberInfo, leaseId: string): boolean {
    if (!this.leases.has(leaseId)) return false;
    if (!this.nodeIds.has(member.id)) {
      this.nodeIds.add(member.id);
      this.pending.push({ kind: 'node', id: member.id });
    }
    this.putMember(member, leaseId);
    return this.commit();
  }

  /** putMember({...self, draining: true}) under the member's current lease; false if it is not registered. */
  markDraining(id: string): boolean {
    const current = this.memberKeys.get(id);
    if (!current) return false;
    this.putMember({ ...current.value, draining: true }, current.leaseId);
    return this.commit();
  }

  /** Puts the coordinator key if absent; answers who holds it after the attempt (the real campaign reads it back). */
  campaign(id: string, leaseId: string): string | undefined {
    if (this.coordinatorKey === undefined && this.leases.has(leaseId)) {
      this.coordinatorKey = { value: id, leaseId };
      this.pending.push({ kind: 'coordinator', id });
      this.commit();
    }
    return this.coordinatorKey?.value;
  }

  /** Deletes the coordinator key if `id` holds it. */
  resign(id: string): boolean {
    if (this.coordinatorKey?.value !== id) return false;
    this.coordinatorKey = undefined;
    this.pending.push({ kind: 'coordinator', id: undefined });
    return this.commit();
  }

  // Logs (log-transactions.ts).

  /** Creates the log at its current epoch (0 if never led) over the first `replicas` node ids. */
  createLog(name: string, replicas: number): { created: boolean; error?: string } {
    const nodeIds = [...this.nodeIds].sort();
    if (nodeIds.length < replicas) return { created: false, error: `only ${nodeIds.length} of ${replicas} replicas have joined the cluster` };
    if (this.logs.has(name)) return { created: false };
    const meta: LogMeta = { name, uid: `uid-${this.revision + 1}`, replicas: nodeIds.slice(0, replicas), createdAt: new Date(this.sched.now).toISOString() };
    this.logs.set(name, { meta, leader: undefined, segments: new Map(), manifest: new Map(), flushedThrough: undefined });
    if (!this.epochs.has(name)) this.epochs.set(name, 0);
    this.changedLog(name);
    return { created: this.commit() };
  }

  /** Deletes everything of the log but its epoch; answers the metadata deleted. */
  deleteLog(name: string): LogMeta | undefined {
    const log = this.logs.get(name);
    if (!log) return undefined;
    this.logs.delete(name);
    this.changedLog(name);
    this.commit();
    return structuredClone(log.meta);
  }

  /**
   * Epoch == expectedEpoch, and the leader key absent (or exactly `replacing`):
   * raises the epoch by one and binds the leader key to `leaseId`. Answers the
   * new epoch, undefined if a compare failed or the lease is gone (etcd refuses a put on an unknown lease).
   */
  claimLeadership(name: string, expectedEpoch: number, leader: Pick<LeaderInfo, 'id' | 'incarnation'>, leaseId: string, replacing?: LeaderInfo): number | undefined {
    const log = this.logs.get(name);
    if (!log || this.epochs.get(name) !== expectedEpoch || !this.leases.has(leaseId)) return undefined;
    const current = log.leader && leaderKeyValue(log.leader.value);
    if (replacing === undefined ? current !== undefined : current !== leaderKeyValue(replacing)) return undefined;
    const epoch = expectedEpoch + 1;
    this.epochs.set(name, epoch);
    log.leader = { value: { id: leader.id, epoch, incarnation: leader.incarnation }, leaseId };
    this.changedLog(name);
    this.commit();
    return epoch;
  }

  releaseLeadership(name: string, leader: LeaderInfo): boolean {
    return this.asLeader(name, leader, (log) => void (log.leader = undefined));
  }

  /** Seals the recovered segments and opens this epoch's, as the leader. */
  openSegment(name: string, leader: LeaderInfo, seals: readonly SegmentMeta[], open: SegmentMeta): boolean {
    return this.asLeader(name, leader, (log) => {
      for (const seg of [...seals, open]) log.segments.set(seg.epoch, structuredClone(seg));
    });
  }

  updateSegment(name: string, leader: LeaderInfo, segment: SegmentMeta): boolean {
    return this.asLeader(name, leader, (log) => void log.segments.set(segment.epoch, structuredClone(segment)));
  }

  /** Seals `segment` closed clean and deletes the leader key, in one transaction. */
  closeSegmentClean(name: string, leader: LeaderInfo, segment: SegmentMeta): boolean {
    return this.asLeader(name, leader, (log) => {
      log.segments.set(segment.epoch, { ...structuredClone(segment), closedClean: true });
      log.leader = undefined;
    });
  }

  recordFlush(name: string, leader: LeaderInfo, entry: ManifestEntry): boolean {
    return this.asLeader(name, leader, (log) => void log.manifest.set(entry.firstId, { ...entry }));
  }

  /** Deletes manifest entries and raises the flushed mark, compared on the mark the caller knows (undefined: absent). */
  forgetFlushed(name: string, leader: LeaderInfo, entries: readonly ManifestEntry[], knownMark: number | undefined): boolean {
    if (entries.length === 0) return true;
    if (this.logs.get(name)?.flushedThrough !== knownMark) return false;
    return this.asLeader(name, leader, (log) => {
      for (const e of entries) log.manifest.delete(e.firstId);
      log.flushedThrough = Math.max(knownMark ?? -1, ...entries.map((e) => e.lastId));
    });
  }

  // Reads: fresh copies, never live state.

  getLog(name: string): LogRecord | undefined {
    const log = this.logs.get(name);
    if (!log) return undefined;
    const segments = [...log.segments.values()].sort((a, b) => a.epoch - b.epoch);
    return structuredClone({ meta: log.meta, epoch: this.epochs.get(name) ?? 0, leader: log.leader?.value, segments });
  }

  /** Highest id durable in object storage (-1 none): the highest manifest lastId or the flushed mark. */
  flushedId(name: string): number {
    const log = this.logs.get(name);
    let max = log?.flushedThrough ?? -1;
    for (const e of log?.manifest.values() ?? []) max = Math.max(max, e.lastId);
    return max;
  }

  manifest(name: string): ManifestEntry[] {
    return structuredClone([...(this.logs.get(name)?.manifest.values() ?? [])].sort((a, b) => a.firstId - b.firstId));
  }

  members(): MemberInfo[] {
    return [...this.memberKeys.values()].map((m) => structuredClone(m.value)).sort((a, b) => a.id.localeCompare(b.id));
  }

  nodes(): string[] {
    return [...this.nodeIds].sort();
  }

  logNames(): string[] {
    return [...this.logs.keys()].sort();
  }

  coordinator(): string | undefined {
    return this.coordinatorKey?.value;
  }

  /** Every log, member and the coordinator as of now, as the changes that would build them from nothing. */
  snapshot(): WatchEvent {
    const changes: EtcdChange[] = [
      ...this.nodes().map((id): EtcdChange => ({ kind: 'node', id })),
      ...this.members().map((member): EtcdChange => ({ kind: 'member', id: member.id, member })),
      { kind: 'coordinator', id: this.coordinator() },
      ...this.logNames().map((name) => this.logChange(name)),
    ];
    return { revision: this.revision, changes };
  }

  /** Called with every event as it is committed. */
  onEvent(listener: (ev: WatchEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Runs `write` only if epoch == leader.epoch and the leader key is exactly `leader` (ifStillLeader). */
  private asLeader(name: string, leader: LeaderInfo, write: (log: LogState) => void): boolean {
    const log = this.logs.get(name);
    if (!log || this.epochs.get(name) !== leader.epoch) return false;
    if (!log.leader || leaderKeyValue(log.leader.value) !== leaderKeyValue(leader)) return false;
    write(log);
    this.changedLog(name);
    return this.commit();
  }

  private putMember(member: MemberInfo, leaseId: string): void {
    this.memberKeys.set(member.id, { value: structuredClone(member), leaseId });
    this.pending.push({ kind: 'member', id: member.id, member: structuredClone(member) });
  }

  private expiryTimer(leaseId: string, ttlMs: number): Timer {
    return this.sched.at(ttlMs, `etcd: lease ${leaseId} expires`, () => this.endLease(leaseId, 'expired'));
  }

  /** Deletes every key bound to the lease, at one revision (as etcd does). */
  private endLease(leaseId: string, why: string): void {
    this.leases.delete(leaseId);
    for (const [id, m] of this.memberKeys) {
      if (m.leaseId !== leaseId) continue;
      this.memberKeys.delete(id);
      this.pending.push({ kind: 'member', id, member: undefined });
    }
    for (const [name, log] of this.logs) {
      if (log.leader?.leaseId !== leaseId) continue;
      log.leader = undefined;
      this.changedLog(name);
    }
    if (this.coordinatorKey?.leaseId === leaseId) {
      this.coordinatorKey = undefined;
      this.pending.push({ kind: 'coordinator', id: undefined });
    }
    this.sched.note(`etcd: lease ${leaseId} ${why}`);
    this.commit();
  }

  private changedLog(name: string): void {
    // The change is snapshotted at commit (below), after every write of the transaction.
    if (!this.pending.some((c) => c.kind === 'log' && c.name === name)) this.pending.push({ kind: 'log', name, log: undefined, flushedId: -1, manifest: [] });
  }

  private logChange(name: string): EtcdChange {
    return { kind: 'log', name, log: this.getLog(name), flushedId: this.flushedId(name), manifest: this.manifest(name) };
  }

  /** Ends a transaction: one new revision for its changes, if any. Always true (a transaction that got here succeeded). */
  private commit(): boolean {
    if (this.pending.length === 0) return true;
    const changes = this.pending.map((c) => (c.kind === 'log' ? this.logChange(c.name) : c));
    this.pending = [];
    const ev: WatchEvent = { revision: ++this.revision, changes };
    this.events.push(ev);
    this.sched.note(`etcd: rev ${ev.revision} ${changes.map(describeChange).join(', ')}`);
    for (const l of this.listeners) l(ev);
    return true;
  }
}
