/**
 * Keeps the cluster view current: loads every key at one revision, then
 * watches from the next. The watch either delivers every change after that
 * snapshot, in order, or is replaced by a new snapshot and watch: on an error
 * (etcd canceled it, for example after compacting past its revision; the
 * etcd3 client then gives it up) and on a disconnection (the client resumes
 * from the last revision it was told of, which can skip events it had not
 * received yet).
 */
import type { Watcher } from 'etcd3';
import type { ClusterView } from './cluster-view.js';
import { retryWithBackoff, type DirectoryContext } from './context.js';
import { keys } from './keys.js';

export class ViewWatch {
  private watcher: Watcher | undefined;

  constructor(
    private readonly ctx: DirectoryContext,
    private readonly view: ClusterView,
  ) {}

  /** Loads a snapshot into the view and watches from it; resolves once the watch is connected. */
  async start(): Promise<void> {
    const res = await this.ctx.ns.getAll().exec();
    const revision = BigInt(res.header.revision);
    this.view.reconcile(res.kvs, revision);
    const watcher = this.ctx.ns.watch().prefix(keys.all()).startRevision(String(revision + 1n)).watcher();
    watcher.on('put', (kv) => this.view.apply('put', kv));
    watcher.on('delete', (kv) => this.view.apply('delete', kv));
    try {
      await new Promise<void>((resolve, reject) => {
        const settle = (err?: Error) => {
          watcher.off('connected', connected).off('error', settle).off('disconnected', settle);
          if (err) reject(err);
          else resolve();
        };
        const connected = () => settle();
        watcher.on('connected', connected).on('error', settle).on('disconnected', settle);
      });
    } catch (err) {
      dropWatcher(watcher);
      throw err;
    }
    if (this.ctx.closed()) return dropWatcher(watcher);
    watcher.on('error', () => this.rewatch(watcher));
    watcher.on('disconnected', () => this.rewatch(watcher));
    this.watcher = watcher;
  }

  async close(): Promise<void> {
    await this.watcher?.cancel().catch(() => undefined);
  }

  /** Replaces a watch that failed by a new snapshot and watch, trying again while etcd fails. */
  private rewatch(watcher: Watcher): void {
    if (watcher !== this.watcher) return;
    this.watcher = undefined;
    dropWatcher(watcher);
    void retryWithBackoff(
      async () => {
        await this.start();
        return true;
      },
      () => !this.ctx.closed(),
    );
  }
}

/** Stops applying `watcher`'s events and detaches it, so the client does not resume it. */
function dropWatcher(watcher: Watcher): void {
  for (const event of ['put', 'delete', 'error', 'disconnected'] as const) watcher.removeAllListeners(event);
  // A watcher's error with no listener would be thrown.
  watcher.on('error', () => undefined);
  void watcher.cancel().catch(() => undefined);
}
