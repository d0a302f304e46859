/**
 * The simulator's only source of randomness: a seeded stream (mulberry32, the
 * same generator jepsen-lite schedules its faults with) and named child
 * streams. Each component draws from its own fork, so a component that starts
 * drawing more numbers does not shift what every other component sees: a
 * change to the network's fault model leaves the workload's choices for the
 * same seed as they were.
 */
import { seeded } from '../jepsen-lite/run.js';

export class Rng {
  private readonly draw: () => number;
  /** How many forks of each label were taken: the same label twice gives two different streams. */
  private readonly forks = new Map<string, number>();

  constructor(readonly seed: number) {
    this.draw = seeded(seed);
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.draw();
  }

  /** Uniform integer in [0, maxExclusive). */
  int(maxExclusive: number): number {
    return Math.floor(this.draw() * maxExclusive);
  }

  /** Uniform integer in [min, max], both included. */
  between(min: number, max: number): number {
    return min + this.int(max - min + 1);
  }

  /** True with probability p (never for p <= 0, always for p >= 1). */
  chance(p: number): boolean {
    if (p <= 0) return false;
    if (p >= 1) return true;
    return this.draw() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('Rng.pick of an empty list');
    return items[this.int(items.length)]!;
  }

  /** A shuffled copy (Fisher-Yates); the input is left as it was. */
  shuffle<T>(items: readonly T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out;
  }

  /**
   * An independent stream derived from this stream's seed, the label and how
   * many forks of that label came before; never from draws, so the child is
   * the same however many numbers the parent has drawn.
   */
  fork(label: string): Rng {
    const n = this.forks.get(label) ?? 0;
    this.forks.set(label, n + 1);
    return new Rng(mix(this.seed, hashString(`${label}#${n}`)));
  }
}

/** FNV-1a, 32 bits: a stable hash of a label. */
function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** A 32-bit finalizer (murmur3's) over seed and label hash, so nearby seeds give unrelated children. */
function mix(seed: number, label: number): number {
  let h = (seed ^ Math.imul(label, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
