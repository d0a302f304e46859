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
 * Time, from the times the final read carries (every entry's timeMs):
 * - time-went-back: the final read's times decrease from one id to the next
 * - time-changed:   an acknowledged append's answer, a read during the run, or
 *                   another replica's final read gave an entry (the same value at
 *                   the same id) another time than the final read
 * - bad-seek:       a seek by time (offsets?time=T, or entries?fromTime=T: where
 *                   its entries start) answered other than the final log allows.
 *                   An entry (id, time) must be the final log's first with time
 *                   >= T, with that time. "None yet" (time null) with the next id
 *                   to commit N is right when no final entry below N has time >= T:
 *                   every id below N was committed at the seek, so an answer never
 *                   points past an entry >= T that was (acknowledged before the
 *                   seek, for one); one >= T committed later is allowed for, and
 *                   a follower's N may trail the leader's, as its reads do. N must
 *                   not pass the final log's end + 1. Answers below the final
 *                   first id (truncated since) are not judged.
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

/** What every operation records: who did it, on which log through which replica, when, and how it ended. */
interface OpCommon {
  /** The client that did it. */
  process: string;
  log: string;
  replica: string;
  invokeMs: number;
  completeMs: number;
  outcome: Outcome;
}

export interface AppendOp extends OpCommon {
  type: 'append';
  /** Unique per append, never retried with the same value. */
  value: string;
  /** The id the server gave, when ok. */
  id?: number;
  /** Appended through the client's idempotent producer, which retried it with the same sequence until answered. */
  idempotent?: boolean;
  /** The server's error code, when it answered with one (SEQUENCE_GAP: a producer it forgot). */
  error?: string;
  /** The entry's time (ms since the Unix epoch) as the answer gave it, when ok and the answer had one (plain appends: the client's producer does not pass it on). */
  timeMs?: number;
}

/** An entry as a read returned it; timeMs when the read carried it. */
export interface Entry {
  id: number;
  value: string;
  timeMs?: number;
}

/** An entry of a final read: with its time, which the time rules judge by. */
export type FinalEntry = Required<Entry>;

export interface ReadOp extends OpCommon {
  type: 'read';
  /** Tail reads of one process are expected to move forward. */
  tail: boolean;
  entries?: Entry[];
  /** A seek by time: the read asked for entries?fromTime= this time (ms since the Unix epoch), not for an id. */
  fromTime?: number;
  /** The answer's nextId: where a fromTime read that returned no entry landed (the next id to commit). */
  nextId?: number;
}

/** GET offsets?time=: the first committed entry with a time at or after `time`, or (timeMs null) the next id to commit. */
export interface SeekOp extends OpCommon {
  type: 'seek';
  /** The time asked (ms since the Unix epoch). */
  time: number;
  /** The answer, when ok. */
  id?: number;
  timeMs?: number | null;
}

export type Op = AppendOp | ReadOp | SeekOp;

export interface FinalState {
  /** Per log: the first retained id, and what each replica returned when read in full after healing. */
  [log: string]: { firstId: number; replicas: Record<string, FinalEntry[]> };
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
  kind: 'lost' | 'phantom' | 'duplicated' | 'divergent' | 'order' | 'gap' | 'backwards' | 'beyond' | 'time-went-back' | 'time-changed' | 'bad-seek' | 'lost_outside_promise';
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
  /** seeks: seek answers judged (offsets and fromTime reads), seeksNoneYet of them "none yet" (time null). */
  counts: { ok: number; fail: number; info: number; reads: number; seeks: number; seeksNoneYet: number; finalEntries: number; lostOutsidePromise: number };
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

  const seeks = checkTimes(history, final, longest, (anomaly) => (explained(anomaly.ops) ? outsidePromise : anomalies).push(anomaly));

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
      seeks: seeks.judged,
      seeksNoneYet: seeks.noneYet,
      finalEntries: longest.length,
      lostOutsidePromise: outsidePromise.filter((a) => a.kind === 'lost_outside_promise').length,
    },
    longestUnavailableMs: gap.ms,
    longestUnavailableFromMs: gap.fromMs,
    latencyMs: { p50: q(0.5), p99: q(0.99), max: latencies[latencies.length - 1] ?? 0 },
  };
}

/**
 * The time rules (top of this file) against `longest`, the final log. `flag`
 * gets each anomaly (with the operations that show it, by which a kill-all may
 * explain it). Returns how many seek answers it judged, and how many of them
 * were "none yet".
 */
function checkTimes(history: readonly Op[], final: FinalState[string], longest: readonly FinalEntry[], flag: (anomaly: Anomaly) => void): { judged: number; noneYet: number } {
  for (let i = 1; i < longest.length; i++) {
    const [prev, e] = [longest[i - 1]!, longest[i]!];
    if (e.timeMs < prev.timeMs) flag({ kind: 'time-went-back', detail: `id ${e.id} has time ${e.timeMs} after ${prev.timeMs} at id ${prev.id}`, ops: [] });
  }

  const finalAt = new Map(longest.map((e) => [e.id, e]));
  /** Times are judged for the entry the final read has: another value at the id is a loss or divergence, found above. */
  const sameTime = (e: Entry, where: string, op?: Op) => {
    const f = finalAt.get(e.id);
    if (f?.value !== e.value || e.timeMs === undefined || e.timeMs === f.timeMs) return;
    flag({ kind: 'time-changed', detail: `id ${e.id} ("${e.value}"): time ${e.timeMs} (${where}), the final read has ${f.timeMs}`, ops: op ? [op] : [] });
  };
  for (const [replica, entries] of Object.entries(final.replicas)) for (const e of entries) sameTime(e, `final read of ${replica}`);
  for (const op of history) {
    if (op.type === 'append' && op.outcome === 'ok' && op.id !== undefined) sameTime({ id: op.id, value: op.value, timeMs: op.timeMs }, 'the append\'s answer', op);
    else if (op.type === 'read' && op.outcome === 'ok') for (const e of op.entries ?? []) sameTime(e, `read on ${op.replica}`, op);
  }

  // The final log's first entry at or after T is the first whose running highest time reaches T.
  const highest: number[] = [];
  for (const e of longest) highest.push(Math.max(e.timeMs, highest[highest.length - 1] ?? -Infinity));
  const firstAtOrAfter = (time: number): FinalEntry | undefined => {
    let [lo, hi] = [0, longest.length];
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (highest[mid]! >= time) hi = mid;
      else lo = mid + 1;
    }
    return longest[lo];
  };
  const end = longest.length ? longest[longest.length - 1]!.id + 1 : final.firstId;
  let judged = 0;
  let noneYet = 0;
  for (const op of history) {
    const s = seekAnswer(op);
    if (!s || s.id < final.firstId) continue;
    judged++;
    if (s.timeMs === null) noneYet++;
    const want = firstAtOrAfter(s.time);
    // "None yet" may trail (ids at or past the first entry >= T were not committed, or not known to the replica, at the seek).
    const right = s.timeMs === null ? s.id <= (want?.id ?? end) : s.id === want?.id && s.timeMs === want.timeMs;
    if (right) continue;
    const asked = op.type === 'seek' ? 'offsets?time=' : 'entries?fromTime=';
    const answered = s.timeMs === null ? `none yet (next id ${s.id})` : `id ${s.id} (time ${s.timeMs})`;
    flag({ kind: 'bad-seek', detail: `${asked}${s.time} on ${op.replica} answered ${answered}; the final log's first entry at or after ${s.time} is ${want ? `id ${want.id} (time ${want.timeMs})` : `none (its next id is ${end})`}`, ops: [op] });
  }
  return { judged, noneYet };
}

/**
 * Where a seek by time landed: what offsets?time= answered, or where a
 * fromTime read started (its first entry; with none, its nextId and no time).
 */
function seekAnswer(op: Op): { time: number; id: number; timeMs: number | null } | undefined {
  if (op.outcome !== 'ok') return undefined;
  if (op.type === 'seek') return op.id === undefined ? undefined : { time: op.time, id: op.id, timeMs: op.timeMs ?? null };
  if (op.type !== 'read' || op.fromTime === undefined) return undefined;
  const first = op.entries?.[0];
  if (first) return first.timeMs === undefined ? undefined : { time: op.fromTime, id: first.id, timeMs: first.timeMs };
  return op.nextId === undefined ? undefined : { time: op.fromTime, id: op.nextId, timeMs: null };
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
