/**
 * Virtual time and the one event loop of a simulation. Every timer, message
 * delivery and etcd answer is an event here; events run one at a time, in
 * order of time and then of scheduling, so a run depends only on its seed.
 * Also owns the trace: the last events and notes, printed when a run fails.
 */

/** A scheduled event; cancel() is harmless after it ran or was cancelled. */
export interface Timer {
  cancel(): void;
  readonly cancelled: boolean;
}

interface Event {
  time: number;
  seq: number;
  label: string;
  fn: () => void;
  cancelled: boolean;
}

/** How many trace lines are kept: enough to see what led to a failure, small enough to print. */
export const TRACE_LINES = 400;
/** A label starting with this marks a routine event (a timer tick): kept out of the trace. */
export const ROUTINE = '.';
/** A run that executes this many events without virtual time moving is stuck in a zero-delay loop. */
const MAX_EVENTS_AT_ONE_TIME = 100_000;

export class Scheduler {
  private nowMs = 0;
  private seq = 0;
  private readonly heap: Event[] = [];
  private readonly ring: string[] = [];
  private ringNext = 0;
  private atSameTime = 0;
  /** Events run so far. */
  executed = 0;
  /** A hash of every event's time and label in order: two runs with equal fingerprints ran the same events. */
  private hash = 0x811c9dc5;

  /** `traceLines`: how many trace lines to keep (more to debug one seed). */
  constructor(private readonly traceLines = TRACE_LINES) {}

  get now(): number {
    return this.nowMs;
  }

  /** Runs `fn` after `delayMs` (>= 0) of virtual time. */
  at(delayMs: number, label: string, fn: () => void): Timer {
    if (!(delayMs >= 0)) throw new Error(`Scheduler.at(${delayMs}, ${label}): the delay must be >= 0`);
    const ev: Event = { time: this.nowMs + delayMs, seq: this.seq++, label, fn, cancelled: false };
    this.push(ev);
    return {
      cancel: () => void (ev.cancelled = true),
      get cancelled() {
        return ev.cancelled;
      },
    };
  }

  /** Runs `fn` every `periodMs`, the first time one period from now, until cancelled. */
  every(periodMs: number, label: string, fn: () => void): Timer {
    if (!(periodMs > 0)) throw new Error(`Scheduler.every(${periodMs}, ${label}): the period must be > 0`);
    let current: Timer;
    let stopped = false;
    const arm = () => {
      current = this.at(periodMs, label, () => {
        arm();
        fn();
      });
    };
    arm();
    return {
      cancel: () => {
        stopped = true;
        current.cancel();
      },
      get cancelled() {
        return stopped;
      },
    };
  }

  /** Runs the next event, if any; false when none is left. */
  step(): boolean {
    const ev = this.pop();
    if (!ev) return false;
    this.atSameTime = ev.time === this.nowMs ? this.atSameTime + 1 : 0;
    if (this.atSameTime > MAX_EVENTS_AT_ONE_TIME) throw new Error(`${MAX_EVENTS_AT_ONE_TIME} events at ${ev.time} ms without time moving (last: ${ev.label})`);
    this.nowMs = ev.time;
    this.executed++;
    this.record(ev.label);
    ev.fn();
    return true;
  }

  /** Runs every event due up to `timeMs` (absolute), then moves the clock to it. */
  runUntil(timeMs: number): void {
    while (this.peekTime() <= timeMs) this.step();
    if (timeMs > this.nowMs) this.nowMs = timeMs;
  }

  /**
   * Runs events while `pred()` holds, for at most `limitMs` from now (relative).
   * True when it stopped because `pred()` became false, false when the limit
   * was reached (or nothing was left to run) with it still true.
   */
  runWhile(pred: () => boolean, limitMs: number): boolean {
    const deadline = this.nowMs + limitMs;
    while (pred()) {
      if (this.peekTime() > deadline) {
        this.nowMs = Math.max(this.nowMs, deadline);
        return false;
      }
      this.step();
    }
    return true;
  }

  /** Events still scheduled (cancelled ones excepted). */
  pending(): number {
    return this.heap.filter((e) => !e.cancelled).length;
  }

  /** A free-form trace line, stamped with the current time. */
  note(text: string): void {
    this.addLine(`${this.nowMs} ms: ${text}`);
  }

  /** The last trace lines, oldest first. */
  trace(): string[] {
    return [...this.ring.slice(this.ringNext), ...this.ring.slice(0, this.ringNext)];
  }

  /** The hash of every event run so far, as hex. */
  fingerprint(): string {
    return `${this.executed}:${(this.hash >>> 0).toString(16)}`;
  }

  private record(label: string): void {
    const line = `${this.nowMs} ms: ${label}`;
    for (let i = 0; i < line.length; i++) this.hash = Math.imul(this.hash ^ line.charCodeAt(i), 0x01000193);
    // Routine events (labels starting with ROUTINE) count in the fingerprint but would drown the trace.
    if (!label.startsWith(ROUTINE)) this.addLine(line);
  }

  private addLine(line: string): void {
    if (this.ring.length < this.traceLines) this.ring.push(line);
    else this.ring[this.ringNext] = line;
    this.ringNext = (this.ringNext + 1) % this.traceLines;
  }

  private peekTime(): number {
    while (this.heap[0]?.cancelled) this.removeTop();
    return this.heap[0]?.time ?? Infinity;
  }

  // A binary min-heap on (time, seq): equal times run in scheduling order.

  /** Removes and answers the earliest event that is not cancelled. */
  private pop(): Event | undefined {
    for (;;) {
      const top = this.removeTop();
      if (!top || !top.cancelled) return top;
    }
  }

  private removeTop(): Event | undefined {
    const top = this.heap[0];
    if (!top) return undefined;
    const last = this.heap.pop()!;
    if (this.heap.length > 0) {
      this.heap[0] = last;
      this.siftDown(0);
    }
    return top;
  }

  private push(ev: Event): void {
    this.heap.push(ev);
    let i = this.heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(ev, this.heap[parent]!)) break;
      this.heap[i] = this.heap[parent]!;
      i = parent;
    }
    this.heap[i] = ev;
  }

  private siftDown(i: number): void {
    const ev = this.heap[i]!;
    const n = this.heap.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const child = r < n && before(this.heap[r]!, this.heap[l]!) ? r : l;
      if (!before(this.heap[child]!, ev)) break;
      this.heap[i] = this.heap[child]!;
      i = child;
    }
    this.heap[i] = ev;
  }
}

function before(a: Event, b: Event): boolean {
  return a.time < b.time || (a.time === b.time && a.seq < b.seq);
}
