/**
 * Readers waiting for entries not committed yet (long-poll tail reads, and a
 * recovering leader waiting for its quorum): woken when the commit point they
 * wait for moves, or when their time is up. Streaming tails (tail-stream.ts)
 * follow a log instead: told of every wake of it until they stop following.
 * Forwarded appends waiting for their held ids (appends.ts) wait the same
 * way, apart: they are no readers to count or to ask commit points for.
 */
interface TailReader {
  fromId: number;
  wake(): void;
}

export class TailReaders {
  private readonly waiting = new Map<string, Set<TailReader>>();
  /** Forwarded appends waiting for held ids, per log. */
  private readonly appends = new Map<string, Set<TailReader>>();
  /** Streaming tails, per log: called on every wake of it (and of all). */
  private readonly followers = new Map<string, Set<() => void>>();

  /** Calls `listener` at every wake of `name` until the returned function is called. */
  follow(name: string, listener: () => void): () => void {
    let set = this.followers.get(name);
    if (!set) this.followers.set(name, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.followers.get(name) === set) this.followers.delete(name);
    };
  }

  /** Resolves once `wake` reports a commit point at or past `fromId` for `name`, or after `waitMs`. */
  wait(name: string, fromId: number, waitMs: number): Promise<void> {
    return waitIn(this.waiting, name, fromId, waitMs);
  }

  /** As `wait`, for a forwarded append waiting for its held ids: not counted as a reader. */
  waitForAppend(name: string, lastId: number, waitMs: number): Promise<void> {
    return waitIn(this.appends, name, lastId, waitMs);
  }

  wake(name: string, committedId: number): void {
    const followers = this.followers.get(name);
    if (followers) for (const f of followers) f();
    for (const waiting of [this.waiting, this.appends]) {
      const readers = waiting.get(name);
      if (readers) for (const r of readers) if (r.fromId <= committedId) r.wake();
    }
  }

  /** Every reader answers now (the replica stops). */
  wakeAll(): void {
    for (const followers of this.followers.values()) for (const f of followers) f();
    for (const waiting of [this.waiting, this.appends]) for (const readers of waiting.values()) for (const r of readers) r.wake();
  }

  /** Whether anything waits on the commit point of `name`: a stream, or a held tail read. */
  hasReaders(name: string): boolean {
    return this.followers.has(name) || this.waiting.has(name);
  }

  /** Held tail reads (not streams). */
  get count(): number {
    let n = 0;
    for (const readers of this.waiting.values()) n += readers.size;
    return n;
  }
}

function waitIn(waiting: Map<string, Set<TailReader>>, name: string, fromId: number, waitMs: number): Promise<void> {
  return new Promise((resolve) => {
    let readers = waiting.get(name);
    if (!readers) waiting.set(name, (readers = new Set()));
    const reader: TailReader = {
      fromId,
      wake: () => {
        clearTimeout(timer);
        readers.delete(reader);
        if (readers.size === 0) waiting.delete(name);
        resolve();
      },
    };
    const timer = setTimeout(reader.wake, waitMs);
    readers.add(reader);
  });
}
