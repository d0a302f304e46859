/**
 * What the parts of the cluster directory share: the etcd client scoped to
 * the cluster, this replica, the events they raise through the directory,
 * whether the directory closed, and how they try etcd again after it fails.
 */
import type { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Namespace } from 'etcd3';
import type { MemberInfo } from './keys.js';

/**
 * First wait before an etcd request that failed is tried again: short, as
 * most failures are a blip (a leader election in etcd, a dropped connection).
 */
const RETRY_FIRST_DELAY_MS = 100;
/**
 * The wait doubles up to this: a long outage is not hammered, and its end is
 * noticed within this long.
 */
const RETRY_MAX_DELAY_MS = 2000;

export interface DirectoryEvents {
  /** A log's metadata, epoch, leader or segments changed. */
  log: [name: string];
  /** A replica joined or left. */
  members: [];
  /** A log was deleted. */
  deleted: [name: string];
  /** A log's manifest (flushed objects) or retention point changed. */
  flushed: [name: string];
  /** The membership lease is (or may be) gone: every leader key of this replica is gone with it. */
  leaseLost: [reason: string];
  /** This replica became, or stopped being, the coordinator. */
  coordinator: [isCoordinator: boolean];
}

/** Emits one of the directory's events (the directory's own `emit`). */
export type Emit = EventEmitter<DirectoryEvents>['emit'];

export interface DirectoryContext {
  /** The etcd client, its keys relative to the cluster's prefix. */
  readonly ns: Namespace;
  readonly self: MemberInfo;
  readonly emit: Emit;
  /** True once the directory began to close: nothing is started or tried again after. */
  closed(): boolean;
}

/** Runs `attempt` until it returns true, backing off after each false or throw, while `keepGoing()`; resolves whether one did. */
export async function retryWithBackoff(attempt: () => Promise<boolean>, keepGoing: () => boolean): Promise<boolean> {
  for (let delay = RETRY_FIRST_DELAY_MS; keepGoing(); delay = Math.min(delay * 2, RETRY_MAX_DELAY_MS)) {
    try {
      if (await attempt()) return true;
    } catch {
      // etcd failed or could not be reached: try again.
    }
    await sleep(delay);
  }
  return false;
}
