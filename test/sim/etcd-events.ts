/**
 * What SimEtcd's watches deliver: one event per revision, listing the state
 * after it of everything the revision changed (deep copies, so a holder can
 * keep them). A log change carries the whole LogRecord plus its flushed id
 * and manifest, not the keys that changed: a simulated replica replaces its
 * view of the log with it.
 */
import type { LogRecord, ManifestEntry, MemberInfo } from '../../src/fencing/keys.js';

/** What changed at one revision, as the state after it (deep copies). */
export type EtcdChange =
  /** A log's metadata, epoch, leader key, segments, manifest or flushed mark changed; log undefined: deleted. */
  | { kind: 'log'; name: string; log: LogRecord | undefined; flushedId: number; manifest: ManifestEntry[] }
  /** A member key was put (member) or deleted (undefined). */
  | { kind: 'member'; id: string; member: MemberInfo | undefined }
  /** The coordinator key: held by `id`, or gone. */
  | { kind: 'coordinator'; id: string | undefined }
  /** A permanent node key appeared. */
  | { kind: 'node'; id: string };

export interface WatchEvent {
  revision: number;
  changes: EtcdChange[];
}

/** One line per change, for the trace. */
export function describeChange(c: EtcdChange): string {
  switch (c.kind) {
    case 'log':
      return c.log ? `log ${c.name} epoch ${c.log.epoch} leader ${c.log.leader ? `${c.log.leader.id}@${c.log.leader.epoch}` : '-'} segs ${c.log.segments.length} flushed ${c.flushedId}` : `log ${c.name} deleted`;
    case 'member':
      return `member ${c.id} ${c.member ? (c.member.draining ? 'draining' : 'up') : 'gone'}`;
    case 'coordinator':
      return `coordinator ${c.id ?? '-'}`;
    case 'node':
      return `node ${c.id}`;
  }
}
