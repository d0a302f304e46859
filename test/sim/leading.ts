/**
 * What a simulated replica does for the logs it leads or takes over, as the
 * production drivers do it: the Ready loop of LeaderLog (deferred one turn,
 * like setImmediate), the takeover machine's effects, the drain machine's
 * (handoff and controlled shutdown), the coordinator's assignments, the
 * rejoin rule, and a flusher that writes real object-format objects to the
 * simulated store and records them in etcd as the leader.
 */
import { leaderKeyValue, type SegmentMeta } from '../../src/fencing/keys.js';
import { leadershipLost } from '../../src/control/follower.js';
import { DrainMachine, type DrainEffect, type DrainEvent } from '../../src/control/drain.js';
import { caughtUpReplicas, handoffTargets, leaderlessAssignments, leadershipCounts, liveIncarnations, type Rejoining } from '../../src/control/placement.js';
import { logViewOf, TakeoverMachine, type LogView, type TakeoverEffect, type TakeoverEvent } from '../../src/control/takeover.js';
import { manifestEntryOf } from '../../src/flusher/flusher.js';
import { encodeObject, objectKey } from '../../src/flusher/object-format.js';
import { LeaderLog } from '../../src/quorum/leader.js';
import type { LogReplica } from '../../src/quorum/log-replica.js';
import { incarnationTag } from '../../src/quorum/messages.js';
import { ticksOf } from '../../src/replica/log-state.js';
import { takeoverSettingsOf } from '../../src/replica/takeover.js';
import { EtcdUnavailable } from './etcd-client.js';
import { placed, SIM_TIMING, type AppendAnswer, type SimReplica } from './replica.js';
import { ROUTINE } from './scheduler.js';
import { setLeader, setSegments } from './view.js';

/** Production's CREATION_GRACE_MS: a new log's creator gives it its first leader. */
const CREATION_GRACE_MS = 10_000;
/** Entries per flushed object in the simulation (small, so runs flush often). */
const FLUSH_MAX_ENTRIES = 50;

type Answer = (a: AppendAnswer) => void;
/** A leader's answer to a forwarded append: a client's, or held ids for the forwarding replica to wait for. */
type ForwardAnswer = AppendAnswer | { kind: 'held'; id: number; epoch: number };

export interface SimLog {
  name: string;
  replica: LogReplica;
  leader: LeaderLog<Answer> | undefined;
  takeover: { machine: TakeoverMachine; waiters: ((ok: boolean) => void)[] } | undefined;
  drain: DrainMachine | undefined;
  rejoining: Map<string, Rejoining>;
  flushing: boolean;
  pumpScheduled?: boolean;
}

export class Leading {
  private readonly assigning = new Set<string>();
  /** Appends answered here from a held answer, for the run's stats. */
  heldAcked = 0;

  constructor(private readonly r: SimReplica) {}

  // ---- appends and the Ready loop ----

  /**
   * A client's append. Taken here when this replica leads the log; else, as
   * production does, forwarded to the leader the view names, whose held
   * answer (replica/appends.ts) is waited for here (awaitHeld).
   */
  append(name: string, data: Buffer, answer: Answer): void {
    const log = this.r.logs.get(name);
    const leader = log?.leader;
    if (!log || !leader || leader.isDeposed || !this.r.registered) {
      const hint = leaderHint(this.r, name);
      if (hint.leader && this.r.registered) return this.forward(name, data, hint.leader, answer);
      return answer({ kind: 'fail', reason: 'not the leader', ...hint });
    }
    this.propose(log, leader, data, answer);
  }

  /** The leader's side of a forwarded append: answered held at once when `from` keeps up, else at commit. */
  forwarded(name: string, data: Buffer, from: string, answer: (a: ForwardAnswer) => void): void {
    const log = this.r.logs.get(name);
    const leader = log?.leader;
    if (!log || !leader || leader.isDeposed || !this.r.registered) return answer({ kind: 'fail', reason: 'not the leader' });
    if (!leader.keepsUp(from)) {
      this.propose(log, leader, data, answer);
      return;
    }
    const res = this.propose(log, leader, data, () => undefined);
    if (res) answer({ kind: 'held', id: res.firstId, epoch: leader.epoch });
  }

  private propose(log: SimLog, leader: LeaderLog<Answer>, data: Buffer, answer: Answer): { firstId: number } | undefined {
    if (log.takeover || log.drain) return void answer({ kind: 'fail', reason: 'recovering or handing off' });
    // Every append is a producer batch named after its (unique) value, so the final check can see
    // each mark travel with its entry (checkMarks in simulate.ts).
    const res = leader.propose([data], answer, { producerId: data.toString(), firstSeq: 0, timeMs: 0 }, { nowMs: this.r.sched.now + this.r.clockSkewMs });
    if (!res.ok) return void answer({ kind: 'fail', reason: res.reason });
    this.schedule(log);
    return res;
  }

  /** Production's AppendForwarder and Appends.awaitHeld: a lost or late answer leaves the outcome unknown. */
  private forward(name: string, data: Buffer, to: string, answer: Answer): void {
    const r = this.r;
    let done = false;
    const finish = (a: AppendAnswer) => {
      if (!done) (done = true), answer(a);
    };
    // A forwarded batch rides one HTTP request on TCP, which the network never delivers twice.
    let served = false;
    const serve = () => {
      if (served) return undefined;
      served = true;
      r.parts.replicas.get(to)!.leading.forwarded(name, data, r.id, (a) => r.parts.net.send(to, r.id, `${ROUTINE}forward answer`, r.guard(() => (a.kind === 'held' ? this.awaitHeld(name, a, finish) : finish(a)))));
      return undefined;
    };
    r.parts.net.call(r.id, to, `${ROUTINE}forward`, serve, SIM_TIMING.peerTimeoutMs, r.guard((_res, failure) => finish(failure === 'refused' ? { kind: 'fail', reason: 'leader refused' } : { kind: 'info', reason: 'forward timeout' })));
  }

  /** Waits until this replica holds a held answer's id in its epoch (the pair rule commits it); unknown after a newer epoch or the ack timeout. */
  private awaitHeld(name: string, held: { id: number; epoch: number }, answer: Answer): void {
    const deadline = this.r.sched.now + this.r.config.ackTimeoutMs;
    const check = () => {
      const replica = this.r.logs.get(name)?.replica;
      if (replica && replica.epoch === held.epoch && replica.commitId >= held.id) {
        this.heldAcked++;
        return answer({ kind: 'ok', id: held.id });
      }
      if ((replica && replica.epoch > held.epoch) || this.r.sched.now >= deadline) return answer({ kind: 'info', reason: 'held ids not reached' });
      this.r.sched.at(this.r.config.tickMs, `${ROUTINE}${this.r.id} await held ${name}`, this.r.guard(check));
    };
    check();
  }

  /** Carries out the log's Ready on the next turn, once for everything that piled up (group commit). */
  schedule(log: SimLog): void {
    if (log.pumpScheduled) return;
    log.pumpScheduled = true;
    this.r.sched.at(0, `${ROUTINE}${this.r.id} ready ${log.name}`, this.r.guard(() => {
      log.pumpScheduled = false;
      this.pump(log);
    }));
  }

  private pump(log: SimLog): void {
    const leader = log.leader;
    if (!leader) return;
    const ready = leader.ready();
    for (const { to, req } of ready.messages) {
      // A peer whose member key is gone (its lease lapsed) is as gone as a refused connection.
      if (!this.r.view.members.has(to)) {
        this.r.sched.at(0, `${this.r.id} ${to} not a member`, this.r.guard(() => log.leader === leader && (leader.peerUnreachable(to, req.seq, true), this.schedule(log))));
        continue;
      }
      this.r.sendAppend(to, req, (reply, refused) => {
        if (log.leader !== leader) return;
        if (reply) leader.handleReply(to, reply);
        else leader.peerUnreachable(to, req.seq, refused);
        this.schedule(log);
      });
    }
    for (const a of ready.acked) a.token({ kind: 'ok', id: a.firstId });
    for (const f of ready.failed) f.token({ kind: 'info', reason: f.reason });
    if (ready.quorumLost) {
      this.r.note(`${log.name}: no quorum answered, gives up epoch ${leader.epoch}`);
      this.releaseUntilDone(log.name, leader.epoch);
    }
    if (log.takeover) this.feedTakeover(log, { kind: 'leaderProgress', deposed: leader.isDeposed });
    if (log.drain) this.feedDrain(log, { kind: 'leader', leader: snapshot(log, leader) });
    if (leader.isDeposed && leader.pendingCount === 0 && log.leader === leader) log.leader = undefined;
  }

  stepDown(log: SimLog): void {
    if (!log.leader) return;
    log.leader.stepDown();
    this.schedule(log);
  }

  /** Production's onDirectoryChange: a leader whose key is gone or names another epoch steps down. */
  onDirectoryChange(name: string, log: SimLog): void {
    const leader = log.leader;
    if (!leader || leader.isDeposed) return;
    if (leadershipLost(this.r.view.log(name), leader.epoch)) {
      this.r.note(`${name}: leadership of epoch ${leader.epoch} lost in etcd`);
      this.stepDown(log);
    }
  }

  tick(): void {
    for (const log of this.r.logs.values()) {
      if (log.leader) {
        log.leader.tick();
        if (log.leader.hasReady()) this.schedule(log);
      }
      if (log.takeover) this.feedTakeover(log, { kind: 'tick' });
      if (log.drain) {
        this.feedDrain(log, { kind: 'flushed', flushedId: this.r.view.flushedId(log.name) });
        this.feedDrain(log, { kind: 'tick' });
      }
    }
  }

  // ---- takeover ----

  takeOver(name: string, expectedEpoch: number, replacing: string | undefined, done: (ok: boolean) => void): void {
    if (this.r.draining || !this.r.registered || !this.r.view.log(name)) return done(false);
    const log = this.r.logState(name);
    if (log.takeover) return void log.takeover.waiters.push(done);
    const settings = { ...takeoverSettingsOf(this.r.config), incarnation: this.r.incarnation };
    const machine = new TakeoverMachine(settings, log.replica, { expectedEpoch, unsafe: false, ...(replacing !== undefined ? { replacing } : {}) });
    log.takeover = { machine, waiters: [done] };
    this.runTakeover(log);
  }

  private feedTakeover(log: SimLog, event: TakeoverEvent): void {
    const run = log.takeover;
    if (!run) return;
    run.machine.step(event);
    this.runTakeover(log);
  }

  private runTakeover(log: SimLog): void {
    const run = log.takeover;
    if (!run) return;
    for (let effects = run.machine.effects(); effects.length > 0; effects = run.machine.effects()) {
      const immediate: TakeoverEvent[] = [];
      for (const effect of effects) {
        const event = this.carryOutTakeover(log, run, effect);
        if (event) immediate.push(event);
      }
      for (const event of immediate) run.machine.step(event);
    }
  }

  private carryOutTakeover(log: SimLog, run: NonNullable<SimLog['takeover']>, effect: TakeoverEffect): TakeoverEvent | undefined {
    const { r } = this;
    const name = log.name;
    const feed = r.guard((event: TakeoverEvent) => log.takeover === run && this.feedTakeover(log, event));
    const client = r.client;
    if (!client && ['claim', 'read', 'seal'].includes(effect.kind) && !(effect.kind === 'read' && !effect.fresh)) return { kind: 'ioFailed', reason: 'etcd client closed' };
    switch (effect.kind) {
      case 'claim': {
        if (!r.leaseId) return { kind: 'ioFailed', reason: 'no lease' };
        const replacing = effect.replacing === undefined ? undefined : JSON.parse(effect.replacing);
        client!.claimLeadership(name, effect.expectedEpoch, { id: r.id, incarnation: r.incarnation }, r.leaseId, replacing, (epoch, revision) => {
          if (epoch instanceof EtcdUnavailable) return feed({ kind: 'ioFailed', reason: `claim: etcd ${epoch.reason}` });
          if (epoch !== undefined) r.view.wrote(name, revision, (e) => setLeader(e, r.leaderInfo(epoch)));
          feed({ kind: 'claimed', epoch });
        });
        return undefined;
      }
      case 'read':
        if (!effect.fresh) return { kind: 'read', view: logView(r, name) };
        client!.getLog(name, (res, revision) => {
          if (res instanceof EtcdUnavailable) return feed({ kind: 'ioFailed', reason: `read: etcd ${res.reason}` });
          if (res.log && revision !== undefined) r.view.read(name, res.log, res.flushedId, res.manifest, revision);
          feed({ kind: 'read', view: logView(r, name) });
        });
        return undefined;
      case 'stepDown':
        return void this.stepDown(log);
      case 'fence':
        r.parts.net.call(r.id, effect.to, 'fence', () => r.parts.replicas.get(effect.to)!.serveFence(name, effect.epoch, r.id), SIM_TIMING.peerTimeoutMs, r.guard((res) => {
          feed(res && 'replica' in res ? { kind: 'fenceAnswer', round: effect.round, answer: res } : { kind: 'fenceFailed', round: effect.round, from: effect.to });
        }));
        return undefined;
      case 'fetch':
        r.parts.net.call(r.id, effect.from, 'fetch', () => r.parts.replicas.get(effect.from)!.serveFetch(name, effect.fromId, effect.toId), SIM_TIMING.peerTimeoutMs, r.guard((runs) => {
          feed(runs ? { kind: 'fetched', runs } : { kind: 'ioFailed', reason: `fetch from ${effect.from} failed` });
        }));
        return undefined;
      case 'lead':
        // As LeaderDriver.lead: no time below what etcd records of the log.
        log.replica.buffer.raiseTimeFloor(r.view.lastTimeMs(name));
        log.leader = new LeaderLog<Answer>(log.replica, { ...r.leaderTicks, self: r.id, peers: effect.peers, epoch: effect.epoch });
        return void this.schedule(log);
      case 'seal':
        client!.openSegment(name, r.leaderInfo(effect.epoch), effect.seals as SegmentMeta[], effect.open as SegmentMeta, (ok, revision) => {
          if (ok instanceof EtcdUnavailable) return feed({ kind: 'ioFailed', reason: `seal: etcd ${ok.reason}` });
          if (ok) r.view.wrote(name, revision, (e) => setSegments(e, [...(effect.seals as SegmentMeta[]), effect.open as SegmentMeta]));
          feed({ kind: 'sealed', ok });
        });
        return undefined;
      case 'blocked':
        return void r.note(`${name}: recovery blocked: ${effect.reason}`);
      case 'release':
        return void this.releaseUntilDone(name, effect.epoch);
      case 'done':
        r.note(`${name}: leads epoch ${effect.epoch} from id ${effect.recoveredId}`);
        return this.endTakeover(log, run, true);
      case 'failed':
        r.note(`${name}: takeover failed: ${effect.reason}`);
        return this.endTakeover(log, run, false);
    }
  }

  private endTakeover(log: SimLog, run: NonNullable<SimLog['takeover']>, ok: boolean): undefined {
    if (log.takeover === run) log.takeover = undefined;
    for (const waiter of run.waiters) waiter(ok);
    return undefined;
  }

  /** Gives the leader key of `epoch` back, retried while etcd fails (compared on this process's exact key). */
  releaseUntilDone(name: string, epoch: number): void {
    const client = this.r.client;
    if (!client) return;
    client.releaseLeadership(name, this.r.leaderInfo(epoch), this.r.guard((ok, revision) => {
      if (ok instanceof EtcdUnavailable) return void this.r.sched.at(SIM_TIMING.retryMs, `${this.r.id} release ${name}`, this.r.guard(() => this.releaseUntilDone(name, epoch)));
      if (ok) this.r.view.wrote(name, revision, (e) => setLeader(e, undefined));
    }));
  }

  /** Asks `to` to take `name` over; `done` once its takeover ends (or the command fails). */
  command(to: string, name: string, expectedEpoch: number, replacing: string | undefined, done: (ok: boolean) => void): void {
    const { r } = this;
    let finished = false;
    const finish = r.guard((ok: boolean) => {
      if (finished) return;
      finished = true;
      done(ok);
    });
    const target = r.parts.replicas.get(to)!;
    r.parts.net.call(r.id, to, 'takeover', () => {
      if (!target.isUp) return undefined;
      const answer = (ok: boolean) => r.parts.net.send(to, r.id, 'takeover answer', () => finish(ok));
      const refusal = target.takeoverRefusal(name, r.id, replacing);
      if (refusal !== undefined) {
        target.note(`${name}: refuses a takeover from ${r.id}: ${refusal}`);
        answer(false);
      } else target.leading.takeOver(name, expectedEpoch, replacing, answer);
      return undefined;
    }, SIM_TIMING.commandTimeoutMs, () => finish(false));
  }

  // ---- coordinator and rejoin ----

  assignLeaderless(): void {
    const { r } = this;
    const assignments = leaderlessAssignments(r.placedLogs(), r.placementView(), { nowMs: r.sched.now, creationGraceMs: CREATION_GRACE_MS, assigning: this.assigning });
    for (const a of assignments) {
      this.assigning.add(a.log);
      const done = () => this.assigning.delete(a.log);
      if (a.candidate === r.id) this.takeOver(a.log, a.expectedEpoch, undefined, done);
      else this.command(a.candidate, a.log, a.expectedEpoch, undefined, done);
    }
  }

  recordRejoined(): void {
    const { r } = this;
    for (const log of r.logs.values()) {
      const leader = log.leader;
      const record = r.view.log(log.name);
      const open = record?.segments.at(-1);
      if (!leader || leader.isDeposed || log.takeover || !record || !open || open.epoch !== leader.epoch || !r.client) continue;
      const caughtUp = caughtUpReplicas(open, r.id, liveOf(r, record.meta.replicas), log.replica.buffer.lastId, (id, inc) => leader.matchIdOf(id, incarnationTag(inc)), log.rejoining);
      if (Object.keys(caughtUp).length === 0) continue;
      const segment: SegmentMeta = { ...open, replicas: { ...open.replicas, ...caughtUp } };
      r.client.updateSegment(log.name, r.leaderInfo(leader.epoch), segment, r.guard((ok, revision) => {
        if (ok === true) r.view.wrote(log.name, revision, (e) => setSegments(e, [segment]));
      }));
    }
  }

  // ---- controlled shutdown ----

  /** Drains every log this replica leads (after any takeover under way ends); `done` once all are settled. */
  drainAll(done: () => void): void {
    const { r } = this;
    if ([...r.logs.values()].some((log) => log.takeover)) return void r.sched.at(r.config.tickMs, `${r.id} drain waits for takeovers`, r.guard(() => this.drainAll(done)));
    const led = [...r.logs.values()].filter((log) => log.leader && !log.leader.isDeposed);
    let left = led.length;
    if (left === 0) return done();
    const counts = leadershipCounts(r.placedLogs());
    led.forEach((log, i) => {
      const leader = log.leader!;
      const record = r.view.log(log.name);
      const targets = record ? handoffTargets(placed(record), r.id, leader.epoch, r.placementView(), counts, i) : [];
      log.drain = new DrainMachine({ epoch: leader.epoch, targets, closeWhenRefused: true, roundsTimeoutTicks: ticksOf(r.config, r.config.ackTimeoutMs) }, snapshot(log, leader), r.view.flushedId(log.name));
      this.onDrained.set(log, () => --left === 0 && done());
      this.runDrain(log);
    });
  }

  private readonly onDrained = new Map<SimLog, () => void>();

  private feedDrain(log: SimLog, event: DrainEvent): void {
    log.drain?.step(event);
    this.runDrain(log);
  }

  private runDrain(log: SimLog): void {
    const machine = log.drain;
    if (!machine) return;
    for (let effects = machine.effects(); effects.length > 0; effects = machine.effects()) for (const effect of effects) this.carryOutDrain(log, machine, effect);
  }

  private carryOutDrain(log: SimLog, machine: DrainMachine, effect: DrainEffect): void {
    const { r } = this;
    const feed = (event: DrainEvent): void => {
      if (log.drain === machine) this.feedDrain(log, event);
    };
    switch (effect.kind) {
      case 'handoff':
        return this.command(effect.to, log.name, effect.expectedEpoch, leaderKeyValue(r.leaderInfo(effect.expectedEpoch)), (ok) => feed({ kind: 'handoffAnswer', to: effect.to, ok }));
      case 'closeClean': {
        const open = r.view.log(log.name)?.segments.at(-1);
        if (!open || open.epoch !== effect.epoch || open.lastId !== null || !r.client) return feed({ kind: 'closed', ok: false, reason: 'not the open segment' });
        const segment: SegmentMeta = { ...open, lastId: effect.lastId, lastTimeMs: log.replica.buffer.lastTimeMs };
        return r.client.closeSegmentClean(log.name, r.leaderInfo(effect.epoch), segment, r.guard((ok, revision) => {
          if (ok === true) r.view.wrote(log.name, revision, (e) => (setSegments(e, [{ ...segment, closedClean: true }]), setLeader(e, undefined)));
          feed({ kind: 'closed', ok: ok === true });
        }));
      }
      case 'stepDown':
        return this.stepDown(log);
      case 'done':
        r.note(`${log.name}: drained: ${effect.outcome.kind}`);
        log.drain = undefined;
        this.onDrained.get(log)?.();
        this.onDrained.delete(log);
        return;
    }
  }

  // ---- flusher ----

  /** Flushes the next run of committed entries of every log it leads, one object at a time per log. */
  flushPass(): void {
    for (const log of this.r.logs.values()) if (log.leader && !log.leader.isDeposed && !log.takeover && !log.flushing) this.flushNext(log, log.leader);
  }

  private flushNext(log: SimLog, leader: LeaderLog<Answer>): void {
    const { r } = this;
    const record = r.view.log(log.name);
    const firstId = r.view.flushedId(log.name) + 1;
    const buffer = log.replica.buffer;
    if (!record || !r.client || firstId > log.replica.commitId || firstId < buffer.startId) return;
    const lastId = Math.min(log.replica.commitId, buffer.runLastId(firstId), firstId + FLUSH_MAX_ENTRIES - 1);
    const epoch = buffer.epochOf(firstId)!;
    const times = buffer.timeRunsBetween(firstId, lastId);
    const body = encodeObject(epoch, firstId, buffer.slice(firstId, lastId - firstId + 1, Number.MAX_SAFE_INTEGER), undefined, { times });
    const key = objectKey('', 'sim', log.name, firstId, lastId, leader.epoch, record.meta.uid);
    log.flushing = true;
    const stop = () => void (log.flushing = false);
    r.parts.store.put(key, body, r.guard((stored) => {
      if (stored !== true || leader.isDeposed || !r.client) return stop();
      const entry = manifestEntryOf(key, firstId, lastId, leader.epoch, body.length, times);
      r.client.recordFlush(log.name, r.leaderInfo(leader.epoch), entry, r.guard((ok, revision) => {
        stop();
        if (ok !== true) return;
        r.view.wrote(log.name, revision, (e) => {
          e.manifest = [...e.manifest.filter((m) => m.firstId !== firstId), entry];
          e.flushedId = Math.max(e.flushedId, lastId);
        });
        log.replica.releaseThrough(lastId);
      }));
    }));
  }
}

function snapshot(log: SimLog, leader: LeaderLog<Answer>): { pending: number; deposed: boolean; commitId: number } {
  return { pending: leader.pendingCount, deposed: leader.isDeposed, commitId: log.replica.commitId };
}

function liveOf(r: SimReplica, replicas: readonly string[]): Record<string, string> {
  return liveIncarnations(replicas, (id) => incarnationOf(r, id));
}

/** As ClusterDirectory.incarnationOf: a replica counts itself live whether or not the view holds its member key. */
function incarnationOf(r: SimReplica, id: string): string | undefined {
  return id === r.id ? r.incarnation : r.view.members.get(id)?.incarnation;
}

function logView(r: SimReplica, name: string): LogView | undefined {
  const record = r.view.log(name);
  return record && logViewOf(record, r.view.flushedId(name), (id) => incarnationOf(r, id));
}

function leaderHint(r: SimReplica, name: string): { leader?: string } {
  const id = r.view.log(name)?.leader?.id;
  return id && id !== r.id ? { leader: id } : {};
}
