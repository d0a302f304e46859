/**
 * SimObjectStore: the object store (S3) as a map of keys to bytes, reached
 * through callbacks after a random latency, with faults: down (every call
 * fails after a while), slow (extra latency), and lost answers (a PUT is
 * stored, yet its caller is told it failed). Stored bytes are copies, so a
 * caller reusing its buffer cannot change what was written.
 */
import type { Rng } from './random.js';
import type { Scheduler } from './scheduler.js';

export class StoreError {
  constructor(readonly reason: 'down' | 'answer-lost') {}
}

export interface StoreConfig {
  /** Latency of a call, ms. @default [5, 20] */
  latencyMs: [number, number];
  /** How long a call to a store that is down takes to fail, ms. @default 200 */
  downFailMs: number;
}

export const DEFAULT_STORE: Readonly<StoreConfig> = Object.freeze<StoreConfig>({ latencyMs: [5, 20], downFailMs: 200 });

export class SimObjectStore {
  private readonly objects = new Map<string, Buffer>();
  private readonly rng: Rng;
  private down = false;
  private extraLatencyMs: [number, number] = [0, 0];
  private answerLoss = 0;

  constructor(
    private readonly sched: Scheduler,
    rng: Rng,
    private readonly config: Readonly<StoreConfig> = DEFAULT_STORE,
  ) {
    this.rng = rng.fork('store');
  }

  put(key: string, bytes: Buffer, done: (result: true | StoreError) => void): void {
    const copy = Buffer.from(bytes);
    this.call(`put ${key}`, done, () => {
      this.objects.set(key, copy);
      if (!this.rng.chance(this.answerLoss)) return true;
      this.sched.note(`store: put ${key} stored, answer lost`);
      return new StoreError('answer-lost');
    });
  }

  /** The object's bytes, or undefined when there is none. */
  get(key: string, done: (result: Buffer | undefined | StoreError) => void): void {
    this.call(`get ${key}`, done, () => {
      const bytes = this.objects.get(key);
      return bytes && Buffer.from(bytes);
    });
  }

  delete(key: string, done: (result: true | StoreError) => void): void {
    this.call(`delete ${key}`, done, (): true => {
      this.objects.delete(key);
      return true;
    });
  }

  /** Keys under `prefix`, sorted. */
  list(prefix: string, done: (result: string[] | StoreError) => void): void {
    this.call(`list ${prefix}`, done, () => this.keys(prefix));
  }

  // Faults.

  setDown(down: boolean): void {
    this.down = down;
    this.sched.note(`store: ${down ? 'down' : 'up'}`);
  }

  /** Extra latency drawn per call from [min, max] ms; [0, 0] is normal speed. */
  setSlow(extraMs: [number, number]): void {
    this.extraLatencyMs = extraMs;
    this.sched.note(`store: extra latency ${extraMs.join('-')} ms`);
  }

  /** Probability that a stored PUT is reported as failed. */
  setAnswerLoss(p: number): void {
    this.answerLoss = p;
    this.sched.note(`store: answer loss ${p}`);
  }

  heal(): void {
    this.down = false;
    this.extraLatencyMs = [0, 0];
    this.answerLoss = 0;
    this.sched.note('store: healed');
  }

  // Direct reads for checkers (no latency, no faults).

  keys(prefix = ''): string[] {
    return [...this.objects.keys()].filter((k) => k.startsWith(prefix)).sort();
  }

  peek(key: string): Buffer | undefined {
    const bytes = this.objects.get(key);
    return bytes && Buffer.from(bytes);
  }

  /**
   * A call's life: with the store down it fails after downFailMs (nothing
   * applied); otherwise it is applied at the end of its latency (whether the
   * store went down meanwhile decides the answer, as a lost connection would).
   */
  private call<T>(label: string, done: (result: T | StoreError) => void, apply: () => T | StoreError): void {
    if (this.down) {
      this.sched.at(this.config.downFailMs, `store: ${label} fails (down)`, () => done(new StoreError('down')));
      return;
    }
    const latency = this.rng.between(...this.config.latencyMs) + this.rng.between(...this.extraLatencyMs);
    this.sched.at(latency, `store: ${label}`, () => done(this.down ? new StoreError('down') : apply()));
  }
}
