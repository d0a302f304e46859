/**
 * The commit point as arithmetic: the highest id held by at least `quorum`
 * replicas, given the highest contiguous id each replica holds (its match id,
 * -1 when it holds nothing). Because every match id is a contiguous prefix,
 * the `quorum`-th largest match id is exactly that point.
 */
export function quorumMatchId(matchIds: readonly number[], quorum: number): number {
  if (quorum < 1 || quorum > matchIds.length) {
    throw new RangeError(`quorum ${quorum} impossible with ${matchIds.length} replicas`);
  }
  const sorted = [...matchIds].sort((a, b) => b - a);
  return sorted[quorum - 1]!;
}

/** A strict majority of `replicas`: 2 of 3. */
export function majorityOf(replicas: number): number {
  return Math.floor(replicas / 2) + 1;
}
