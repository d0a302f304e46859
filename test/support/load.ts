/**
 * Load for tests that move leadership or restart replicas under traffic:
 * closed-loop writers appending unique values, and the check that every
 * acknowledged value is where it was acknowledged, on every replica.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { expect } from 'vitest';
import type { LocalCluster } from '../../src/cli/local-cluster.js';
import { appendRaw, eventually, readAll } from './cluster.js';

export interface LoadOptions {
  /** Logs to append to, round robin per writer (default: the one given). */
  logs?: readonly string[];
  /** Client URLs appends may go to right now (a load balancer that follows readiness); default: every replica. */
  targets?: () => readonly string[];
}

/**
 * Closed-loop writers appending unique values through random replicas until
 * stopped; records every outcome.
 */
export function load(c: LocalCluster, log: string, writers: number, options: LoadOptions = {}) {
  const logs = options.logs ?? [log];
  const targets = options.targets ?? (() => c.replicas.map((r) => r.clientUrl));
  const acked = new Map<string, number>();
  const ackedIn = new Map<string, Map<string, number>>(logs.map((l) => [l, new Map()]));
  const failed: string[] = [];
  /** Answers that said the append may have been applied (maybeApplied: true). */
  const indeterminate: string[] = [];
  /** Appends whose connection failed: refused (never sent) or broken (outcome unknown). */
  const connectionErrors: string[] = [];
  const ackTimes: { at: number; epoch: number }[] = [];
  let running = true;
  let seq = 0;
  const done = Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      for (let n = 0; running; n++) {
        const value = `w${w}-${seq++}`;
        const target = logs[n % logs.length]!;
        const urls = targets();
        const via = urls[Math.floor(Math.random() * urls.length)]!;
        try {
          const res = await appendRaw(via, target, value, 5000);
          if (res.status === 200) {
            const { id, epoch } = res.json();
            acked.set(value, id);
            ackedIn.get(target)!.set(value, id);
            ackTimes.push({ at: Date.now(), epoch });
            continue;
          }
          failed.push(value);
          if (res.json().error?.maybeApplied === true) indeterminate.push(`${value} via ${via}: ${res.status} ${res.body.toString().slice(0, 200)}`);
        } catch (err) {
          failed.push(value);
          connectionErrors.push(`${value} via ${via}: ${(err as Error).message}`);
        }
        // Only after a failure (an acknowledged append goes straight on): a backoff so a refusing
        // cluster is not spun on, not synchronisation.
        await sleep(20);
      }
    }),
  );
  return {
    acked,
    ackedIn,
    failed,
    indeterminate,
    connectionErrors,
    ackTimes,
    /** The longest time between two acknowledged appends (ms), over the whole run. */
    longestGapMs(): number {
      const times = ackTimes.map((t) => t.at).sort((a, b) => a - b);
      let gap = 0;
      for (let i = 1; i < times.length; i++) gap = Math.max(gap, times[i]! - times[i - 1]!);
      return gap;
    },
    async stop() {
      running = false;
      await done;
    },
  };
}

/** Every acked value is at its id on every replica; ids are dense; no value appears twice. */
export async function checkLog(c: LocalCluster, log: string, acked: Map<string, number>): Promise<string[]> {
  let reference: string[] = [];
  for (const r of c.replicas) {
    const values = await eventually(async () => {
      const entries = await readAll(r.clientUrl, log);
      expect(entries.map((e) => e.id)).toEqual(entries.map((_, i) => i));
      const vals = entries.map((e) => e.data.toString());
      for (const [value, id] of acked) expect(vals[id], `${value} acked at ${id}, on ${r.id}`).toBe(value);
      return vals;
    }, 15_000);
    expect(new Set(values).size).toBe(values.length);
    if (reference.length) expect(values.slice(0, reference.length)).toEqual(reference.slice(0, values.length));
    if (values.length > reference.length) reference = values;
  }
  return reference;
}
