/**
 * The jepsen-lite checker: judges a recorded history of appends and reads
 * against the final state of every log. Independent of the server: it
 * imports nothing from src/, so a bug there cannot hide itself here.
 *
 * Anomalies, per log (each must be zero for a valid run):
 * - lost:       an append acknowledged ok whose value is not at its id in the final read
 * - phantom:    a final value nobody appended, or an append that definitely failed yet is present
 * - duplicated: a value present at more than one id
 * - divergent:  two reads (any replicas, any time, final reads included) with different values at one id
 * - order:      append A completed ok before append B was invoked, yet A's id is not lower
 * - gaps:       final ids not dense from the first retained id
 * - backwards:  a reader's tail reads returning an id lower than one it already had
 * - beyond:     a read returning an id the final read does not have (an entry later discarded)
 *
 * Outside the promise: a whole-cluster SIGKILL (the kill-all nemesis) fails
 * three replicas at once, and Tern promises nothing then for a log with
 * acknowledged entries not yet in object storage. Such a log (one not
 * quiesced at the kill) is judged on everything after the kill, but its
 * losses of entries acknowledged before the restart, and what follows from
 * them (a read before the restart that saw a value since lost, or an id past
 * the end the log restarted from; a later append given an id lower than one
 * acknowledged before), are listed under `outsidePromise` (a loss as
 * `lost_outside_promise`), not as anomalies. A log that was quiesced at the
 * kill is judged in full: it had nothing unflushed, so it must lose nothing.
 */

export type Outcome = 'ok' | 'fail' | 'info';

export interface AppendOp {
  type: 'append';
  /** The client that did it. */
  process: string;
  log: string;
  replica: string;
  /** Unique per append, never retried with the same value. */
  value: string;
  invokeMs: number;
  completeMs: number;
  outcome: Outcome;
  /** The id the server gave, when ok. */
  id?: number;
  /** Appended through the client's idempotent producer, which retried it with the same sequence until answered. */
  idempotent?: boolean;
  /** The server's error code, when it answered with one (SEQUENCE_GAP: a producer it forgot). */
  error?: string;
}

export interface ReadOp {
  type: 'read';
  process: string;
  log: string;
  replica: string;
  invokeMs: number;
  completeMs: number;
  outcome: Outcome;
  /** Tail reads of one process are expected to move forward. */
  tail: boolean;
  entries?: { id: number; value: string }[];
}

export type Op = AppendOp | ReadOp;

export interface FinalState {
  /** Per log: the first retained id, and what each replica returned when read in full after healing. */
  [log: string]: { firstId: number; replicas: Record<string, { id: number; value: string }[]> };
}

/**
 * A whole-cluster SIGKILL (nemesis kill-all), in history time. Nothing can be
 * acknowledged between the kill and the restart except answers already on
 * their way, so "acknowledged before the restart" is "acknowledged before the kill".
 */
export interface KillAll {
  killMs: number;
  /** When the replicas were started again. */
  restartMs: number;
  /** The logs whose status showed them quiesced at the kill (appends held meanwhile): judged in full. Every other log is not. */
  quiesced: readonly string[];
}

export interface Anomaly {
  kind: 'lost' | 'phantom' | 'duplicated' | 'divergent' | 'order' | 'gap' | 'backwards' | 'beyond' | 'lost_outside_promise';
  detail: string;
  ops: Op[];
}

export interface LogVerdict {
  valid: boolean;
  anomalies: Anomaly[];
  /**
   * What a kill-all while the log was not quiesced explains (see the top of
   * this file): not anomalies, reported for what they are. Empty when the log
   * never met a kill-all unquiesced.
   */
  outsidePromise: Anomaly[];
  /** Set when a kill-all met the log unquiesced: the restart of the last such, before which losses are outside the promise. */
  lossesExemptBeforeMs?: number;
  counts: { ok: number; fail: number; info: number; reads: number; finalEntries: number; lostOutsidePromise: number };
  /** Longest stretch (ms) between two ok appends, with where it started. */
  longestUnavailableMs: number;
  longestUnavailableFromMs: number;
  latencyMs: { p50: number; p99: number; max: number };
}

export interface Verdict {
  valid: boolean;
  logs: Record<string, LogVerdict>;
}

export function check(history: readonly Op[], final: FinalState, killAlls: readonly KillAll[] = []): Verdict {
  const logs: Record<string, LogVerdict> = {};
  const names = new Set([...history.map((op) => op.log), ...Object.keys(final)]);
  for (const name of names) {
    logs[name] = checkLog(
      history.filter((op) => op.log === name),
      final[name] ?? { firstId: 0, replicas: {} },
      unquiescedRestarts(killAlls, name),
    );
  }
  return { valid: Object.values(logs).every((l) => l.valid), logs };
}

/** The restart times (sorted) of the kill-alls that met `log` not quiesced. */
export function unquiescedRestarts(killAlls: readonly KillAll[], log: string): number[] {
  return killAlls.filter((k) => !k.quiesced.includes(log)).map((k) => k.restartMs).sort((x, y) => x - y);
}

/**
 * `cuts`: the restarts of the kill-alls that met this log unquiesced. Before
 * the last one, losses are outside the promise; so is each consequence of one
 * that involves an operation completed before it.
 */
function checkLog(history: readonly Op[], final: FinalState[string], cuts: readonly number[] = []): LogVerdict {
  const anomalies: Anomaly[] = [];
  const outsidePromise: Anomaly[] = [];
  const exemptBeforeMs = cuts.length ? cuts[cuts.length - 1]! : -Infinity;
  /** A loss, or a consequence of one, that a kill-all explains: it involves an operation completed before the restart. */
  const explained = (ops: readonly (Op | undefined)[]) => ops.some((op) => op !== undefined && op.completeMs < exemptBeforeMs);
  const appends = history.filter((op): op is AppendOp => op.type === 'append');
  const reads = history.filter((op): op is ReadOp => op.type === 'read' && op.outcome === 'ok');
  const byValue = new Map(appends.map((a) => [a.value, a]));

  // Every observation of (id -> value): final reads of every replica, and every read during the run.
  const seen = new Map<number, { value: string; op: Op | undefined; where: string }>();
  const observe = (id: number, value: string, op: Op | undefined, where: string) => {
    const prior = seen.get(id);
    if (!prior) seen.set(id, { value, op, where });
    else if (prior.value !== value) {
      (explained([prior.op, op]) ? outsidePromise : anomalies).push({ kind: 'divergent', detail: `id ${id}: "${prior.value}" (${prior.where}) vs "${value}" (${where})`, ops: [prior.op, op].filter((o): o is Op => o !== undefined) });
    }
  };
  const replicas = Object.entries(final.replicas);
  for (const [replica, entries] of replicas) for (const e of entries) observe(e.id, e.value, undefined, `final read of ${replica}`);
  for (const r of reads) for (const e of r.entries ?? []) observe(e.id, e.value, r, `read on ${r.replica}`);

  // The final log: the longest final read (all replicas must agree, checked above as divergence).
  const longest = replicas.map(([, entries]) => entries).sort((a, b) => b.length - a.length)[0] ?? [];
  const finalById = new Map(longest.map((e) => [e.id, e.value]));
  const lastFinalId = longest.length ? longest[longest.length - 1]!.id : final.firstId - 1;

  longest.forEach((e, i) => {
    if (e.id !== final.firstId + i) anomalies.push({ kind: 'gap', detail: `final read has id ${e.id} at position ${i}, expected ${final.firstId + i}`, ops: [] });
  });

  const positions = new Map<string, number[]>();
  for (const e of longest) positions.set(e.value, [...(positions.get(e.value) ?? []), e.id]);
  for (const [value, ids] of positions) {
    if (ids.length > 1) anomalies.push({ kind: 'duplicated', detail: `"${value}" at ids ${ids.join(', ')}`, ops: byValue.has(value) ? [byValue.get(value)!] : [] });
    const op = byValue.get(value);
    if (!op) anomalies.push({ kind: 'phantom', detail: `"${value}" at id ${ids[0]} was never appended`, ops: [] });
    else if (op.outcome === 'fail') anomalies.push({ kind: 'phantom', detail: `"${value}" at id ${ids[0]} failed definitely, yet is present`, ops: [op] });
  }

  for (const a of appends) {
    if (a.outcome !== 'ok' || a.id === undefined || a.id < final.firstId) continue;
    const at = finalById.get(a.id);
    if (at === a.value) continue;
    const detail = `"${a.value}" acknowledged at id ${a.id}, final read has ${at === undefined ? 'nothing' : `"${at}"`} there`;
    if (explained([a])) outsidePromise.push({ kind: 'lost_outside_promise', detail: `${detail} (acknowledged before a kill-all that met the log unquiesced)`, ops: [a] });
    else anomalies.push({ kind: 'lost', detail, ops: [a] });
  }

  // Order holds within each stretch between two unquiesced kill-alls; across one, ids acknowledged
  // before may have been lost and given again (an earlier append with the higher id), which the losses explain.
  const era = (op: AppendOp) => cuts.filter((c) => c <= op.completeMs).length;
  const eras = new Map<number, AppendOp[]>();
  for (const a of appends) eras.set(era(a), [...(eras.get(era(a)) ?? []), a]);
  for (const inEra of eras.values()) anomalies.push(...orderViolations(inEra));
  if (cuts.length) outsidePromise.push(...orderViolations(appends).filter((v) => era(v.ops[0] as AppendOp) !== era(v.ops[1] as AppendOp)));

  const lastTail = new Map<string, { id: number; op: ReadOp }>();
  for (const r of [...reads].sort((x, y) => x.invokeMs - y.invokeMs)) {
    for (const e of r.entries ?? []) {
      if (e.id > lastFinalId) (explained([r]) ? outsidePromise : anomalies).push({ kind: 'beyond', detail: `read of id ${e.id} on ${r.replica}, past the final log's end ${lastFinalId}`, ops: [r] });
    }
    if (!r.tail || !r.entries?.length) continue;
    const prev = lastTail.get(r.process);
    const first = r.entries[0]!.id;
    if (prev && first <= prev.id) anomalies.push({ kind: 'backwards', detail: `${r.process} read id ${first} after it had ${prev.id}`, ops: [prev.op, r] });
    lastTail.set(r.process, { id: r.entries[r.entries.length - 1]!.id, op: r });
  }

  const oks = appends.filter((a) => a.outcome === 'ok');
  const latencies = oks.map((a) => a.completeMs - a.invokeMs).sort((x, y) => x - y);
  const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0;
  const gap = longestGap(oks.map((a) => a.completeMs).sort((x, y) => x - y));
  return {
    valid: anomalies.length === 0,
    anomalies,
    outsidePromise,
    ...(cuts.length ? { lossesExemptBeforeMs: exemptBeforeMs } : {}),
    counts: {
      ok: oks.length,
      fail: appends.filter((a) => a.outcome === 'fail').length,
      info: appends.filter((a) => a.outcome === 'info').length,
      reads: reads.length,
      finalEntries: longest.length,
      lostOutsidePromise: outsidePromise.filter((a) => a.kind === 'lost_outside_promise').length,
    },
    longestUnavailableMs: gap.ms,
    longestUnavailableFromMs: gap.fromMs,
    latencyMs: { p50: q(0.5), p99: q(0.99), max: latencies[latencies.length - 1] ?? 0 },
  };
}

/** Real-time order: an append that completed ok before another was invoked must have the lower id. */
function orderViolations(appends: readonly AppendOp[]): Anomaly[] {
  const ok = appends.filter((a): a is AppendOp & { id: number } => a.outcome === 'ok' && a.id !== undefined);
  const byCompletion = [...ok].sort((x, y) => x.completeMs - y.completeMs);
  const byInvoke = [...ok].sort((x, y) => x.invokeMs - y.invokeMs);
  const out: Anomaly[] = [];
  let i = 0;
  let maxDone: (AppendOp & { id: number }) | undefined;
  for (const b of byInvoke) {
    while (i < byCompletion.length && byCompletion[i]!.completeMs < b.invokeMs) {
      const done = byCompletion[i++]!;
      if (!maxDone || done.id > maxDone.id) maxDone = done;
    }
    if (maxDone && maxDone.id >= b.id) out.push({ kind: 'order', detail: `"${maxDone.value}" (id ${maxDone.id}) completed before "${b.value}" (id ${b.id}) was invoked`, ops: [maxDone, b] });
  }
  return out;
}

function longestGap(times: readonly number[]): { ms: number; fromMs: number } {
  let best = { ms: 0, fromMs: 0 };
  for (let i = 1; i < times.length; i++) if (times[i]! - times[i - 1]! > best.ms) best = { ms: times[i]! - times[i - 1]!, fromMs: times[i - 1]! };
  return best;
}
