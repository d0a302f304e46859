/**
 * The etcd key layout of a cluster, all under /tern/<cluster>/:
 *   nodes/<id>     permanent: the replica ids that ever joined (a log's replica set is chosen from these)
 *   members/<id>   leased: a live replica process {id, clientUrl, peerUrl, incarnation}
 *   logs/<name>    permanent: log metadata {name, replicas, createdAt}
 *   epochs/<name>  permanent: the log's epoch, a decimal integer that only grows (0 = never led)
 *   leaders/<name> leased by the leader: {id, epoch, incarnation}
 */
export const keys = {
  prefix: (cluster: string) => `/tern/${cluster}/`,
  node: (id: string) => `nodes/${id}`,
  member: (id: string) => `members/${id}`,
  log: (name: string) => `logs/${name}`,
  epoch: (name: string) => `epochs/${name}`,
  leader: (name: string) => `leaders/${name}`,
};

export interface MemberInfo {
  id: string;
  clientUrl: string;
  peerUrl: string;
  /** New at every process start: lets recovery tell a restarted (amnesiac) replica from the one that held a segment. */
  incarnation: string;
}

export interface LogMeta {
  name: string;
  /** The replicas that hold the log, fixed at creation. */
  replicas: string[];
  createdAt: string;
}

export interface LeaderInfo {
  id: string;
  epoch: number;
  incarnation: string;
}

export interface LogRecord {
  meta: LogMeta;
  epoch: number;
  leader: LeaderInfo | undefined;
}
