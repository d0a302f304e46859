/**
 * Readers waiting for entries not committed yet (long-poll tail reads, and a
 * recovering leader waiting for its quorum): woken when the commit point they
 * wait for moves, or when their time is up.
 */
interface TailReader {
  fromId: number;
  wake(): void;
}

export class TailReaders {
  private readonly waiting = new Map<string, Set<TailReader>>();

  /** Resolves once `wake` reports a commit point at or past `fromId` for `name`, or after `waitMs`. */
  wait(name: string, fromId: number, waitMs: number): Promise<void> {
    return new Promise((resolve) => {
      let readers = this.waiting.get(name);
      if (!readers) this.waiting.set(name, (readers = new Set()));
      const reader: TailReader = {
        fromId,
        wake: () => {
          clearTimeout(timer);
          readers.delete(reader);
          if (readers.size === 0) this.waiting.delete(name);
          resolve();
        },
      };
      const timer = setTimeout(reader.wake, waitMs);
      readers.add(reader);
    });
  }

  wake(name: string, committedId: number): void {
    const readers = this.waiting.get(name);
    if (!readers) return;
    for (const r of readers) if (r.fromId <= committedId) r.wake();
  }

  /** Every reader answers now (the replica stops). */
  wakeAll(): void {
    for (const readers of this.waiting.values()) for (const r of readers) r.wake();
  }

  get count(): number {
    let n = 0;
    for (const readers of this.waiting.values()) n += readers.size;
    return n;
  }
}
