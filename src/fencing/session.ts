/**
 * This replica's session with etcd: the lease, the registration under it
 * (the permanent node key and the leased member key), the keep-alive
 * deadline, and what follows a lost lease (revoke it, register again under a
 * new one).
 *
 * The etcd3 client can miss a lost lease (its keep-alive stream may stay open
 * with the network cut), so the session keeps its own deadline from the last
 * answered keep-alive and declares the lease lost when it passes. Safety never
 * depends on this: epochs checked by the replicas and by etcd do that.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Lease } from 'etcd3';
import { retryWithBackoff, type DirectoryContext } from './context.js';
import { keys, type MemberInfo } from './keys.js';

/** How long a replica whose lease was lost waits for etcd to revoke it before registering again anyway. */
const LEASE_REVOKE_TIMEOUT_MS = 2000;
/**
 * How often the keep-alive deadline is checked: a missed deadline is noticed
 * this late at most, small against a lease TTL of seconds, and the check is a
 * clock read.
 */
const LEASE_WATCHDOG_INTERVAL_MS = 250;
const MS_PER_SECOND = 1000;

export interface SessionHooks {
  /** etcd granted the current lease this id. */
  granted(leaseId: string): void;
  /** The lease is (or may be) gone, and the session now registers again under a new one: called once per loss. */
  lost(reason: string): void;
  /** Registered again under a new lease after a loss. */
  registeredAgain(): void;
}

export class Session {
  private lease: Lease;
  private leaseId: Promise<string> | undefined;
  private lastKeepAliveAt = Date.now();
  private watchdog: NodeJS.Timeout | undefined;
  private reRegistering = false;

  constructor(
    private readonly ctx: DirectoryContext,
    private readonly leaseTtlSeconds: number,
    private readonly hooks: SessionHooks,
  ) {
    this.lease = this.newLease();
  }

  /** False from a lost lease until this replica is registered again under a new one, and once the directory closes. */
  get up(): boolean {
    return !this.reRegistering && !this.ctx.closed();
  }

  /** Records this replica among those that ever joined (permanent), then registers it under the lease. */
  async join(): Promise<void> {
    await this.ctx.ns.put(keys.node(this.ctx.self.id)).value(this.ctx.self.id);
    await this.register();
  }

  /** Watches the keep-alive deadline from now on. */
  startWatchdog(): void {
    this.watchdog = setInterval(() => this.checkLease(), LEASE_WATCHDOG_INTERVAL_MS);
  }

  /** Rewrites this replica's member key, bound to the current lease. */
  async putMember(member: MemberInfo): Promise<void> {
    await this.ctx.ns.put(keys.member(member.id)).value(JSON.stringify(member)).lease(await this.currentLeaseId());
  }

  /** The current lease's id, asking etcd to grant the lease the first time. */
  currentLeaseId(): Promise<string> {
    const lease = this.lease;
    this.leaseId ??= lease.grant().then((id) => {
      if (lease === this.lease) this.hooks.granted(id);
      return id;
    });
    return this.leaseId;
  }

  /** Stops the watchdog; revoking tells the others at once that this replica and its leader keys are gone. */
  async close(): Promise<void> {
    clearInterval(this.watchdog);
    await this.lease.revoke().catch(() => undefined);
  }

  private newLease(): Lease {
    const lease = this.ctx.ns.lease(this.leaseTtlSeconds, { autoKeepAlive: true });
    lease.on('keepaliveSucceeded', () => {
      if (lease === this.lease) this.lastKeepAliveAt = Date.now();
    });
    lease.on('lost', (err) => {
      if (lease === this.lease) this.leaseLost(`etcd says the lease is lost: ${err.message}`);
    });
    return lease;
  }

  private async register(): Promise<void> {
    await this.currentLeaseId();
    this.lastKeepAliveAt = Date.now();
    await this.lease.put(keys.member(this.ctx.self.id)).value(JSON.stringify(this.ctx.self));
  }

  private checkLease(): void {
    if (Date.now() - this.lastKeepAliveAt > this.leaseTtlSeconds * MS_PER_SECOND) {
      this.leaseLost(`no keep-alive answered for ${this.leaseTtlSeconds} s`);
    }
  }

  /** Steps everything down (through `hooks.lost`), then registers again under a new lease until it works. */
  private leaseLost(reason: string): void {
    if (this.reRegistering || this.ctx.closed()) return;
    this.reRegistering = true;
    this.hooks.lost(reason);
    // Revoke rather than let it expire: etcd may still hold the old lease (only its
    // answers were lost), and with it this replica's member, leader and coordinator
    // keys, which would keep its logs from being reassigned for another TTL. Best
    // effort and bounded: with etcd unreachable the lease expires on its own.
    const old = this.lease;
    void (async () => {
      await revokeWithin(old, LEASE_REVOKE_TIMEOUT_MS);
      await retryWithBackoff(
        async () => {
          this.lease = this.newLease();
          this.leaseId = undefined;
          try {
            await this.register();
            return true;
          } catch (err) {
            await revokeWithin(this.lease, LEASE_REVOKE_TIMEOUT_MS);
            throw err;
          }
        },
        () => !this.ctx.closed(),
      );
      this.reRegistering = false;
      this.hooks.registeredAgain();
    })();
  }
}

/** Revokes `lease` (the keys bound to it go at once), waiting at most `timeoutMs` for etcd. */
async function revokeWithin(lease: Lease, timeoutMs: number): Promise<void> {
  const timeout = new AbortController();
  await Promise.race([lease.revoke().catch(() => undefined), sleep(timeoutMs, undefined, { signal: timeout.signal }).catch(() => undefined)]);
  timeout.abort();
}
