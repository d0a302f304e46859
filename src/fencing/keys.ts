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
export const keys = {
  prefix: (cluster: string) => `/tern/${cluster}/`,
  node: (id: string) => `nodes/${id}`,
  member: (id: string) => `members/${id}`,
  log: (name: string) => `logs/${name}`,
  epoch: (name: string) => `epochs/${name}`,
  leader: (name: string) => `leaders/${name}`,
  segments: (name: string) => `segments/${name}/`,
  segment: (name: string, epoch: number) => `segments/${name}/${String(epoch).padStart(10, '0')}`,
  coordinator: () => 'coordinator',
  manifestEntry: (name: string, firstId: number) => `manifest/${name}/${String(firstId).padStart(16, '0')}`,
  retention: (name: string) => `retention/${name}`,
  flushedThrough: (name: string) => `flushed/${name}`,
};

/** A flushed object, recorded by the leader that wrote it (compared on its epoch). */
export interface ManifestEntry {
  key: string;
  firstId: number;
  lastId: number;
  epoch: number;
  /** Object size in bytes. */
  bytes: number;
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
