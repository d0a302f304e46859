/**
 * The record of what the simulated clients did, as jepsen-lite operations
 * stamped with virtual time, and the verdict of jepsen-lite's checker on it.
 * Each operation completes exactly once; one still open when the run ends is
 * recorded as info (it may or may not have happened).
 */
import { check, type AppendOp, type FinalState, type Op, type Outcome, type ReadOp, type Verdict } from '../jepsen-lite/checker.js';
import type { Scheduler } from './scheduler.js';

export interface AppendHandle {
  ok(id: number): void;
  fail(): void;
  /** Indeterminate: the client does not know whether the append happened. */
  info(): void;
}

export interface ReadHandle {
  ok(entries: { id: number; value: string }[]): void;
  fail(): void;
  info(): void;
}

export class History {
  private readonly done: Op[] = [];
  private readonly open = new Set<Op>();
  private readonly values = new Set<string>();
  private readonly counters = new Map<string, number>();

  constructor(private readonly sched: Scheduler) {}

  /** A value no append used before: `<process>-<n>`. */
  nextValue(process: string): string {
    const n = this.counters.get(process) ?? 0;
    this.counters.set(process, n + 1);
    return `${process}-${n}`;
  }

  invokeAppend(process: string, log: string, replica: string, value: string): AppendHandle {
    if (this.values.has(value)) throw new Error(`append value "${value}" was used before: values must be unique`);
    this.values.add(value);
    const op: AppendOp = { type: 'append', process, log, replica, value, invokeMs: this.sched.now, completeMs: -1, outcome: 'info' };
    this.open.add(op);
    return {
      ok: (id) => this.complete(op, 'ok', () => (op.id = id)),
      fail: () => this.complete(op, 'fail'),
      info: () => this.complete(op, 'info'),
    };
  }

  invokeRead(process: string, log: string, replica: string, tail: boolean): ReadHandle {
    const op: ReadOp = { type: 'read', process, log, replica, invokeMs: this.sched.now, completeMs: -1, outcome: 'info', tail };
    this.open.add(op);
    return {
      ok: (entries) => this.complete(op, 'ok', () => (op.entries = entries.map((e) => ({ ...e })))),
      fail: () => this.complete(op, 'fail'),
      info: () => this.complete(op, 'info'),
    };
  }

  /** Completed operations, then the open ones as info (completed now), in invocation order. */
  ops(): Op[] {
    const open = [...this.open].map((op) => ({ ...op, completeMs: this.sched.now, outcome: 'info' as const }));
    return [...this.done, ...open].sort((a, b) => a.invokeMs - b.invokeMs);
  }

  openCount(): number {
    return this.open.size;
  }

  verdict(final: FinalState): Verdict {
    return check(this.ops(), final);
  }

  private complete(op: Op, outcome: Outcome, fill?: () => void): void {
    if (!this.open.delete(op)) throw new Error(`${op.type} by ${op.process} on ${op.log} completed twice`);
    fill?.();
    op.outcome = outcome;
    op.completeMs = this.sched.now;
    this.done.push(op);
  }
}
