/**
 * The coordinator election (the coordinator assigns leaderless logs): this
 * replica's campaign for the leased coordinator key and its retries, who
 * holds the key as far as this replica knows (and so whether it is the
 * coordinator), and its resignation for good when it drains.
 */
import { retryWithBackoff, type DirectoryContext } from './context.js';
import { keys } from './keys.js';
import type { Session } from './session.js';

export class CoordinatorElection {
  private coordinatorId: string | undefined;
  /**
   * Lease the coordinator key is bound to. The key is this replica's only under
   * its current lease: one bound to a lease it lost is gone, or about to be.
   */
  private coordinatorLease: string | undefined;
  /** This replica's current lease once granted; undefined from a lost lease until the next is granted. */
  private ownLease: string | undefined;
  private campaigning = false;
  /** Set by resign: a stopping replica never campaigns for coordinator again. */
  private draining = false;

  constructor(
    private readonly ctx: DirectoryContext,
    private readonly session: Session,
  ) {}

  get isCoordinator(): boolean {
    return this.coordinatorId === this.ctx.self.id && this.ownLease !== undefined && this.coordinatorLease === this.ownLease;
  }

  /** The replica holding the coordinator key, as far as this one knows. */
  get holder(): string | undefined {
    return this.coordinatorId;
  }

  /** Whether some replica holds the coordinator key, as far as this one knows. */
  get keyHeld(): boolean {
    return this.coordinatorId !== undefined;
  }

  leaseGranted(leaseId: string): void {
    this.ownLease = leaseId;
  }

  /** The lease is gone, and the coordinator key with it if this replica held it. */
  leaseLost(): void {
    this.changing(() => (this.ownLease = undefined));
  }

  /** The coordinator key changed: held by `id` under `lease`, or gone (`id` undefined). Campaigns when it is gone. */
  observe(id: string | undefined, lease: string | undefined): void {
    this.changing(() => {
      this.coordinatorId = id;
      this.coordinatorLease = id === undefined ? undefined : lease;
    });
    if (id === undefined && this.session.up) this.campaignUntilDone();
  }

  /** Tries to become the coordinator (a leased key); called again whenever the key disappears. */
  async campaign(): Promise<void> {
    if (this.ctx.closed() || this.draining) return;
    const { ns } = this.ctx;
    await ns
      .if(keys.coordinator(), 'Create', '==', 0)
      .then(ns.put(keys.coordinator()).value(this.ctx.self.id).lease(await this.session.currentLeaseId()))
      .commit();
    await this.read();
  }

  /** Reads the coordinator key from etcd itself (the watch may lag it) and answers its holder. */
  async read(): Promise<string | undefined> {
    const [current] = (await this.ctx.ns.get(keys.coordinator()).exec()).kvs;
    this.observe(current?.value.toString(), current?.lease);
    return this.coordinatorId;
  }

  /**
   * Campaigns until etcd answers an attempt (whoever wins), backing off while
   * it fails: a campaign error dropped once could leave the cluster without a
   * coordinator, and leaderless logs unassigned, until the next change of the
   * key. One loop at a time; it stops while the lease is being replaced
   * (re-registering campaigns when done), once this replica drains (it never
   * campaigns again) and once the directory closes.
   */
  campaignUntilDone(): void {
    if (this.campaigning) return;
    this.campaigning = true;
    void retryWithBackoff(
      async () => {
        await this.campaign();
        // The key went again between the attempt and the read: campaign again.
        return this.coordinatorId !== undefined;
      },
      () => this.session.up && !this.draining,
    ).finally(() => (this.campaigning = false));
  }

  /** Never campaigns again, and gives up the coordinator key if this replica holds it, so a replica that stays takes it. */
  async resign(): Promise<void> {
    this.draining = true;
    const { ns } = this.ctx;
    await ns
      .if(keys.coordinator(), 'Value', '==', this.ctx.self.id)
      .then(ns.delete().key(keys.coordinator()))
      .commit();
  }

  /** Runs `change` and tells of a change of `isCoordinator` it made. */
  private changing(change: () => void): void {
    const was = this.isCoordinator;
    change();
    if (was !== this.isCoordinator) this.ctx.emit('coordinator', this.isCoordinator);
  }
}
