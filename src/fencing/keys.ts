/**
 * The etcd key layout of a cluster, all under /tern/<cluster>/:
 *   nodes/<id>     permanent: the replica ids that ever joined (a log's replica set is chosen from these)
 *   members/<id>   leased: a live replica process {id, clientUrl, peerUrl, incarnation}
 *   logs/<name>    permanent: log metadata {name, uid, replicas, createdAt}
 *   epochs/<name>  permanent: the log's epoch, a decimal integer that only grows (0 = never led)
 *   leaders/<name> leased by the leader: {id, epoch, incarnation}
 *   segments/<name>/<epoch, 10 digits>  permanent: one segment per epoch that led the log
 *   coordinator    leased: the replica that assigns leaderless logs {id}
 *   manifest/<name>/<firstId, 16 digits>  permanent: a flushed object {key, firstId, lastId, epoch, bytes}
 *   retention/<name>  permanent: ids below this decimal are truncated
 *   flushed/<name>    permanent: ids through this decimal were flushed, only grows (manifest entries of truncated objects go, it stays)
 */
/** The first path segment of each kind of key: `keys` builds keys from these and `parseKey` reads them back. */
const DIRS = {
  node: 'nodes',
  member: 'members',
  log: 'logs',
  epoch: 'epochs',
  leader: 'leaders',
  segment: 'segments',
  manifestEntry: 'manifest',
  retention: 'retention',
  flushedThrough: 'flushed',
} as const;
const COORDINATOR = 'coordinator';
/** Ids in keys are zero-padded to a fixed width so that etcd's byte order of a log's keys is their numeric order. */
const SEGMENT_EPOCH_DIGITS = 10;
const MANIFEST_FIRST_ID_DIGITS = 16;

export const keys = {
  prefix: (cluster: string) => `/tern/${cluster}/`,
  /** Every key of the cluster (relative to `prefix`): what the directory loads and watches. */
  all: () => '',
  /** Prefix of every `node` key. */
  nodes: () => `${DIRS.node}/`,
  node: (id: string) => `${DIRS.node}/${id}`,
  member: (id: string) => `${DIRS.member}/${id}`,
  log: (name: string) => `${DIRS.log}/${name}`,
  epoch: (name: string) => `${DIRS.epoch}/${name}`,
  leader: (name: string) => `${DIRS.leader}/${name}`,
  /** Prefix of every segment key of a log. */
  segments: (name: string) => `${DIRS.segment}/${name}/`,
  segment: (name: string, epoch: number) => `${keys.segments(name)}${String(epoch).padStart(SEGMENT_EPOCH_DIGITS, '0')}`,
  coordinator: () => COORDINATOR,
  /** Prefix of every manifest entry key of a log. */
  manifest: (name: string) => `${DIRS.manifestEntry}/${name}/`,
  manifestEntry: (name: string, firstId: number) => `${keys.manifest(name)}${String(firstId).padStart(MANIFEST_FIRST_ID_DIGITS, '0')}`,
  retention: (name: string) => `${DIRS.retention}/${name}`,
  flushedThrough: (name: string) => `${DIRS.flushedThrough}/${name}`,
  /**
   * All that a delete of the log removes: its metadata key, its other single
   * keys, and the prefixes of its segments and manifest entries. Its epoch is
   * not among them: it outlives the log (a log created again counts on from it).
   */
  ofLog: (name: string) => ({
    meta: keys.log(name),
    rest: [keys.leader(name), keys.retention(name), keys.flushedThrough(name)],
    prefixes: [keys.segments(name), keys.manifest(name)],
  }),
};

/** A key read back: its kind (named as its `keys` builder) and what it names. */
export type ParsedKey =
  | { kind: 'coordinator' }
  | { kind: 'node' | 'member'; id: string }
  | { kind: 'log' | 'epoch' | 'leader' | 'retention' | 'flushedThrough'; name: string }
  | { kind: 'segment'; name: string; epoch: number }
  | { kind: 'manifestEntry'; name: string; firstId: number };

/** What a key of the layout above names; undefined for a key outside it. */
export function parseKey(key: string): ParsedKey | undefined {
  if (key === COORDINATOR) return { kind: 'coordinator' };
  const slash = key.indexOf('/');
  const dir = key.slice(0, slash);
  const rest = key.slice(slash + 1);
  const kind = slash < 0 ? undefined : (Object.keys(DIRS) as (keyof typeof DIRS)[]).find((k) => DIRS[k] === dir);
  switch (kind) {
    case undefined:
      return undefined;
    case 'node':
    case 'member':
      return { kind, id: rest };
    case 'segment':
    case 'manifestEntry': {
      // The log's name may hold slashes; the number after the last one is the key's own.
      const last = rest.lastIndexOf('/');
      const name = rest.slice(0, last);
      const n = Number(rest.slice(last + 1));
      return kind === 'segment' ? { kind, name, epoch: n } : { kind, name, firstId: n };
    }
    default:
      return { kind, name: rest };
  }
}

/** A flushed object, recorded by the leader that wrote it (compared on its epoch). */
export interface ManifestEntry {
  key: string;
  firstId: number;
  lastId: number;
  epoch: number;
  /** Object size in bytes. */
  bytes: number;
  /** Timestamps (ms since the epoch) of its first and last entries; absent on objects written before entries had them. */
  firstTimeMs?: number;
  lastTimeMs?: number;
}

/**
 * A run of ids written by the leader of one epoch. Open (lastId null) while
 * that leader may still append; sealed by the next leader's recovery with the
 * last id it kept. Ids after a sealed lastId written in that epoch are
 * discarded everywhere.
 */
export interface SegmentMeta {
  epoch: number;
  firstId: number;
  lastId: number | null;
  /**
   * Incarnation of each replica the segment was written to. A replica whose
   * incarnation changed since (it restarted and forgot its memory) does not
   * count toward this segment's recovery quorum.
   */
  replicas: Record<string, string>;
  /**
   * Set by a leader that stopped cleanly (controlled shutdown): it stopped
   * taking appends, drained its rounds, flushed every committed entry to
   * object storage and sealed the segment at its last committed id, all
   * before giving up its leader key. Recovery of such a segment needs no fence
   * answers: every id up to lastId is in object storage, nothing after it was
   * acknowledged (BookKeeper's closed ledger).
   */
  closedClean?: boolean;
  /**
   * Set with closedClean when the leader closed the log because it went idle
   * (quiescence), not because it stopped: the log then has no leader, and no
   * replica takes it until an append reopens it (README, Quiescence).
   */
  quiesced?: boolean;
  /**
   * On a quiesced seal: the idempotent producers its leader remembered. 0
   * lets the reopen start an empty table without reading the newest object.
   */
  producers?: number;
  /** On a clean seal: the timestamp of the last entry (lastId), so the next leader's times start at or above it. */
  lastTimeMs?: number;
}

/**
 * The newest entry time etcd records of a log (0: none): its objects' last
 * times and its clean seals'. A new leader stamps no lower, so times never go
 * back across a leadership change, also when every entry was flushed and
 * released (and the new leader's clock runs behind the old one's).
 */
export function lastRecordedTimeMs(manifest: Iterable<Pick<ManifestEntry, 'lastTimeMs'>>, segments: Iterable<Pick<SegmentMeta, 'lastTimeMs'>>): number {
  let t = 0;
  for (const e of manifest) if (e.lastTimeMs !== undefined && e.lastTimeMs > t) t = e.lastTimeMs;
  for (const seg of segments) if (seg.lastTimeMs !== undefined && seg.lastTimeMs > t) t = seg.lastTimeMs;
  return t;
}

export interface MemberInfo {
  id: string;
  clientUrl: string;
  peerUrl: string;
  /** New at every process start: lets recovery tell a restarted (amnesiac) replica from the one that held a segment. */
  incarnation: string;
  /** Set once the replica began a controlled shutdown: it takes no new leadership. */
  draining?: boolean;
}

export interface LogMeta {
  name: string;
  /**
   * New at every creation of the name, and part of its objects' keys: a log
   * deleted and created again never shares objects with its former self.
   * Absent on logs created before it existed (their objects keep the old keys).
   */
  uid?: string;
  /** The replicas that hold the log, fixed at creation. */
  replicas: string[];
  createdAt: string;
  /** Retention policy, applied by the log's leader in the background (README, Retention); absent: only explicit truncation. */
  retention?: RetentionPolicy;
}

/** Limits on what a log keeps; each is a positive safe integer, absent for no limit. */
export interface RetentionPolicy {
  maxAgeMs?: number;
  maxBytes?: number;
  maxEntries?: number;
}

export interface LeaderInfo {
  id: string;
  epoch: number;
  incarnation: string;
}

/** The exact value of a leader key: transactions compare it byte for byte, so it is built here only. */
export function leaderKeyValue(leader: LeaderInfo): string {
  return JSON.stringify({ id: leader.id, epoch: leader.epoch, incarnation: leader.incarnation } satisfies LeaderInfo);
}

export interface LogRecord {
  meta: LogMeta;
  epoch: number;
  leader: LeaderInfo | undefined;
  /** Ascending by epoch. */
  segments: SegmentMeta[];
}

/**
 * True when the log is quiesced (README, Quiescence): no leader key, and its
 * last segment was sealed closed clean because the log went idle. Nobody
 * takes such a log until an append reopens it.
 */
export function isQuiesced(log: { leader: unknown; segments: readonly Pick<SegmentMeta, 'lastId' | 'closedClean' | 'quiesced'>[] }): boolean {
  const last = log.segments.at(-1);
  return log.leader === undefined && last !== undefined && last.quiesced === true && last.closedClean === true && last.lastId !== null;
}
