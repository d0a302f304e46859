/**
 * The replica's cached view of the cluster's keys in etcd: members, logs,
 * epochs, leaders, segments, manifests, retention points and flushed-through
 * marks. It changes by watched keys (`apply`), by whole snapshots after the
 * watch failed (`reconcile`), by one log read again (`fetchLog`), and by this
 * replica's own writes, cached as soon as etcd took them: a watch event older
 * than such a write must not undo it, so the view keeps the revision of the
 * newest change it applied per key.
 */
import type { IKeyValue } from 'etcd3';
import type { DirectoryContext } from './context.js';
import { isQuiesced, keys, lastRecordedTimeMs, parseKey, type LeaderInfo, type ParsedKey, type LogMeta, type LogRecord, type ManifestEntry, type MemberInfo, type SegmentMeta } from './keys.js';

/** The part of the coordinator election that the coordinator key feeds. */
export interface CoordinatorKeyObserver {
  readonly keyHeld: boolean;
  observe(id: string | undefined, lease: string | undefined): void;
}

export class ClusterView {
  private readonly members = new Map<string, MemberInfo>();
  private readonly logs = new Map<string, LogMeta>();
  private readonly epochs = new Map<string, number>();
  private readonly leaders = new Map<string, LeaderInfo>();
  private readonly segments = new Map<string, Map<number, SegmentMeta>>();
  private readonly manifests = new Map<string, Map<number, ManifestEntry>>();
  private readonly retentions = new Map<string, number>();
  /** keys.flushedThrough per log: flushed ids whose manifest entries are gone (truncated). */
  private readonly flushedThrough = new Map<string, number>();
  /** Highest last id among each log's manifest entries, kept until they change: flushedId is asked on every flusher poll and status. */
  private readonly manifestMax = new Map<string, number>();
  private sortedNames: readonly string[] | undefined;
  /** Logs etcd shows quiesced (keys.ts isQuiesced), kept as their keys change. */
  private readonly quiescedNames = new Set<string>();
  private sortedAwake: readonly string[] | undefined;
  /** Revision of the newest change applied per key. */
  private readonly revisions = new Map<string, bigint>();

  constructor(
    private readonly ctx: DirectoryContext,
    private readonly coordinator: CoordinatorKeyObserver,
    /** Peer URLs to use instead of the advertised ones, by replica id. */
    private readonly peerRoutes: ReadonlyMap<string, string> | undefined,
  ) {}

  member(id: string): MemberInfo | undefined {
    return this.members.get(id);
  }

  /** Every log's name, sorted; the same array until a log comes or goes (failure detection walks it every pass). */
  logNames(): readonly string[] {
    return (this.sortedNames ??= [...this.logs.keys()].sort());
  }

  /**
   * The logs not quiesced, sorted; the same array until one comes, goes,
   * quiesces or wakes. What failure detection, the coordinator and readiness
   * walk: a quiesced log has no leader to watch and none to assign.
   */
  awakeLogNames(): readonly string[] {
    return (this.sortedAwake ??= this.logNames().filter((name) => !this.quiescedNames.has(name)));
  }

  /** True when etcd shows the log quiesced. */
  isQuiesced(name: string): boolean {
    return this.quiescedNames.has(name);
  }

  quiescedCount(): number {
    return this.quiescedNames.size;
  }

  private setLogMeta(name: string, meta: LogMeta): void {
    if (!this.logs.has(name)) this.sortedNames = this.sortedAwake = undefined;
    this.logs.set(name, meta);
    this.recheckQuiesced(name);
  }

  /** After a change of the log's leader or segments: is it quiesced now? */
  private recheckQuiesced(name: string): void {
    const segs = this.segments.get(name);
    let last: SegmentMeta | undefined;
    for (const seg of segs?.values() ?? []) if (!last || seg.epoch > last.epoch) last = seg;
    const quiesced = this.logs.has(name) && isQuiesced({ leader: this.leaders.get(name), segments: last ? [last] : [] });
    if (quiesced === this.quiescedNames.has(name)) return;
    if (quiesced) this.quiescedNames.add(name);
    else this.quiescedNames.delete(name);
    this.sortedAwake = undefined;
  }

  /** The log's leader key, without building its record: a follower asks this for every append it forwards. */
  leaderOf(name: string): LeaderInfo | undefined {
    return this.leaders.get(name);
  }

  /** Whether the view holds the log, without building its record: the append path asks this. */
  hasLog(name: string): boolean {
    return this.logs.has(name);
  }

  log(name: string): LogRecord | undefined {
    const meta = this.logs.get(name);
    if (!meta) return undefined;
    const segments = [...(this.segments.get(name)?.values() ?? [])].sort((a, b) => a.epoch - b.epoch);
    return { meta, epoch: this.epochs.get(name) ?? 0, leader: this.leaders.get(name), segments };
  }

  /** Flushed objects of a log, ascending by first id. */
  manifest(name: string): ManifestEntry[] {
    return [...(this.manifests.get(name)?.values() ?? [])].sort((a, b) => a.firstId - b.firstId);
  }

  /**
   * Highest id durable in object storage (-1 none): objects are recorded in id
   * order. Truncation forgets the manifest entries of its objects, so what they
   * held counts through the flushed-through mark: a log truncated up to its head
   * stays flushed up to its head.
   */
  flushedId(name: string): number {
    let max = this.manifestMax.get(name);
    if (max === undefined) {
      max = -1;
      for (const e of this.manifests.get(name)?.values() ?? []) if (e.lastId > max) max = e.lastId;
      this.manifestMax.set(name, max);
    }
    return Math.max(max, this.flushedThrough.get(name) ?? -1);
  }

  /** The newest entry time etcd records of the log: see lastRecordedTimeMs. */
  lastTimeMs(name: string): number {
    return lastRecordedTimeMs(this.manifests.get(name)?.values() ?? [], this.segments.get(name)?.values() ?? []);
  }

  /** The log's flushed-through mark as this replica knows it (undefined: the key is not there). */
  flushedThroughMark(name: string): number | undefined {
    return this.flushedThrough.get(name);
  }

  /** Ids below this are truncated (0: nothing is). */
  retainedFrom(name: string): number {
    return this.retentions.get(name) ?? 0;
  }

  /** The log as etcd has it now, bypassing the watch (which may lag a freshly created log by a few ms). */
  async fetchLog(name: string): Promise<LogRecord | undefined> {
    const { ns } = this.ctx;
    const { meta, rest, prefixes } = keys.ofLog(name);
    // Applied in this order: the metadata first (the other keys' events name a log the
    // view must hold), then the epoch (before the leader key that names it).
    const single = [meta, keys.epoch(name), ...rest];
    const res = await ns
      .if(meta, 'Create', '>', 0)
      .then(...single.map((key) => ns.get(key)), ...prefixes.map((prefix) => ns.getAll().prefix(prefix)))
      .commit();
    if (!res.succeeded) return undefined;
    for (const r of res.responses) for (const kv of r.response_range?.kvs ?? []) this.apply('put', kv);
    // A leader key etcd no longer has is gone, whatever the watch said.
    const leader = res.responses[single.indexOf(keys.leader(name))];
    if (!leader?.response_range?.kvs?.length && BigInt(res.header.revision) >= (this.revisions.get(keys.leader(name)) ?? 0n)) this.deleteLeader(name);
    return this.log(name);
  }

  // This replica's own writes, cached without events once etcd took them (the watch tells of them later).

  /** Records that this replica wrote `keyList` at `revision`: older watch events of them are stale. */
  seen(keyList: string[], revision: string): void {
    for (const key of keyList) this.revisions.set(key, BigInt(revision));
  }

  setMember(member: MemberInfo): void {
    this.members.set(member.id, this.routed(member));
  }

  setLog(meta: LogMeta, epoch: number): void {
    this.setLogMeta(meta.name, meta);
    this.epochs.set(meta.name, epoch);
  }

  /** Forgets every key of a deleted log but its epoch (which outlives it). */
  forget(name: string): void {
    if (this.logs.has(name)) this.sortedNames = this.sortedAwake = undefined;
    for (const map of [this.logs, this.leaders, this.segments, this.manifests, this.manifestMax, this.retentions, this.flushedThrough]) map.delete(name);
    this.quiescedNames.delete(name);
  }

  /** `leader` raised the log's epoch to its own and holds the leader key. */
  setLeader(name: string, leader: LeaderInfo): void {
    this.epochs.set(name, leader.epoch);
    this.leaders.set(name, leader);
    this.recheckQuiesced(name);
  }

  deleteLeader(name: string): void {
    this.leaders.delete(name);
    this.recheckQuiesced(name);
  }

  setSegment(name: string, seg: SegmentMeta): void {
    let segs = this.segments.get(name);
    if (!segs) this.segments.set(name, (segs = new Map()));
    segs.set(seg.epoch, seg);
    this.recheckQuiesced(name);
  }

  /** A segment a reopen forgot (keys.ts isQuiesced, LogTransactions.reopen). */
  deleteSegment(name: string, epoch: number): void {
    this.segments.get(name)?.delete(epoch);
    this.recheckQuiesced(name);
  }

  setManifest(name: string, entry: ManifestEntry): void {
    let m = this.manifests.get(name);
    if (!m) this.manifests.set(name, (m = new Map()));
    m.set(entry.firstId, entry);
    this.manifestMax.delete(name);
  }

  private deleteManifestEntry(name: string, firstId: number): void {
    this.manifests.get(name)?.delete(firstId);
    this.manifestMax.delete(name);
  }

  /** Forgets manifest entries of truncated objects, whose ids the flushed-through mark now counts. */
  forgetFlushed(name: string, entries: readonly ManifestEntry[], mark: number): void {
    this.flushedThrough.set(name, mark);
    for (const e of entries) this.deleteManifestEntry(name, e.firstId);
  }

  setRetention(name: string, retainedFrom: number): void {
    this.retentions.set(name, retainedFrom);
  }

  /**
   * Brings the view to a snapshot of every key at `revision`, applying (with
   * their events) only what differs: keys the view holds that are gone, or were
   * deleted and created again since it saw them, then keys new or changed.
   */
  reconcile(kvs: IKeyValue[], revision: bigint): void {
    const present = new Map(kvs.map((kv) => [kv.key.toString(), kv]));
    const deletes: { key: string; revision: bigint }[] = [];
    for (const key of this.heldKeys()) {
      const kv = present.get(key);
      const seen = this.revisions.get(key);
      if (!kv) deletes.push({ key, revision });
      else if (seen !== undefined && BigInt(kv.create_revision) > seen) deletes.push({ key, revision: BigInt(kv.create_revision) - 1n });
    }
    // A log's key first, as etcd orders a log's delete: the log is forgotten (and said deleted) before its other keys go.
    const isLogKey = (key: string) => Number(parseKey(key)?.kind === 'log');
    deletes.sort((a, b) => isLogKey(b.key) - isLogKey(a.key));
    for (const d of deletes) this.apply('delete', { key: Buffer.from(d.key), value: Buffer.alloc(0), mod_revision: String(d.revision), create_revision: '0', version: '0', lease: '0' });
    for (const kv of [...kvs].sort((a, b) => Number(BigInt(a.mod_revision) - BigInt(b.mod_revision)))) {
      if (this.revisions.get(kv.key.toString()) !== BigInt(kv.mod_revision)) this.apply('put', kv);
    }
  }

  /** Applies a watched (or snapshot) change of a key, unless the view has a newer one, and tells of it. */
  apply(op: 'put' | 'delete', kv: IKeyValue): void {
    const key = kv.key.toString();
    const revision = BigInt(kv.mod_revision || '0');
    if (revision > 0n && revision < (this.revisions.get(key) ?? 0n)) return;
    if (revision > 0n) this.revisions.set(key, revision);
    const parsed = parseKey(key);
    if (parsed === undefined) return;
    // A deleted key has no value.
    const value = op === 'put' ? kv.value.toString() : undefined;
    switch (parsed.kind) {
      case 'coordinator':
        return this.coordinator.observe(value, kv.lease);
      case 'member':
        if (value === undefined) this.members.delete(parsed.id);
        else this.members.set(parsed.id, this.routed(JSON.parse(value) as MemberInfo));
        return void this.ctx.emit('members');
      case 'node':
        return;
      default:
        this.applyLogKey(parsed, value);
        return void this.ctx.emit(logEvent(parsed.kind, value === undefined), parsed.name);
    }
  }

  /** Applies a put (`value`) or delete (undefined) of one of a log's keys. */
  private applyLogKey(parsed: LogKey, value: string | undefined): void {
    const { name } = parsed;
    switch (parsed.kind) {
      case 'log':
        if (value === undefined) this.forget(name);
        else this.setLogMeta(name, JSON.parse(value) as LogMeta);
        return;
      case 'leader':
        if (value === undefined) this.leaders.delete(name);
        else this.leaders.set(name, JSON.parse(value) as LeaderInfo);
        return this.recheckQuiesced(name);
      case 'manifestEntry':
        if (value === undefined) this.deleteManifestEntry(name, parsed.firstId);
        else this.setManifest(name, JSON.parse(value) as ManifestEntry);
        return;
      case 'segment':
        if (value !== undefined) this.setSegment(name, JSON.parse(value) as SegmentMeta);
        else this.deleteSegment(name, parsed.epoch);
        return;
      case 'epoch':
        if (value !== undefined) raise(this.epochs, name, Number(value), 0);
        return;
      case 'retention':
        if (value !== undefined) raise(this.retentions, name, Number(value), 0);
        return;
      case 'flushedThrough':
        if (value !== undefined) raise(this.flushedThrough, name, Number(value), -1);
        return;
    }
  }

  /** The keys behind the view (permanent node and epoch keys aside, which are never deleted). */
  private heldKeys(): string[] {
    const held = [...this.members.keys()].map(keys.member);
    for (const name of this.logs.keys()) held.push(keys.log(name));
    for (const name of this.leaders.keys()) held.push(keys.leader(name));
    for (const name of this.retentions.keys()) held.push(keys.retention(name));
    for (const [name, segs] of this.segments) for (const epoch of segs.keys()) held.push(keys.segment(name, epoch));
    for (const [name, entries] of this.manifests) for (const firstId of entries.keys()) held.push(keys.manifestEntry(name, firstId));
    if (this.coordinator.keyHeld) held.push(keys.coordinator());
    return held;
  }

  private routed(member: MemberInfo): MemberInfo {
    const peerUrl = this.peerRoutes?.get(member.id);
    return peerUrl ? { ...member, peerUrl } : member;
  }
}

/** One of a log's keys. */
type LogKey = Extract<ParsedKey, { name: string }>;

/** The event a change of a log's key raises: a deleted log, a change of what it flushed or retains, or any other change of it. */
function logEvent(kind: LogKey['kind'], deleted: boolean): 'deleted' | 'flushed' | 'log' {
  if (kind === 'log' && deleted) return 'deleted';
  return kind === 'manifestEntry' || kind === 'retention' || kind === 'flushedThrough' ? 'flushed' : 'log';
}

/** Sets a number that only grows (`none` when absent): a stale put never lowers it. */
function raise(map: Map<string, number>, name: string, value: number, none: number): void {
  map.set(name, Math.max(value, map.get(name) ?? none));
}
