/**
 * A simulated replica process: the production control plane and replication
 * core (LogReplica, LeaderLog, TakeoverMachine, DrainMachine,
 * FailureDetector, the placement rules, the wire and object formats), with
 * simulated etcd, peers and object store in place of etcd3, undici and S3.
 * This file owns the process: its life (boot, crash, pause, graceful stop),
 * its lease and view of etcd, the peer and client requests it serves, and
 * failure detection; leading.ts owns what it does for the logs it leads.
 *
 * Every callback is guarded by the process generation: a crashed process
 * hears nothing more, and a paused one runs its callbacks only on resume.
 */
import type { LeaderInfo, MemberInfo } from '../../src/fencing/keys.js';
import { leaderKeyValue } from '../../src/fencing/keys.js';
import { FailureDetector, watchedLeader, type ProbeOutcome } from '../../src/control/failure-detector.js';
import { judgeLeaderClaim, receiveAppend, receiveFence, releasesOnFlush, takeoverRefusal } from '../../src/control/follower.js';
import { fenceAnswerOf } from '../../src/control/takeover.js';
import { leaderCandidates, leadershipCounts, type PlacedLog, type PlacementView } from '../../src/control/placement.js';
import { LogReplica } from '../../src/quorum/log-replica.js';
import { incarnationTag, ReplyStatus, type AppendReply, type EntryRun } from '../../src/quorum/messages.js';
import type { FenceAnswer } from '../../src/quorum/recovery.js';
import { decodeAppendReply, decodeAppendRequest, encodeAppendReply, encodeAppendRequest } from '../../src/peer/wire.js';
import { parseReplicaConfig, type ReplicaConfig } from '../../src/replica/config.js';
import { detectorConfigOf, passTicksOf } from '../../src/replica/failover.js';
import { leaderTicksOf, type LeaderTicks } from '../../src/replica/log-state.js';
import { EtcdUnavailable, type EtcdEndpoint, type SimEtcdClient } from './etcd-client.js';
import { Leading, type SimLog } from './leading.js';
import type { SimNetwork } from './network.js';
import type { Rng } from './random.js';
import { ROUTINE, type Scheduler, type Timer } from './scheduler.js';
import type { SimObjectStore } from './store.js';
import { SimView } from './view.js';

/** Timing of the simulated processes, in virtual ms (production's defaults where it has one). */
export const SIM_TIMING = {
  leaseTtlMs: 5_000,
  keepAliveMs: 1_000,
  coordinatorPassMs: 300,
  flushPassMs: 50,
  /** An etcd write that failed is tried again after this long. */
  retryMs: 200,
  /** A peer request (replication, fence, fetch, probe) unanswered this long fails. */
  peerTimeoutMs: 1_000,
  /** A takeover command is answered once the takeover ends: allow the whole recovery. */
  commandTimeoutMs: 10_000,
  /** Longest controlled shutdown before the process exits as a crash would. */
  shutdownTimeoutMs: 20_000,
} as const;

export interface SimParts {
  sched: Scheduler;
  net: SimNetwork;
  etcd: EtcdEndpoint;
  store: SimObjectStore;
  rng: Rng;
  /** Every replica by id: peers' request handlers run at the receiver. */
  replicas: Map<string, SimReplica>;
}

/** A committed entry as the final reads see it. */
export interface TimedEntry {
  id: number;
  value: string;
  timeMs: number;
}

export type AppendAnswer = { kind: 'ok'; id: number } | { kind: 'fail'; reason: string; leader?: string } | { kind: 'info'; reason: string };

/** Clock skews of the replicas, by the number in their ids. */
const CLOCK_SKEWS_MS = [3_000, 0, -4_000];

export class SimReplica {
  readonly config: ReplicaConfig;
  readonly leaderTicks: LeaderTicks;
  readonly logs = new Map<string, SimLog>();
  readonly view = new SimView();
  readonly leading: Leading;
  incarnation = '';
  client: SimEtcdClient | undefined;
  leaseId: string | undefined;
  /** Set while the process runs: registered with a lease, watching. */
  registered = false;
  draining = false;
  private generation = 0;
  private alive = false;
  private paused = false;
  private readonly onResume: (() => void)[] = [];
  private timers: Timer[] = [];
  private detector!: FailureDetector;
  private lastKeepAliveAt = 0;
  private ticks = 0;

  /**
   * This replica's wall clock runs this far off the virtual time: the
   * replicas' clocks disagree by seconds, so times stamped across leadership
   * changes must hold to what the log recorded, not to the new leader's clock.
   */
  readonly clockSkewMs: number;

  constructor(
    readonly id: string,
    readonly parts: SimParts,
  ) {
    this.clockSkewMs = CLOCK_SKEWS_MS[Number(id.replace(/\D/g, '')) % CLOCK_SKEWS_MS.length]!;
    this.config = parseReplicaConfig(['--id', id]);
    this.leaderTicks = leaderTicksOf(this.config);
    this.leading = new Leading(this);
  }

  get sched(): Scheduler {
    return this.parts.sched;
  }

  get isUp(): boolean {
    return this.alive && !this.paused;
  }

  /** Wraps a callback so that only this process, running, hears it. */
  guard<A extends unknown[]>(fn: (...args: A) => void): (...args: A) => void {
    const generation = this.generation;
    return (...args: A) => {
      if (!this.alive || this.generation !== generation) return;
      if (this.paused) this.onResume.push(() => fn(...args));
      else fn(...args);
    };
  }

  note(text: string): void {
    this.sched.note(`${this.id}: ${text}`);
  }

  // ---- process life ----

  boot(): void {
    this.generation++;
    this.alive = true;
    this.paused = false;
    this.draining = false;
    this.registered = false;
    this.incarnation = `${this.id}.${this.generation}`;
    this.logs.clear();
    this.view.members.clear();
    this.view.logs.clear();
    this.view.coordinator = undefined;
    this.detector = new FailureDetector(detectorConfigOf(this.config));
    this.parts.net.setDown(this.id, false);
    this.client = this.parts.etcd.connect(this.id);
    this.note(`boots as ${this.incarnation}`);
    this.register();
    this.every(this.config.tickMs, 'tick', () => this.tick());
    this.every(SIM_TIMING.keepAliveMs, 'keep-alive', () => this.keepAlive());
    this.every(SIM_TIMING.coordinatorPassMs, 'coordinator', () => this.coordinatorPass());
    this.every(SIM_TIMING.flushPassMs, 'flush', () => this.leading.flushPass());
  }

  /** The process dies: memory, timers and connections gone; its lease lives until its TTL. */
  crash(): void {
    this.note('crashes');
    this.stopProcess(false);
  }

  pause(): void {
    this.note('pauses');
    this.paused = true;
  }

  resume(): void {
    this.note('resumes');
    this.paused = false;
    for (const fn of this.onResume.splice(0)) if (this.alive && !this.paused) fn();
  }

  /** Controlled shutdown (drain every led log), then a fresh incarnation; `done` once it is up. */
  gracefulRestart(done: () => void): void {
    const deadline = this.sched.at(SIM_TIMING.shutdownTimeoutMs, `${this.id} shutdown timeout`, () => finish(false));
    const finish = this.guard((clean: boolean) => {
      deadline.cancel();
      this.note(clean ? 'stopped cleanly' : 'shutdown timed out: exits as a crash would');
      this.stopProcess(clean);
      this.sched.at(SIM_TIMING.retryMs, `${this.id} restarts`, () => {
        this.boot();
        done();
      });
    });
    this.draining = true;
    this.note('drains');
    const resign = () => this.client?.resign(this.id, this.guard(() => undefined));
    resign();
    this.client?.markDraining(this.id, this.guard(() => this.leading.drainAll(() => finish(true))));
  }

  private stopProcess(revokeLease: boolean): void {
    this.alive = false;
    this.registered = false;
    for (const t of this.timers) t.cancel();
    this.timers = [];
    this.onResume.length = 0;
    this.client?.close(revokeLease);
    this.client = undefined;
    this.parts.net.setDown(this.id, true);
  }

  /** A timer of this process: a paused process misses its ticks (they do not pile up for its resume). */
  private every(ms: number, label: string, fn: () => void): void {
    const generation = this.generation;
    this.timers.push(this.sched.every(ms, `${ROUTINE}${this.id} ${label}`, () => {
      if (this.alive && !this.paused && this.generation === generation) fn();
    }));
  }

  // ---- lease, registration, view ----

  private register(): void {
    const client = this.client!;
    client.grantLease(SIM_TIMING.leaseTtlMs, this.guard((lease) => {
      if (lease instanceof EtcdUnavailable) return this.retry('grant lease', () => this.register());
      this.leaseId = lease;
      this.lastKeepAliveAt = this.sched.now;
      const member: MemberInfo = { id: this.id, clientUrl: `sim://${this.id}`, peerUrl: `sim://${this.id}`, incarnation: this.incarnation };
      client.register(member, lease, this.guard((ok) => {
        if (ok instanceof EtcdUnavailable || !ok) return this.retry('register', () => this.register());
        this.load();
      }));
    }));
  }

  private load(): void {
    this.client!.snapshot(this.guard((snap) => {
      if (snap instanceof EtcdUnavailable) return this.retry('snapshot', () => this.load());
      this.view.apply(snap);
      this.registered = true;
      this.note('registered');
      for (const name of this.view.logs.keys()) this.logState(name);
      this.client!.watch(snap.revision, this.guard((ev) => this.onWatch(ev)));
    }));
  }

  private retry(what: string, fn: () => void): void {
    this.note(`${what} failed; retrying`);
    this.sched.at(SIM_TIMING.retryMs, `${this.id} retry ${what}`, this.guard(fn));
  }

  private keepAlive(): void {
    const lease = this.leaseId;
    if (!lease || !this.client) return;
    this.client.keepAlive(lease, this.guard((ok) => {
      if (ok === true) this.lastKeepAliveAt = this.sched.now;
      else if (ok === false && lease === this.leaseId) this.leaseLost('etcd says the lease is gone');
    }));
  }

  /** The production session's rule: no keep-alive answered for a TTL means the lease is lost. */
  private leaseLost(reason: string): void {
    this.note(`lease lost (${reason}): stepping down from every log`);
    this.leaseId = undefined;
    this.registered = false;
    for (const log of this.logs.values()) this.leading.stepDown(log);
    this.register();
  }

  private onWatch(ev: Parameters<SimView['apply']>[0]): void {
    const changed = this.view.apply(ev);
    for (const name of changed.logs) {
      const log = this.logState(name);
      this.leading.onDirectoryChange(name, log);
      this.onFlushed(name, log);
    }
    for (const [name] of this.logs) if (!this.view.logs.has(name)) this.logs.delete(name);
  }

  /** Production's onFlushed: a replica that does not lead releases what object storage holds. */
  private onFlushed(name: string, log: SimLog): void {
    if (releasesOnFlush(log.leader, log.takeover !== undefined)) log.replica.releaseThrough(this.view.flushedId(name));
  }

  logState(name: string): SimLog {
    let log = this.logs.get(name);
    if (!log) {
      log = { name, replica: new LogReplica(name, { bytes: 0 }), leader: undefined, takeover: undefined, drain: undefined, rejoining: new Map(), flushing: false };
      log.replica.releaseThrough(this.view.flushedId(name));
      this.logs.set(name, log);
    }
    return log;
  }

  get self(): LeaderInfo & { leaseId: string | undefined } {
    return { id: this.id, epoch: 0, incarnation: this.incarnation, leaseId: this.leaseId };
  }

  leaderInfo(epoch: number): LeaderInfo {
    return { id: this.id, epoch, incarnation: this.incarnation };
  }

  /**
   * Production's readiness: registered, not draining, and counted by the open
   * segment of every log it follows (so no log needs its memory to recover).
   */
  get isReady(): boolean {
    if (!this.isUp || !this.registered || this.draining) return false;
    for (const [name, { log }] of this.view.logs) {
      const open = log.segments.at(-1);
      if (!log.meta.replicas.includes(this.id) || !open || open.lastId !== null) continue;
      const leads = this.logs.get(name)?.leader?.isDeposed === false;
      if (!leads && open.replicas[this.id] !== this.incarnation) return false;
    }
    return true;
  }

  // ---- time ----

  private tick(): void {
    if (this.registered && this.sched.now - this.lastKeepAliveAt > SIM_TIMING.leaseTtlMs) this.leaseLost(`no keep-alive answered for ${SIM_TIMING.leaseTtlMs} ms`);
    this.leading.tick();
    this.detector.tick();
    if (++this.ticks % passTicksOf(this.config) === 0) this.failoverPass();
  }

  // ---- placement and failure detection ----

  placementView(): PlacementView {
    return {
      mayLead: (id) => {
        const member = this.view.members.get(id);
        return member !== undefined && !member.draining && !this.detector.isDead(member.id, member.incarnation);
      },
      incarnationOf: (id) => this.view.members.get(id)?.incarnation,
    };
  }

  placedLogs(): PlacedLog[] {
    return [...this.view.logs.values()].map(({ log }) => placed(log));
  }

  candidates(name: string): string[] {
    const record = this.view.log(name);
    return record ? leaderCandidates(placed(record), this.placementView(), leadershipCounts(this.placedLogs())) : [];
  }

  /** Production's Failover.pass: follow the logs, probe silent leaders, claim what lost its leader. */
  private failoverPass(): void {
    if (!this.registered || this.draining) return;
    for (const [name, { log }] of this.view.logs) {
      const state = this.logs.get(name);
      const leadsOrTakingOver = state !== undefined && (state.takeover !== undefined || (state.leader !== undefined && !state.leader.isDeposed));
      this.detector.follow(name, watchedLeader(this.id, log, leadsOrTakingOver));
    }
    const ready = this.detector.ready((name) => this.candidates(name));
    for (const p of ready.probes) {
      this.parts.net.call<{ id: string; incarnation: string }>(this.id, p.replica, 'probe', () => this.parts.replicas.get(p.replica)!.probeAnswer(), this.config.retransmitMs, this.guard((res, failure) => {
        const outcome: ProbeOutcome = res ? { kind: 'answered', id: res.id, incarnation: res.incarnation } : failure === 'refused' ? { kind: 'refused' } : { kind: 'failed' };
        this.detector.probed(p.replica, p.incarnation, outcome);
      }));
    }
    for (const c of ready.claims) {
      this.note(`claims ${c.log} from epoch ${c.expectedEpoch}${c.replacing ? ` replacing ${c.replacing.id}` : ''}`);
      this.leading.takeOver(c.log, c.expectedEpoch, c.replacing && leaderKeyValue(c.replacing), () => undefined);
    }
  }

  private coordinatorPass(): void {
    if (!this.registered || this.draining || !this.leaseId) return;
    if (this.view.coordinator === undefined) this.client?.campaign(this.id, this.leaseId, this.guard(() => undefined));
    if (this.view.coordinator === this.id) this.leading.assignLeaderless();
    this.leading.recordRejoined();
  }

  // ---- served requests (they run at this replica when a message arrives) ----

  probeAnswer(): { id: string; incarnation: string } | undefined {
    return this.isUp ? { id: this.id, incarnation: this.incarnation } : undefined;
  }

  /** The replication message, through the wire format both ways, by production's follower rules. */
  serveAppend(body: Buffer): Buffer | undefined {
    if (!this.isUp) return undefined;
    const req = decodeAppendRequest(body);
    const log = this.logState(req.log);
    const verdict = this.judge(req.log, log, req);
    if (verdict === 'stale') return encodeAppendReply({ status: ReplyStatus.Fenced, epoch: this.view.log(req.log)!.epoch, seq: req.seq, lastId: log.replica.buffer.lastId });
    if (verdict !== 'known' && verdict !== 'proven') return undefined;
    this.detector.heard(req.log, req.leader, req.epoch);
    const { reply, stepDown } = receiveAppend(log.replica, log.leader, req, this.registered ? incarnationTag(this.incarnation) : undefined);
    if (stepDown) this.leading.stepDown(log);
    return encodeAppendReply(reply);
  }

  /** Production's fence: refuse an older epoch, depose an older local leader, raise the fence, answer. */
  serveFence(name: string, epoch: number, leader: string): FenceAnswer | { fenced: number } | undefined {
    if (!this.isUp || !this.registered) return undefined;
    const log = this.logState(name);
    const verdict = this.judge(name, log, { epoch, leader });
    if (verdict === 'stale') return { fenced: this.view.log(name)!.epoch };
    if (verdict !== 'known' && verdict !== 'proven') return undefined;
    const outcome = receiveFence(log.replica, log.leader, epoch, leader);
    if (outcome.refusedAt !== undefined) {
      this.note(`${name}: refuses the fence of epoch ${epoch} from ${leader}: fenced at ${outcome.refusedAt}`);
      return { fenced: outcome.refusedAt };
    }
    if (outcome.stepDown) this.leading.stepDown(log);
    return fenceAnswerOf(this.id, this.incarnation, log.replica);
  }

  /**
   * Production's check of a claim against etcd (control/follower.ts): what
   * the view cannot prove yet is not answered, and etcd is read again, as the
   * production follower does before it refuses; the sender retries.
   */
  private judge(name: string, log: SimLog, claim: { epoch: number; leader: string }): ReturnType<typeof judgeLeaderClaim> {
    const record = this.view.log(name);
    const verdict = record ? judgeLeaderClaim(this.id, log.replica, record, claim) : 'unproven';
    if (verdict === 'unproven') this.refreshLog(name);
    return verdict;
  }

  /** Production's check of a takeover command (control/follower.ts), on this replica's view; a refusal reads etcd again for next time. */
  takeoverRefusal(name: string, sender: string, replacing: string | undefined): string | undefined {
    const record = this.view.log(name);
    const leader = record?.leader;
    const refusal = takeoverRefusal(
      {
        leaderKey: leader && { id: leader.id, value: leaderKeyValue(leader) },
        coordinator: this.view.coordinator,
        neverLed: record !== undefined && record.segments.length === 0 && leader === undefined,
        senderIsMember: this.view.members.has(sender),
        takingOver: this.logs.get(name)?.takeover !== undefined,
      },
      sender,
      { replacing, unsafe: false },
    );
    if (refusal !== undefined) this.refreshLog(name);
    return refusal;
  }

  private refreshLog(name: string): void {
    this.client?.getLog(name, this.guard((res, revision) => {
      if (res instanceof EtcdUnavailable || !res.log || revision === undefined) return;
      this.view.read(name, res.log, res.flushedId, res.manifest, revision);
    }));
  }

  serveFetch(name: string, fromId: number, toId: number): EntryRun[] | undefined {
    if (!this.isUp) return undefined;
    return this.logState(name).replica.runsBetween(fromId, toId, this.config.maxBatchBytes);
  }

  // ---- client requests ----

  /** An append from a client; `answer` runs once the outcome is known. */
  clientAppend(name: string, value: string, answer: (a: AppendAnswer) => void): void {
    if (!this.isUp) return;
    this.leading.append(name, Buffer.from(value), answer);
  }

  /** The newest committed entries this replica holds in memory (at most `max`), as a read of them here returns them. */
  committedInMemory(name: string, max: number): { id: number; value: string }[] | undefined {
    if (!this.isUp || !this.registered) return undefined;
    const log = this.logs.get(name);
    if (!log) return [];
    const out: { id: number; value: string }[] = [];
    for (let id = Math.max(log.replica.buffer.startId, log.replica.commitId - max + 1); id <= log.replica.commitId; id++) {
      const data = log.replica.buffer.get(id);
      if (data) out.push({ id, value: data.toString() });
    }
    return out;
  }

  /** What a read of the whole log returns here: object storage, then this replica's committed memory. */
  committedEntries(name: string, fromObjects: (name: string) => TimedEntry[]): TimedEntry[] {
    const out = fromObjects(name);
    const log = this.logs.get(name);
    if (!log) return out;
    for (let id = (out.at(-1)?.id ?? -1) + 1; id <= log.replica.commitId; id++) {
      const data = log.replica.buffer.get(id);
      if (!data) break;
      out.push({ id, value: data.toString(), timeMs: log.replica.buffer.timeOf(id)! });
    }
    return out;
  }

  /** Sends a replication message to `to`; `done` gets its reply, or the failure. */
  sendAppend(to: string, req: Parameters<typeof encodeAppendRequest>[0], done: (reply: AppendReply | undefined, refused: boolean) => void): void {
    const body = Buffer.concat(encodeAppendRequest(req).chunks);
    this.parts.net.call<Buffer>(this.id, to, `${ROUTINE}replicate`, () => this.parts.replicas.get(to)!.serveAppend(body), SIM_TIMING.peerTimeoutMs, this.guard((res, failure) => done(res ? decodeAppendReply(res) : undefined, failure === 'refused')));
  }
}

export function placed(log: { meta: { name: string; replicas: string[]; createdAt: string }; epoch: number; leader?: { id: string } | undefined; segments: PlacedLog['segments'] }): PlacedLog {
  return { name: log.meta.name, replicas: log.meta.replicas, epoch: log.epoch, leader: log.leader?.id, segments: log.segments, createdAtMs: Date.parse(log.meta.createdAt) || 0 };
}
