/**
 * The replica's view of the cluster's truth in etcd: members, logs, epochs
 * and leaders, loaded once and kept current by a watch, plus the
 * transactions that change it. Every change of an epoch or a leader key is a
 * transaction compared on the current epoch, so a stale writer fails in etcd
 * as well as at the replicas.
 */
import { EventEmitter } from 'node:events';
import { Etcd3, type IKeyValue, type Lease, type Namespace, type Watcher } from 'etcd3';
import { keys, type LeaderInfo, type LogMeta, type LogRecord, type MemberInfo } from './keys.js';

export interface DirectoryOptions {
  endpoints: string[];
  cluster: string;
  self: MemberInfo;
  leaseTtlSeconds: number;
}

export interface DirectoryEvents {
  /** A log's epoch or leader changed (or the log appeared). */
  log: [name: string];
  /** The membership lease is gone: every leader key of this replica is gone with it. */
  leaseLost: [err: Error];
}

export class ClusterDirectory extends EventEmitter<DirectoryEvents> {
  private readonly members = new Map<string, MemberInfo>();
  private readonly nodes = new Set<string>();
  private readonly logs = new Map<string, LogMeta>();
  private readonly epochs = new Map<string, number>();
  private readonly leaders = new Map<string, LeaderInfo>();
  private watcher: Watcher | undefined;
  private closed = false;

  private constructor(
    private readonly client: Etcd3,
    private readonly ns: Namespace,
    private readonly lease: Lease,
    readonly self: MemberInfo,
  ) {
    super();
  }

  /** Registers this replica under a lease and loads the cluster's state; resolves when both are done. */
  static async connect(options: DirectoryOptions): Promise<ClusterDirectory> {
    const client = new Etcd3({ hosts: options.endpoints, dialTimeout: 3000 });
    const ns = client.namespace(keys.prefix(options.cluster));
    const lease = ns.lease(options.leaseTtlSeconds, { autoKeepAlive: true });
    const dir = new ClusterDirectory(client, ns, lease, options.self);
    try {
      await lease.grant();
      lease.on('lost', (err) => dir.emit('leaseLost', err));
      await ns.put(keys.node(options.self.id)).value(options.self.id);
      await lease.put(keys.member(options.self.id)).value(JSON.stringify(options.self));
      await dir.loadAndWatch();
      return dir;
    } catch (err) {
      await dir.close();
      throw err;
    }
  }

  member(id: string): MemberInfo | undefined {
    return this.members.get(id);
  }

  liveMembers(): MemberInfo[] {
    return [...this.members.values()];
  }

  logNames(): string[] {
    return [...this.logs.keys()].sort();
  }

  log(name: string): LogRecord | undefined {
    const meta = this.logs.get(name);
    if (!meta) return undefined;
    return { meta, epoch: this.epochs.get(name) ?? 0, leader: this.leaders.get(name) };
  }

  /** The log as etcd has it now, bypassing the watch (which may lag a freshly created log by a few ms). */
  async fetchLog(name: string): Promise<LogRecord | undefined> {
    const res = await this.ns
      .if(keys.log(name), 'Create', '>', 0)
      .then(this.ns.get(keys.log(name)), this.ns.get(keys.epoch(name)), this.ns.get(keys.leader(name)))
      .commit();
    if (!res.succeeded) return undefined;
    const [metaKv, epochKv, leaderKv] = res.responses.map((r) => r.response_range?.kvs?.[0]);
    if (metaKv) this.apply('put', metaKv);
    if (epochKv) this.apply('put', epochKv);
    if (leaderKv) this.apply('put', leaderKv);
    return this.log(name);
  }

  /**
   * Creates the log's metadata at epoch 0 (no leader yet) unless it exists.
   * The replica set is every replica that ever joined, up to `replicas`.
   */
  async createLog(name: string, replicas: number): Promise<{ created: boolean }> {
    const nodeIds = [...this.nodes].sort();
    if (nodeIds.length < replicas) {
      throw new Error(`only ${nodeIds.length} of ${replicas} replicas have joined the cluster`);
    }
    const meta: LogMeta = { name, replicas: nodeIds.slice(0, replicas), createdAt: new Date().toISOString() };
    const res = await this.ns
      .if(keys.log(name), 'Create', '==', 0)
      .then(this.ns.put(keys.log(name)).value(JSON.stringify(meta)), this.ns.put(keys.epoch(name)).value('0'))
      .commit();
    if (res.succeeded) this.logs.set(name, meta), this.epochs.set(name, 0);
    return { created: res.succeeded };
  }

  /**
   * Makes this replica the log's leader: raises the epoch from `expectedEpoch`
   * by one and binds the leader key to this replica's lease, atomically. Fails
   * (undefined) if the epoch moved or another leader holds the key.
   */
  async claimLeadership(name: string, expectedEpoch: number): Promise<number | undefined> {
    const epoch = expectedEpoch + 1;
    const leader: LeaderInfo = { id: this.self.id, epoch, incarnation: this.self.incarnation };
    const res = await this.ns
      .if(keys.epoch(name), 'Value', '==', String(expectedEpoch))
      .and(keys.leader(name), 'Create', '==', 0)
      .then(this.ns.put(keys.epoch(name)).value(String(epoch)), this.ns.put(keys.leader(name)).value(JSON.stringify(leader)).lease(await this.lease.grant()))
      .commit();
    if (!res.succeeded) return undefined;
    this.epochs.set(name, epoch);
    this.leaders.set(name, leader);
    return epoch;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.watcher?.cancel().catch(() => undefined);
    // Revoking tells the others at once that this replica and its leader keys are gone.
    await this.lease.revoke().catch(() => undefined);
    this.client.close();
  }

  private async loadAndWatch(): Promise<void> {
    const res = await this.ns.getAll().exec();
    for (const kv of res.kvs) this.apply('put', kv);
    this.watcher = await this.ns
      .watch()
      .prefix('')
      .startRevision(String(BigInt(res.header.revision) + 1n))
      .create();
    this.watcher.on('put', (kv) => this.apply('put', kv));
    this.watcher.on('delete', (kv) => this.apply('delete', kv));
  }

  private apply(op: 'put' | 'delete', kv: IKeyValue): void {
    const key = kv.key.toString();
    const slash = key.indexOf('/');
    const kind = key.slice(0, slash);
    const id = key.slice(slash + 1);
    const value = kv.value.toString();
    switch (kind) {
      case 'nodes':
        if (op === 'put') this.nodes.add(id);
        return;
      case 'members':
        if (op === 'put') this.members.set(id, JSON.parse(value) as MemberInfo);
        else this.members.delete(id);
        return;
      case 'logs':
        if (op === 'put') this.logs.set(id, JSON.parse(value) as LogMeta);
        else this.logs.delete(id);
        break;
      case 'epochs':
        if (op === 'put') this.epochs.set(id, Math.max(Number(value), this.epochs.get(id) ?? 0));
        break;
      case 'leaders':
        if (op === 'put') this.leaders.set(id, JSON.parse(value) as LeaderInfo);
        else this.leaders.delete(id);
        break;
      default:
        return;
    }
    this.emit('log', id);
  }
}
