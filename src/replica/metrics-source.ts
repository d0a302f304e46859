/**
 * What the replica's gauges read when Prometheus scrapes: per-log commit and
 * flush points, memory, tail readers, etcd lease and coordinator, peers up,
 * and the lag of the named readers of the logs it leads.
 */
import { performance } from 'node:perf_hooks';
import type { ClusterDirectory } from '../fencing/directory.js';
import type { MemoryAccount } from '../quorum/entry-buffer.js';
import type { ReplicaConfig } from './config.js';
import type { LogState, ReplicaContext } from './log-state.js';
import type { LogGauges, MetricsSource } from './metrics.js';
import type { ReaderLag } from './retention.js';

/** The parts of the replica its gauges read. */
export interface MetricsView {
  readonly config: ReplicaConfig;
  readonly logs: ReadonlyMap<string, LogState>;
  readonly memory: MemoryAccount;
  readonly directory: ClusterDirectory | undefined;
  readonly tailWaiters: number;
  readonly peerContact: ReadonlyMap<string, number>;
  committedId(name: string): number;
  localLeader: ReplicaContext['localLeader'];
  /** The lag of the named readers of the logs this replica leads. */
  readerLags(nowMs: number): ReaderLag[];
}

export function metricsSource(replica: MetricsView): MetricsSource {
  return {
    logs: () => {
      const out: LogGauges[] = [];
      for (const [name, state] of replica.logs) {
        const committedId = replica.committedId(name);
        const flushedId = replica.directory?.flushedId(name) ?? -1;
        const epoch = Math.max(replica.directory?.log(name)?.epoch ?? 0, state.replica.epoch);
        const leader = replica.localLeader(name) !== undefined;
        out.push({ log: name, committedId, flushedId, flushLagEntries: Math.max(0, committedId - flushedId), flushLagBytes: state.replica.buffer.bytes, epoch, leader, producers: leader ? (state.producers?.size ?? 0) : 0 });
      }
      return out;
    },
    bufferBytes: () => replica.memory.bytes,
    bufferLimitBytes: () => replica.config.maxBufferBytes,
    bufferEntries: () => {
      let n = 0;
      for (const state of replica.logs.values()) n += state.replica.buffer.length;
      return n;
    },
    tailWaiters: () => replica.tailWaiters,
    readerLags: () => replica.readerLags(Date.now()),
    hasLog: (name) => replica.directory?.hasLog(name) === true,
    logCount: () => replica.directory?.logNames().length ?? replica.logs.size,
    quiescedLogs: () => replica.directory?.quiescedCount() ?? 0,
    leaseUp: () => replica.directory?.leaseUp ?? false,
    coordinator: () => replica.directory?.isCoordinator ?? false,
    peersUp: () => {
      const now = performance.now();
      const up: Record<string, boolean> = {};
      for (const [peer, at] of replica.peerContact) up[peer] = now - at < replica.config.ackTimeoutMs;
      return up;
    },
  };
}
