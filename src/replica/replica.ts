/**
 * The replica: wires the pure protocol (src/quorum) to time, the network and
 * etcd. It owns one LogReplica per log it holds, and a LeaderLog for each log
 * it leads; every event (client append, peer reply, tick) is fed to the state
 * machine, and once per event-loop turn the resulting Ready is carried out:
 * messages sent, clients answered, tail readers woken. Appends that arrive in
 * the same turn, or while a round is in flight, share the next round (group
 * commit).
 */
import type { ClusterDirectory } from '../fencing/directory.js';
import type { LogRecord } from '../fencing/keys.js';
import { TernError } from '../errors.js';
import type { MemoryAccount } from '../quorum/entry-buffer.js';
import { LeaderLog, type LeaderConfig, type Ready, type Refusal, type UnknownOutcome } from '../quorum/leader.js';
import { LogReplica } from '../quorum/log-replica.js';
import type { AppendReply, AppendRequest } from '../quorum/messages.js';
import type { ReplicaConfig } from './config.js';
import type { PeerTransport } from './peer-transport.js';

export const PEER_LEAD_PATH = (log: string) => `/peer/v1/logs/${encodeURIComponent(log)}/lead`;

export interface Logger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface AppendResult {
  firstId: number;
  lastId: number;
  epoch: number;
}

export interface ReadResult {
  entries: Buffer[];
  fromId: number;
  nextId: number;
  committedId: number;
}

export interface LogStatus {
  log: string;
  leader: string | null;
  epoch: number;
  committedId: number;
  flushedId: number;
  firstId: number;
}

interface Waiting {
  resolve(result: AppendResult): void;
  reject(err: TernError): void;
}

interface LogState {
  replica: LogReplica;
  leader: LeaderLog<Waiting> | undefined;
}

interface TailReader {
  fromId: number;
  wake(): void;
}

export class Replica {
  /** Entry bytes held in memory over all logs: the budget `maxBufferBytes` bounds. */
  readonly memory: MemoryAccount = { bytes: 0 };
  private readonly logs = new Map<string, LogState>();
  private readonly tailReaders = new Map<string, Set<TailReader>>();
  private readonly dirty = new Set<LogState>();
  private flushScheduled = false;
  private ticker: NodeJS.Timeout | undefined;
  private directory: ClusterDirectory | undefined;
  private stopping = false;
  private readonly leaderTicks: Omit<LeaderConfig, 'self' | 'peers' | 'epoch'>;

  constructor(
    readonly config: ReplicaConfig,
    private readonly transport: PeerTransport,
    private readonly log: Logger,
  ) {
    const ticks = (ms: number) => Math.max(1, Math.ceil(ms / config.tickMs));
    this.leaderTicks = {
      maxInflight: config.maxInflight,
      maxBatchEntries: config.maxBatchEntries,
      maxBatchBytes: config.maxBatchBytes,
      ackTimeoutTicks: ticks(config.ackTimeoutMs),
      retransmitTicks: ticks(config.retransmitMs),
      heartbeatTicks: ticks(config.heartbeatMs),
      backoffTicks: ticks(config.backoffMs),
    };
  }

  get id(): string {
    return this.config.id;
  }

  /** True once registered in etcd with the cluster state loaded, until shutdown starts. */
  get isReady(): boolean {
    return this.directory !== undefined && !this.stopping;
  }

  start(directory: ClusterDirectory): void {
    this.directory = directory;
    directory.on('log', (name) => this.onDirectoryChange(name));
    directory.on('leaseLost', (err) => {
      this.log.error({ err }, 'etcd lease lost: stepping down from every log');
      for (const state of this.logs.values()) this.stepDown(state);
    });
    this.ticker = setInterval(() => this.tick(), this.config.tickMs);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.ticker);
    for (const state of this.logs.values()) this.stepDown(state);
    this.flush();
    for (const readers of this.tailReaders.values()) for (const r of readers) r.wake();
  }

  // ---- client operations ----

  listLogs(): string[] {
    return this.dir().logNames();
  }

  /** Creates the log if it does not exist (idempotent) and makes sure it has a leader. */
  async createLog(name: string): Promise<{ created: boolean; status: LogStatus }> {
    const dir = this.dir();
    let created: boolean;
    try {
      ({ created } = await dir.createLog(name, this.config.replicas));
    } catch (err) {
      throw new TernError('NOT_READY', `cannot create log ${name}: ${(err as Error).message}`, { cause: err });
    }
    const record = await this.requireLog(name);
    if (record.epoch === 0) await this.assignFirstLeader(name, record);
    if (created) this.log.info({ log: name, replicas: record.meta.replicas }, 'log created');
    return { created, status: await this.status(name) };
  }

  async status(name: string): Promise<LogStatus> {
    const record = await this.requireLog(name);
    const state = this.logs.get(name);
    const committedId = state?.replica.commitId ?? -1;
    return {
      log: name,
      leader: record.leader?.id ?? null,
      epoch: Math.max(record.epoch, state?.replica.epoch ?? 0),
      committedId,
      flushedId: -1,
      firstId: committedId >= 0 ? state!.replica.buffer.startId : -1,
    };
  }

  /**
   * Where an append for `name` must go: undefined when this replica leads the
   * log, else the client URL of the leader. NOT_READY when there is none.
   */
  async leaderUrl(name: string): Promise<string | undefined> {
    const record = await this.requireLog(name);
    if (this.localLeader(name)) return undefined;
    const leader = record.leader && record.leader.id !== this.id ? this.dir().member(record.leader.id) : undefined;
    if (!leader) throw new TernError('NOT_READY', `log ${name} has no reachable leader right now (epoch ${record.epoch})`);
    return leader.clientUrl;
  }

  /** Appends entries as one atomic batch on this replica, which must lead the log. Resolves once a quorum holds them. */
  async append(name: string, entries: Buffer[]): Promise<AppendResult> {
    await this.requireLog(name);
    const state = this.logs.get(name);
    const leader = state && this.localLeader(name);
    if (!state || !leader) throw new TernError('NOT_READY', `replica ${this.id} does not lead log ${name}`);
    let bytes = 0;
    for (const e of entries) bytes += e.length;
    if (this.memory.bytes + bytes > this.config.maxBufferBytes) {
      throw new TernError('BUFFER_FULL', `replica ${this.id} holds ${this.memory.bytes} unflushed bytes (limit ${this.config.maxBufferBytes})`);
    }
    return new Promise<AppendResult>((resolve, reject) => {
      const result = leader.propose(entries, { resolve, reject });
      if (!result.ok) return reject(refusalError(name, result.reason, leader.epoch));
      this.schedule(state);
    });
  }

  /** Committed entries from `fromId`, waiting up to `waitMs` for the first one when none is committed yet. */
  async read(name: string, fromId: number, limit: number, waitMs: number): Promise<ReadResult> {
    await this.requireLog(name);
    if (waitMs > 0 && fromId > this.committedId(name)) await this.waitForCommit(name, fromId, waitMs);
    const state = this.logs.get(name);
    const committedId = state?.replica.commitId ?? -1;
    if (!state || fromId > committedId) return { entries: [], fromId, nextId: fromId, committedId };
    const count = Math.min(limit, committedId - fromId + 1);
    const entries = state.replica.buffer.slice(fromId, count, this.config.maxReadBytes);
    return { entries, fromId, nextId: fromId + entries.length, committedId };
  }

  // ---- peer operations ----

  handlePeerAppend(req: AppendRequest): AppendReply {
    const state = this.logState(req.log);
    const before = state.replica.commitId;
    if (state.leader && req.epoch > state.leader.epoch) this.stepDown(state);
    const reply = state.replica.handleAppend(req);
    if (state.replica.commitId > before) this.wakeReaders(req.log, state.replica.commitId);
    return reply;
  }

  /** Asked by the replica that created `name`: take the first leadership of the log. */
  async leadNewLog(name: string): Promise<{ epoch: number }> {
    const record = await this.requireLog(name);
    if (record.epoch !== 0) return { epoch: record.epoch };
    const epoch = await this.dir().claimLeadership(name, 0);
    if (epoch === undefined) return { epoch: (await this.requireLog(name)).epoch };
    const state = this.logState(name);
    state.leader = new LeaderLog<Waiting>(state.replica, {
      ...this.leaderTicks,
      self: this.id,
      peers: record.meta.replicas.filter((r) => r !== this.id),
      epoch,
    });
    this.log.info({ log: name, epoch }, 'leading log');
    return { epoch };
  }

  // ---- internals ----

  private dir(): ClusterDirectory {
    if (!this.directory || this.stopping) throw new TernError('NOT_READY', `replica ${this.id} is ${this.stopping ? 'stopping' : 'starting'}`);
    return this.directory;
  }

  private async requireLog(name: string): Promise<LogRecord> {
    const dir = this.dir();
    const record = dir.log(name) ?? (await dir.fetchLog(name));
    if (!record) throw new TernError('LOG_NOT_FOUND', `log ${name} does not exist`);
    return record;
  }

  private localLeader(name: string): LeaderLog<Waiting> | undefined {
    const leader = this.logs.get(name)?.leader;
    return leader && !leader.isDeposed ? leader : undefined;
  }

  private committedId(name: string): number {
    return this.logs.get(name)?.replica.commitId ?? -1;
  }

  private logState(name: string): LogState {
    let state = this.logs.get(name);
    if (!state) {
      state = { replica: new LogReplica(name, this.memory), leader: undefined };
      this.logs.set(name, state);
    }
    return state;
  }

  /** Spreads first leaderships: the live replica of the log that leads the fewest logs (ties by id). */
  private async assignFirstLeader(name: string, record: LogRecord): Promise<void> {
    const dir = this.dir();
    const led = new Map<string, number>();
    for (const log of dir.logNames()) {
      const id = dir.log(log)?.leader?.id;
      if (id) led.set(id, (led.get(id) ?? 0) + 1);
    }
    const candidates = record.meta.replicas
      .filter((id) => dir.member(id))
      .sort((a, b) => (led.get(a) ?? 0) - (led.get(b) ?? 0) || a.localeCompare(b));
    for (const id of candidates) {
      try {
        if (id === this.id) await this.leadNewLog(name);
        else await this.transport.command(dir.member(id)!.peerUrl, PEER_LEAD_PATH(name), {});
        return;
      } catch (err) {
        this.log.warn({ log: name, candidate: id, err }, 'candidate could not take the first leadership; trying the next');
      }
    }
    throw new TernError('NOT_READY', `no replica of log ${name} could take its leadership`);
  }

  private onDirectoryChange(name: string): void {
    const state = this.logs.get(name);
    const leader = state?.leader;
    if (!state || !leader) return;
    const record = this.directory?.log(name);
    // The leader key is leased: if it is gone or names another epoch, this replica no longer leads.
    if (!record || record.epoch > leader.epoch || !record.leader || record.leader.epoch !== leader.epoch) {
      this.log.warn({ log: name, epoch: leader.epoch, etcdEpoch: record?.epoch }, 'leadership lost in etcd: stepping down');
      this.stepDown(state);
    }
  }

  private stepDown(state: LogState): void {
    if (!state.leader) return;
    state.leader.stepDown();
    this.schedule(state);
  }

  private tick(): void {
    for (const state of this.logs.values()) {
      const leader = state.leader;
      if (!leader) continue;
      leader.tick();
      if (leader.hasReady()) this.schedule(state);
    }
  }

  private schedule(state: LogState): void {
    this.dirty.add(state);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    for (const state of this.dirty) {
      this.dirty.delete(state);
      const leader = state.leader;
      if (!leader) continue;
      const ready = leader.ready();
      this.carryOut(state, leader, ready);
      if (leader.isDeposed && leader.pendingCount === 0) state.leader = undefined;
    }
  }

  private carryOut(state: LogState, leader: LeaderLog<Waiting>, ready: Ready<Waiting>): void {
    for (const { to, req } of ready.messages) this.sendToPeer(state, leader, to, req);
    for (const a of ready.acked) a.token.resolve({ firstId: a.firstId, lastId: a.lastId, epoch: leader.epoch });
    for (const f of ready.failed) f.token.reject(unknownOutcomeError(state.replica.log, f.reason, f.firstId, f.lastId));
    if (ready.acked.length > 0) this.wakeReaders(state.replica.log, ready.commitId);
  }

  private sendToPeer(state: LogState, leader: LeaderLog<Waiting>, to: string, req: AppendRequest): void {
    const member = this.directory?.member(to);
    const unreachable = () => {
      leader.peerUnreachable(to, req.seq);
      this.schedule(state);
    };
    if (!member) {
      queueMicrotask(unreachable);
      return;
    }
    this.transport.sendAppend(member.peerUrl, req).then(
      (reply) => {
        leader.handleReply(to, reply);
        this.schedule(state);
      },
      unreachable,
    );
  }

  private waitForCommit(name: string, fromId: number, waitMs: number): Promise<void> {
    return new Promise((resolve) => {
      let readers = this.tailReaders.get(name);
      if (!readers) this.tailReaders.set(name, (readers = new Set()));
      const reader: TailReader = {
        fromId,
        wake: () => {
          clearTimeout(timer);
          readers.delete(reader);
          if (readers.size === 0) this.tailReaders.delete(name);
          resolve();
        },
      };
      const timer = setTimeout(reader.wake, waitMs);
      readers.add(reader);
    });
  }

  private wakeReaders(name: string, committedId: number): void {
    const readers = this.tailReaders.get(name);
    if (!readers) return;
    for (const r of readers) if (r.fromId <= committedId) r.wake();
  }
}

function refusalError(log: string, reason: Refusal, epoch: number): TernError {
  if (reason === 'NO_QUORUM') return new TernError('NO_QUORUM', `log ${log}: fewer than two replicas answer; append not applied`, { maybeApplied: false });
  return new TernError('FENCED', `log ${log}: epoch ${epoch} was fenced by a newer leader; append not applied`, { maybeApplied: false });
}

function unknownOutcomeError(log: string, reason: UnknownOutcome, firstId: number, lastId: number): TernError {
  const ids = firstId === lastId ? `id ${firstId}` : `ids ${firstId}-${lastId}`;
  if (reason === 'ACK_TIMEOUT') return new TernError('ACK_TIMEOUT', `log ${log}: ${ids} not acknowledged by a quorum in time; outcome unknown`, { maybeApplied: true });
  return new TernError('FENCED', `log ${log}: leader fenced before ${ids} were acknowledged; outcome unknown`, { maybeApplied: true });
}
