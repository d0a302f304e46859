/**
 * Node.js flags a replica process is started with: every launcher we ship
 * passes them (`tern cluster` and the tests and benchmarks through
 * LocalCluster, deploy/Dockerfile's ENTRYPOINT), and a replica started
 * without them says so at start-up. They must be on node's command line: V8
 * sizes its heap before any code runs, and NODE_OPTIONS refuses them.
 *
 * --initial-old-space-size=256 (MiB; like a JVM's -Xms): a replica's live
 * JavaScript heap is about 25 MB, so V8's default first limits for the old
 * generation sit close to it, and with the new space's capacity as big as
 * the headroom V8 starts incremental marking every 100-300 ms under load
 * (`node --trace-incremental-marking` says "task" and "allocation limit"),
 * each ending in a 10-30 ms mark-compact on the one thread that also serves
 * appends. Entries held until their object is flushed are promoted Buffers,
 * which only a mark-compact frees. With the floor, on the 2-core benchmark VM
 * (64 KiB x 16 producers, 25 s): full GCs per 5 s fell from 24-31 to 10-12 on
 * the leader and from 16-27 to 2-6 on a follower, followers used 22% of a
 * core instead of 33%, and appends/s rose 30% (840 -> 1107); at 1 KiB x 64,
 * +16-20%. The heap only grows that far if garbage piles up that long.
 */
export const REPLICA_NODE_FLAGS: readonly string[] = ['--initial-old-space-size=256'];

/** The flags of REPLICA_NODE_FLAGS (by name) that `execArgv` lacks. */
export function missingNodeFlags(execArgv: readonly string[]): string[] {
  const names = new Set(execArgv.map((a) => a.split('=')[0]));
  return REPLICA_NODE_FLAGS.filter((f) => !names.has(f.split('=')[0]));
}
