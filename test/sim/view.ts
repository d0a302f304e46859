/**
 * A simulated replica's view of etcd, as the production ClusterView keeps
 * it: loaded from a snapshot, kept by a watch whose events arrive late, and
 * updated at once by the replica's own successful writes. Production keeps
 * the revision of each key it wrote; here an event's state of a log is
 * taken whole and the replica's own writes of later revisions are applied on
 * top again, which is the same: an older event neither undoes a newer write
 * nor hides what other writers changed before it.
 */
import { lastRecordedTimeMs, type LeaderInfo, type LogRecord, type ManifestEntry, type MemberInfo, type SegmentMeta } from '../../src/fencing/keys.js';
import type { EtcdChange, WatchEvent } from './etcd-events.js';

export interface LogEntryView {
  log: LogRecord;
  flushedId: number;
  manifest: ManifestEntry[];
  /** Revision of the newest state of this log read from etcd (watch event or read). */
  revision: number;
  /** This replica's own writes newer than `revision`, applied on top of it. */
  ownWrites: { revision: number; change: (entry: LogEntryView) => void }[];
}

export class SimView {
  readonly members = new Map<string, MemberInfo>();
  readonly logs = new Map<string, LogEntryView>();
  coordinator: string | undefined;
  revision = 0;

  /** Applies a watch event (or the initial snapshot); returns the names of logs that changed. */
  apply(ev: WatchEvent): { logs: string[]; members: boolean } {
    const changed: string[] = [];
    let members = false;
    for (const c of ev.changes) {
      if (c.kind === 'log' && this.applyLog(c, ev.revision)) changed.push(c.name);
      else if (c.kind === 'member') {
        members = true;
        if (c.member) this.members.set(c.id, c.member);
        else this.members.delete(c.id);
      } else if (c.kind === 'coordinator') this.coordinator = c.id;
    }
    this.revision = Math.max(this.revision, ev.revision);
    return { logs: changed, members };
  }

  private applyLog(c: Extract<EtcdChange, { kind: 'log' }>, revision: number): boolean {
    if (!c.log) {
      const known = this.logs.get(c.name);
      return known !== undefined && known.revision < revision && this.logs.delete(c.name);
    }
    return this.read(c.name, c.log, c.flushedId, c.manifest, revision);
  }

  /** The log as etcd had it at `revision` (a watch event or a read); false when the view already knows a newer state. */
  read(name: string, log: LogRecord, flushedId: number, manifest: ManifestEntry[], revision: number): boolean {
    const known = this.logs.get(name);
    if (known && known.revision >= revision) return false;
    const entry: LogEntryView = { log, flushedId, manifest, revision, ownWrites: (known?.ownWrites ?? []).filter((w) => w.revision > revision) };
    for (const w of entry.ownWrites) w.change(entry);
    this.logs.set(name, entry);
    return true;
  }

  /** Caches one of this replica's own writes to `name`, made at `revision`. */
  wrote(name: string, revision: number | undefined, change: (entry: LogEntryView) => void): void {
    const entry = this.logs.get(name);
    if (!entry) return;
    change(entry);
    if (revision !== undefined && revision > entry.revision) entry.ownWrites.push({ revision, change });
  }

  log(name: string): LogRecord | undefined {
    return this.logs.get(name)?.log;
  }

  flushedId(name: string): number {
    return this.logs.get(name)?.flushedId ?? -1;
  }

  /** As ClusterView.lastTimeMs. */
  lastTimeMs(name: string): number {
    const entry = this.logs.get(name);
    return entry ? lastRecordedTimeMs(entry.manifest, entry.log.segments) : 0;
  }
}

export function setSegments(entry: LogEntryView, segments: readonly SegmentMeta[]): void {
  for (const seg of segments) {
    const i = entry.log.segments.findIndex((s) => s.epoch === seg.epoch);
    if (i >= 0) entry.log.segments[i] = { ...seg };
    else entry.log.segments.push({ ...seg });
  }
  entry.log.segments.sort((a, b) => a.epoch - b.epoch);
}

export function setLeader(entry: LogEntryView, leader: LeaderInfo | undefined): void {
  entry.log.leader = leader;
  if (leader) entry.log.epoch = Math.max(entry.log.epoch, leader.epoch);
}
