/**
 * The simulated network between named nodes (replicas and clients): one-way
 * messages and request/response calls, each direction of each link with its
 * own delay range, drop and duplicate probability, and cut. Reordering comes
 * from random delays. Also owns node liveness: a message to a node that is
 * down vanishes, and a call to it is refused quickly unless the link is cut.
 */
import type { Rng } from './random.js';
import type { Scheduler } from './scheduler.js';

export interface LinkQuality {
  /** One-way delay, drawn uniformly from [min, max] ms for each message. */
  delayMs: [min: number, max: number];
  /** Probability a message is lost. */
  drop: number;
  /** Probability a message is delivered twice (each copy with its own delay). */
  dup: number;
}

export type CallFailure = 'refused' | 'timeout';

/** @default a healthy LAN: 1-5 ms, nothing lost or duplicated. */
export const DEFAULT_LINK: Readonly<LinkQuality> = Object.freeze({ delayMs: [1, 5] as [number, number], drop: 0, dup: 0 });

interface Link {
  quality: LinkQuality;
  cut: boolean;
}

export class SimNetwork {
  private readonly links = new Map<string, Link>();
  private readonly nodeSet = new Set<string>();
  private readonly down = new Set<string>();
  /** Bumped whenever a node goes down: what was in flight to (or waiting in) its old process is gone. */
  private readonly generation = new Map<string, number>();
  private readonly rng: Rng;

  constructor(
    private readonly sched: Scheduler,
    rng: Rng,
    nodes: readonly string[] = [],
    private readonly defaults: Readonly<LinkQuality> = DEFAULT_LINK,
  ) {
    this.rng = rng.fork('network');
    for (const n of nodes) this.addNode(n);
  }

  addNode(node: string): void {
    this.nodeSet.add(node);
  }

  nodes(): string[] {
    return [...this.nodeSet];
  }

  isUp(node: string): boolean {
    return !this.down.has(node);
  }

  /** A process stops (down) or a fresh one starts (up). Going down ends every call and delivery meant for the old process. */
  setDown(node: string, isDown: boolean): void {
    this.addNode(node);
    if (isDown === this.down.has(node)) return;
    if (isDown) {
      this.down.add(node);
      this.generation.set(node, this.gen(node) + 1);
    } else this.down.delete(node);
    this.sched.note(`net: ${node} ${isDown ? 'down' : 'up'}`);
  }

  /**
   * One-way message: `deliver` runs at `to` after the link's delay, unless the
   * link drops it, is cut when it is sent or arrives, or `to` is down (or
   * restarted) by then. May run twice (duplicate).
   */
  send(from: string, to: string, label: string, deliver: () => void): void {
    const toGen = this.gen(to);
    this.transmit(from, to, label, () => {
      if (this.isUp(to) && this.gen(to) === toGen) deliver();
    });
  }

  /**
   * Request/response. `serve` runs at `to` each time a copy of the request
   * arrives (a duplicate runs it twice: receivers must be idempotent); its
   * answer travels back over to->from with that direction's faults; undefined
   * means no answer. `done` runs once: with the first answer, with 'refused'
   * soon after the request reaches a node that is down, or with 'timeout'
   * after `timeoutMs`. It never runs if `from` went down meanwhile: a dead
   * process gets no callbacks.
   */
  call<Res>(from: string, to: string, label: string, serve: () => Res | undefined, timeoutMs: number, done: (res: Res | undefined, failure?: CallFailure) => void): void {
    const fromGen = this.gen(from);
    const toGen = this.gen(to);
    let finished = false;
    const finish = (res: Res | undefined, failure?: CallFailure) => {
      if (finished) return;
      finished = true;
      timer.cancel();
      if (this.isUp(from) && this.gen(from) === fromGen) done(res, failure);
    };
    const timer = this.sched.at(timeoutMs, `${label} ${from}->${to} timeout`, () => finish(undefined, 'timeout'));
    this.transmit(from, to, label, () => {
      if (finished) return this.serveLate(to, toGen, serve);
      if (!this.isUp(to) || this.gen(to) !== toGen) {
        // The host answers a connection to a dead port at once (RST); only a cut link makes it silent.
        if (!this.link(to, from).cut) this.sched.at(this.delay(to, from), `${label} ${to}->${from} refused`, () => finish(undefined, 'refused'));
        return;
      }
      const res = serve();
      if (res !== undefined) this.transmit(to, from, `${label} reply`, () => finish(res));
    });
  }

  // Faults. Cuts and link quality are separate, so ending a partition leaves a flaky link flaky.

  /** Cuts every link between the two groups, both ways. */
  partition(groupA: readonly string[], groupB: readonly string[]): void {
    this.setCuts(groupA, groupB, true);
    this.setCuts(groupB, groupA, true);
    this.sched.note(`net: partition [${groupA.join(',')}] | [${groupB.join(',')}]`);
  }

  /** Reconnects every link between the two groups, both ways. */
  reconnect(groupA: readonly string[], groupB: readonly string[]): void {
    this.setCuts(groupA, groupB, false);
    this.setCuts(groupB, groupA, false);
    this.sched.note(`net: reconnect [${groupA.join(',')}] | [${groupB.join(',')}]`);
  }

  /** Messages from `from` to `to` are lost; the other direction still works. */
  cutOneWay(from: string, to: string): void {
    this.link(from, to).cut = true;
    this.sched.note(`net: cut ${from}->${to}`);
  }

  uncutOneWay(from: string, to: string): void {
    this.link(from, to).cut = false;
    this.sched.note(`net: uncut ${from}->${to}`);
  }

  /** Cuts `node` from every other known node, both ways. */
  isolate(node: string): void {
    this.partition(
      [node],
      this.nodes().filter((n) => n !== node),
    );
  }

  /** Degrades one direction of a link; unspecified fields keep the defaults. */
  flaky(from: string, to: string, quality: Partial<LinkQuality>): void {
    this.link(from, to).quality = { ...this.defaults, ...quality };
    this.sched.note(`net: flaky ${from}->${to} ${JSON.stringify(quality)}`);
  }

  /** One direction of a link back to the default quality (its cut, if any, stays). */
  steady(from: string, to: string): void {
    this.link(from, to).quality = { ...this.defaults };
    this.sched.note(`net: steady ${from}->${to}`);
  }

  /** Every link uncut and at the default quality. Node liveness is not a link fault and stays. */
  heal(): void {
    this.links.clear();
    this.sched.note('net: heal');
  }

  isCut(from: string, to: string): boolean {
    return this.link(from, to).cut;
  }

  private serveLate<Res>(to: string, toGen: number, serve: () => Res | undefined): void {
    // The caller gave up, but the request still reaches and acts on the receiver: its effects count, its answer is lost.
    if (this.isUp(to) && this.gen(to) === toGen) serve();
  }

  /** Puts a message on the wire: dropped, delayed, maybe duplicated; `arrive` runs per copy that crosses. */
  private transmit(from: string, to: string, label: string, arrive: () => void): void {
    const link = this.link(from, to);
    if (link.cut || this.rng.chance(link.quality.drop)) return this.sched.note(`net: lost ${label} ${from}->${to}`);
    const copies = this.rng.chance(link.quality.dup) ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      this.sched.at(this.delay(from, to), `${label} ${from}->${to}${i > 0 ? ' (dup)' : ''}`, () => {
        // A cut made while the message was on the wire loses it too.
        if (!this.link(from, to).cut) arrive();
      });
    }
  }

  private delay(from: string, to: string): number {
    const [min, max] = this.link(from, to).quality.delayMs;
    return this.rng.between(min, max);
  }

  private setCuts(froms: readonly string[], tos: readonly string[], cut: boolean): void {
    for (const f of froms) for (const t of tos) if (f !== t) this.link(f, t).cut = cut;
  }

  private link(from: string, to: string): Link {
    const key = `${from}->${to}`;
    let link = this.links.get(key);
    if (!link) {
      link = { quality: { ...this.defaults }, cut: false };
      this.links.set(key, link);
    }
    return link;
  }

  private gen(node: string): number {
    return this.generation.get(node) ?? 0;
  }
}
