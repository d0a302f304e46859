/**
 * Who may lead which log, as pure functions of the cluster view: the live
 * replicas that may lead a log (fewest leaderships first), the coordinator's
 * pass over the logs without a leader, the targets a leader that stops may
 * hand a log to, and when a restarted replica counts for an open segment
 * again (rejoin).
 */
import type { SegmentView } from '../quorum/recovery.js';

/** A log as placement sees it. */
export interface PlacedLog {
  name: string;
  replicas: readonly string[];
  epoch: number;
  leader: string | undefined;
  segments: readonly SegmentView[];
  /** Milliseconds since the epoch when the log was created. */
  createdAtMs: number;
}

/** What placement needs to know about the replicas. */
export interface PlacementView {
  /** True when the replica may take a leadership now: registered, not draining, not known dead (and, for oneself, not in a lost-quorum hold of this log). */
  mayLead(id: string, log: string): boolean;
  /** The registered incarnation of a replica, if it is registered. */
  incarnationOf(id: string): string | undefined;
}

export interface Assignment {
  log: string;
  candidate: string;
  expectedEpoch: number;
}

/** The incarnation of each registered replica among `replicas`: who a new segment is written to, who may count again. */
export function liveIncarnations(replicas: readonly string[], incarnationOf: (id: string) => string | undefined): Record<string, string> {
  const live: Record<string, string> = {};
  for (const id of replicas) {
    const incarnation = incarnationOf(id);
    if (incarnation !== undefined) live[id] = incarnation;
  }
  return live;
}

/** Leaderships per replica over `logs`. */
export function leadershipCounts(logs: Iterable<PlacedLog>): Map<string, number> {
  const led = new Map<string, number>();
  for (const log of logs) if (log.leader) led.set(log.leader, (led.get(log.leader) ?? 0) + 1);
  return led;
}

/** The live replicas of `log` that may lead it, fewest leaderships first (ties by id). */
export function leaderCandidates(log: PlacedLog, view: PlacementView, led: ReadonlyMap<string, number>): string[] {
  return log.replicas.filter((id) => view.mayLead(id, log.name)).sort((a, b) => (led.get(a) ?? 0) - (led.get(b) ?? 0) || a.localeCompare(b));
}

/**
 * The coordinator's pass: every log without a leader key, not being assigned
 * already, goes to its best candidate. A log being created is left to its
 * creator for `creationGraceMs`. Each assignment counts toward the next, so
 * one pass spreads many orphaned logs over the replicas.
 */
export function leaderlessAssignments(
  logs: readonly PlacedLog[],
  view: PlacementView,
  options: { nowMs: number; creationGraceMs: number; assigning: ReadonlySet<string> },
): Assignment[] {
  const led = leadershipCounts(logs);
  const out: Assignment[] = [];
  for (const log of logs) {
    if (log.leader || options.assigning.has(log.name)) continue;
    if (log.segments.length === 0 && options.nowMs - log.createdAtMs < options.creationGraceMs) continue;
    const candidate = leaderCandidates(log, view, led)[0];
    if (candidate === undefined) continue;
    led.set(candidate, (led.get(candidate) ?? 0) + 1);
    out.push({ log: log.name, candidate, expectedEpoch: log.epoch });
  }
  return out;
}

/**
 * Replicas a leader stopping at `epoch` may hand `log` to: candidates the
 * open segment of that epoch counts (they hold its entries, so they recover
 * from their memory), rotated by `spread` so the logs of one shutdown spread
 * over the replicas that stay.
 */
export function handoffTargets(log: PlacedLog, self: string, epoch: number, view: PlacementView, led: ReadonlyMap<string, number>, spread: number): string[] {
  const open = log.segments.at(-1);
  if (!open || open.epoch !== epoch || open.lastId !== null) return [];
  const targets = leaderCandidates(log, view, led).filter((id) => id !== self && open.replicas[id] === view.incarnationOf(id));
  const first = targets.length > 0 ? spread % targets.length : 0;
  return [...targets.slice(first), ...targets.slice(0, first)];
}

/** A restarted replica, and the id it must hold before the open segment counts it again. */
export interface Rejoining {
  incarnation: string;
  throughId: number;
}

/**
 * A replica that restarted lost what it held, so the open segment stops
 * counting it; once the leader has caught it up past everything it could
 * have acknowledged before (the leader's last id when it came back), its new
 * incarnation is recorded and it counts again. Without this, two restarts
 * over a log's life would make it unrecoverable. Updates `rejoining` and
 * answers the replicas that now count again (with their incarnations).
 */
export function caughtUpReplicas(
  open: SegmentView,
  self: string,
  live: Readonly<Record<string, string>>,
  leaderLastId: number,
  matchIdOf: (id: string, incarnation: string) => number,
  rejoining: Map<string, Rejoining>,
): Record<string, string> {
  const caughtUp: Record<string, string> = {};
  for (const [id, incarnation] of Object.entries(live)) {
    if (id === self || open.replicas[id] === incarnation) continue;
    const pending = rejoining.get(id);
    if (!pending || pending.incarnation !== incarnation) {
      rejoining.set(id, { incarnation, throughId: leaderLastId });
    } else if (matchIdOf(id, incarnation) >= pending.throughId) {
      rejoining.delete(id);
      caughtUp[id] = incarnation;
    }
  }
  return caughtUp;
}
