/**
 * Scenario tests of the leader's state machine (src/quorum/leader.ts): one
 * LeaderLog, two in-memory followers (LogReplica) and a tiny network that
 * the test delivers, drops or holds message by message.
 */
import { describe, expect, it } from 'vitest';
import { LeaderLog, type Acked, type Failed, type LeaderConfig, type ProposeResult, type Ready } from '../../src/quorum/leader.js';
import { ENTRY_OVERHEAD_BYTES } from '../../src/quorum/entry-buffer.js';
import { LogReplica } from '../../src/quorum/log-replica.js';
import { ReplyStatus, type AppendReply, type AppendRequest } from '../../src/quorum/messages.js';
import { decodeAppendReply, decodeAppendRequest, encodeAppendReply, encodeAppendRequest } from '../../src/peer/wire.js';
import { defaultConfig } from '../support/quorum-net.js';

type Packet = { kind: 'request'; to: string; req: AppendRequest } | { kind: 'reply'; from: string; reply: AppendReply };
type Match = (p: Packet) => boolean;

const toPeer =
  (peer: string, pred: (req: AppendRequest) => boolean = () => true): Match =>
  (p) =>
    p.kind === 'request' && p.to === peer && pred(p.req);
const fromPeer =
  (peer: string): Match =>
  (p) =>
    p.kind === 'reply' && p.from === peer;
const any: Match = () => true;

// The shared defaults; these rule tests pipeline every entry and expect a backoff of 3 ticks.
const config = (over: Partial<LeaderConfig> = {}): LeaderConfig => defaultConfig({ pipelineMinBytes: 0, backoffTicks: 3, ...over });

class Net {
  readonly account = { bytes: 0 };
  readonly leaderReplica = new LogReplica('log', this.account);
  readonly leader: LeaderLog<string>;
  readonly followers = new Map<string, LogReplica>();
  /** Messages and replies on their way, in the order they were produced. */
  wire: Packet[] = [];
  acked: Acked<string>[] = [];
  failed: Failed<string>[] = [];
  /** Every request the leader ever produced. */
  sent: { to: string; req: AppendRequest }[] = [];
  /** Incarnation tag each follower puts in its replies (none: a follower of the previous version). */
  readonly incarnations = new Map<string, number>();
  /** Followers whose replies ask for each commit point at once (they have tail readers). */
  readonly following = new Set<string>();

  /** `viaWire`: messages and replies go through the binary encoding, as between processes. */
  constructor(
    over: Partial<LeaderConfig> = {},
    private readonly viaWire = false,
  ) {
    const cfg = config(over);
    this.leader = new LeaderLog(this.leaderReplica, cfg);
    for (const peer of cfg.peers) this.followers.set(peer, new LogReplica('log', this.account, { replicas: cfg.peers.length + 1 }));
  }

  f(peer: string): LogReplica {
    return this.followers.get(peer)!;
  }

  propose(token: string, ...values: string[]): ProposeResult {
    return this.leader.propose(
      values.map((v) => Buffer.from(v)),
      token,
    );
  }

  ready(): Ready<string> {
    const ready = this.leader.ready();
    for (const { to, req } of ready.messages) {
      this.sent.push({ to, req });
      this.wire.push({ kind: 'request', to, req: this.viaWire ? decodeAppendRequest(Buffer.concat(encodeAppendRequest(req).chunks)) : req });
    }
    this.acked.push(...ready.acked);
    this.failed.push(...ready.failed);
    return ready;
  }

  /** Requests currently on their way to `peer`. */
  pendingTo(peer: string): AppendRequest[] {
    return this.wire.flatMap((p) => (p.kind === 'request' && p.to === peer ? [p.req] : []));
  }

  /** Delivers the packets on the wire now that match (not the replies this produces); returns how many. */
  deliver(match: Match = any): number {
    const now = this.wire.filter(match);
    this.wire = this.wire.filter((p) => !match(p));
    for (const p of now) {
      if (p.kind === 'request') {
        const reply: AppendReply = this.f(p.to).handleAppend(p.req);
        const incarnation = this.incarnations.get(p.to);
        if (incarnation !== undefined) reply.incarnation = incarnation;
        if (this.following.has(p.to)) reply.following = true;
        this.wire.push({ kind: 'reply', from: p.to, reply: this.viaWire ? decodeAppendReply(encodeAppendReply(reply)) : reply });
      } else {
        this.leader.handleReply(p.from, p.reply);
      }
    }
    return now.length;
  }

  drop(match: Match = any): number {
    const n = this.wire.filter(match).length;
    this.wire = this.wire.filter((p) => !match(p));
    return n;
  }

  /** Delivers until the wire is empty, dropping what matches `lose`. */
  deliverAll(lose: Match = () => false): void {
    while (this.wire.length > 0) {
      this.drop(lose);
      this.deliver();
    }
  }

  tick(n = 1): void {
    for (let i = 0; i < n; i++) this.leader.tick();
  }

  /** Rounds of a working network: ready, deliver everything (except what `lose` matches), tick. */
  settle(rounds = 30, lose: Match = () => false): void {
    for (let i = 0; i < rounds; i++) {
      this.ready();
      this.deliverAll(lose);
      this.tick();
    }
    this.ready();
  }

  /** The follower process restarted: it lost its memory and starts empty. */
  restart(peer: string): void {
    this.account.bytes -= this.f(peer).buffer.bytes;
    this.followers.set(peer, new LogReplica('log', this.account));
  }

  contents(r: LogReplica): string[] {
    const out: string[] = [];
    for (let id = r.buffer.startId; id <= r.buffer.lastId; id++) out.push(r.buffer.get(id)!.toString());
    return out;
  }
}

const tokens = (list: { token: string }[]) => list.map((x) => x.token);

describe('acknowledgement', () => {
  it('acks once one follower holds the entry (2 of 3), and not before', () => {
    const net = new Net();
    expect(net.propose('a', 'x')).toEqual({ ok: true, firstId: 0, lastId: 0, timeMs: 0 });
    const first = net.ready();
    expect(first.messages.map((m) => m.to).sort()).toEqual(['r2', 'r3']);
    for (const { req } of first.messages) {
      expect(req).toMatchObject({ log: 'log', epoch: 1, leader: 'r1', firstId: 0, prevEpoch: -1, entryEpoch: 1, commitId: -1 });
      expect(req.entries.map(String)).toEqual(['x']);
    }
    expect(first.acked).toEqual([]);

    net.deliver(toPeer('r2'));
    expect(net.contents(net.f('r2'))).toEqual(['x']);
    expect(net.ready().acked).toEqual([]); // r2 holds it, but the leader does not know yet
    expect(net.leaderReplica.commitId).toBe(-1);

    net.deliver(fromPeer('r2'));
    const ready = net.ready();
    expect(ready.acked).toEqual([{ token: 'a', firstId: 0, lastId: 0 }]);
    expect(ready.commitId).toBe(0);
    expect(net.leaderReplica.commitId).toBe(0);
    expect(net.leader.matchIdOf('r2')).toBe(0);
    expect(net.leader.matchIdOf('r3')).toBe(-1);
    expect(net.f('r3').buffer.lastId).toBe(-1); // r3 has not seen it: 2 of 3 was enough

    // r3's late answer acks nothing twice.
    net.deliver(toPeer('r3'));
    net.deliver(fromPeer('r3'));
    expect(net.ready().acked).toEqual([]);
    expect(tokens(net.acked)).toEqual(['a']);
    expect(net.leader.pendingCount).toBe(0);
  });

  it('acks proposals in id order, each once the commit point covers its last id', () => {
    const net = new Net({ maxBatchEntries: 2, maxInflight: 1 });
    net.propose('a', 'a0', 'a1', 'a2'); // ids 0..2
    net.propose('b', 'b3'); // id 3
    net.ready();
    net.drop(toPeer('r3'));
    net.deliver(toPeer('r2')); // ids 0..1
    net.deliver(fromPeer('r2'));
    expect(net.ready().acked).toEqual([]); // 'a' ends at 2
    net.deliver(toPeer('r2')); // ids 2..3
    net.deliver(fromPeer('r2'));
    expect(net.ready().acked).toEqual([
      { token: 'a', firstId: 0, lastId: 2 },
      { token: 'b', firstId: 3, lastId: 3 },
    ]);
  });

  it('does not ack while both followers are silent, even when they hold the entry', () => {
    const net = new Net({ ackTimeoutTicks: 30, retransmitTicks: 4 });
    net.propose('a', 'x');
    for (let t = 0; t < 29; t++) {
      net.ready();
      net.deliver(); // the followers receive and hold it...
      net.drop(); // ...but every answer is lost
      net.tick();
    }
    net.ready();
    expect(net.contents(net.f('r2'))).toEqual(['x']);
    expect(net.contents(net.f('r3'))).toEqual(['x']);
    expect(net.acked).toEqual([]);
    expect(net.failed).toEqual([]);
    expect(net.leaderReplica.commitId).toBe(-1);
    expect(net.leader.pendingCount).toBe(1);
  });
});

describe('timeouts', () => {
  it('fails a proposal with ACK_TIMEOUT exactly ackTimeoutTicks ticks after it was made, and never acks it later', () => {
    const net = new Net({ ackTimeoutTicks: 20 });
    net.propose('a', 'x'); // tick 0
    net.ready();
    net.drop();
    net.tick(5);
    net.propose('b', 'y'); // tick 5
    for (let t = 5; t < 19; t++) {
      net.ready();
      net.drop();
      net.tick();
    }
    expect(net.ready().failed).toEqual([]);
    net.tick(); // tick 20
    expect(net.ready().failed).toEqual([{ token: 'a', firstId: 0, lastId: 0, reason: 'ACK_TIMEOUT' }]);
    expect(net.leader.pendingCount).toBe(1);
    net.drop();
    net.tick(4);
    expect(net.ready().failed).toEqual([]);
    net.tick(); // tick 25
    expect(net.ready().failed).toEqual([{ token: 'b', firstId: 1, lastId: 1, reason: 'ACK_TIMEOUT' }]);

    // The outcome was unknown: the entries stay in the log and become committed once the
    // followers answer again, but their proposals are not acked after failing.
    net.settle();
    expect(net.leaderReplica.commitId).toBe(1);
    expect(net.acked).toEqual([]);
    expect(net.failed.map((f) => f.token)).toEqual(['a', 'b']);
    // Ids keep going after the failures: no id is given twice.
    expect(net.propose('c', 'z')).toEqual({ ok: true, firstId: 2, lastId: 2, timeMs: 0 });
  });

  it('refuses proposals with NO_QUORUM once neither follower has answered for ackTimeoutTicks', () => {
    const net = new Net({ ackTimeoutTicks: 20 });
    for (let t = 0; t < 19; t++) {
      net.ready();
      net.drop();
      net.tick();
    }
    expect(net.propose('a', 'x')).toEqual({ ok: true, firstId: 0, lastId: 0, timeMs: 0 });
    net.ready();
    net.drop();
    net.tick(); // tick 20: the last answer (none, since tick 0) is ackTimeoutTicks old
    expect(net.propose('b', 'y')).toEqual({ ok: false, reason: 'NO_QUORUM' });
    expect(net.leaderReplica.buffer.lastId).toBe(0); // a refusal takes no id
    expect(net.leader.pendingCount).toBe(1);

    // One follower answering again is a quorum again.
    net.ready();
    net.tick(10); // retransmit time
    net.ready();
    net.deliver(toPeer('r2'));
    net.deliver(fromPeer('r2'));
    expect(net.propose('c', 'z')).toEqual({ ok: true, firstId: 1, lastId: 1, timeMs: 0 });
  });

  it('keeps accepting proposals while one follower answers, however long the other is silent', () => {
    const net = new Net({ ackTimeoutTicks: 10 });
    for (let t = 0; t < 40; t++) {
      expect(net.propose(`p${t}`, `v${t}`)).toMatchObject({ ok: true, firstId: t });
      net.ready();
      net.drop(toPeer('r3'));
      net.deliverAll();
      net.tick();
    }
    net.ready();
    expect(net.failed).toEqual([]);
    expect(net.acked).toHaveLength(40);
    expect(net.f('r3').buffer.lastId).toBe(-1);
  });
});

describe('batching and pipelining', () => {
  it('puts proposals made between two ready() calls in one message per follower (group commit)', () => {
    const net = new Net();
    for (let i = 0; i < 5; i++) net.propose(`p${i}`, `e${i}`);
    const ready = net.ready();
    expect(ready.messages).toHaveLength(2);
    for (const peer of ['r2', 'r3']) {
      const [req] = net.pendingTo(peer);
      expect(net.pendingTo(peer)).toHaveLength(1);
      expect(req!.firstId).toBe(0);
      expect(req!.entries.map(String)).toEqual(['e0', 'e1', 'e2', 'e3', 'e4']);
    }
    net.deliver(toPeer('r3'));
    net.deliver(fromPeer('r3'));
    expect(tokens(net.ready().acked)).toEqual(['p0', 'p1', 'p2', 'p3', 'p4']);
  });

  it('cuts a batch at maxBatchEntries and maxBatchBytes', () => {
    const net = new Net({ maxBatchEntries: 3, maxBatchBytes: 10, maxInflight: 8 });
    net.settle(1); // both followers answered: they are in replicate state
    net.propose('a', '1234', '5678', '9'); // 9 bytes
    net.propose('b', 'abcd'); // would make 13
    net.propose('c', 'x', 'y', 'z', 'w');
    net.ready();
    expect(net.pendingTo('r2').map((r) => r.entries.map(String))).toEqual([['1234', '5678', '9'], ['abcd', 'x', 'y'], ['z', 'w']]);
  });

  it('sends one message at a time while probing and up to maxInflight once the follower keeps up', () => {
    const net = new Net({ maxInflight: 3, maxBatchEntries: 1 });
    for (let i = 0; i < 8; i++) net.propose(`p${i}`, `e${i}`);
    net.ready();
    expect(net.pendingTo('r2').map((r) => r.firstId)).toEqual([0]); // probing: one at a time
    expect(net.pendingTo('r3').map((r) => r.firstId)).toEqual([0]);
    expect(net.ready().messages).toEqual([]);

    net.deliver(toPeer('r2'));
    net.deliver(fromPeer('r2')); // r2 answered: it replicates now
    net.ready();
    expect(net.pendingTo('r2').map((r) => r.firstId)).toEqual([1, 2, 3]);
    expect(net.pendingTo('r3').map((r) => r.firstId)).toEqual([0]); // r3 still probing
    expect(net.ready().messages).toEqual([]); // pipeline full

    net.deliver(toPeer('r2', (r) => r.firstId === 1));
    net.deliver(fromPeer('r2'));
    net.ready();
    expect(net.pendingTo('r2').map((r) => r.firstId)).toEqual([2, 3, 4]); // one answer, one more message
    expect(tokens(net.acked)).toEqual(['p0', 'p1']);
  });

  it('goes back to probing, one message at a time, when a pipelined message is lost', () => {
    const net = new Net({ maxInflight: 3, maxBatchEntries: 1 });
    net.settle(1);
    for (let i = 0; i < 6; i++) net.propose(`p${i}`, `e${i}`);
    net.ready();
    expect(net.pendingTo('r2').map((r) => r.firstId)).toEqual([0, 1, 2]);
    net.drop(toPeer('r2', (r) => r.firstId === 0));
    net.deliver(toPeer('r2', (r) => r.firstId === 1));
    expect(net.wire.find(fromPeer('r2'))).toMatchObject({ reply: { status: ReplyStatus.Gap, lastId: -1 } });
    net.deliver(fromPeer('r2'));
    const ready = net.ready();
    expect(ready.messages.filter((m) => m.to === 'r2').map((m) => m.req.firstId)).toEqual([0]);
    expect(net.f('r2').buffer.lastId).toBe(-1); // never accepted with a gap
  });
});

describe('loss and restarts', () => {
  it('retransmits after retransmitTicks when a message is lost', () => {
    const net = new Net({ retransmitTicks: 5, heartbeatTicks: 1000 });
    net.propose('a', 'x');
    const first = net.ready();
    net.drop();
    for (let t = 1; t < 5; t++) {
      net.tick();
      expect(net.ready().messages, `tick ${t}`).toEqual([]);
    }
    net.tick();
    const again = net.ready();
    expect(again.messages.map((m) => m.to).sort()).toEqual(['r2', 'r3']);
    for (const m of again.messages) {
      expect(m.req).toMatchObject({ firstId: 0, prevEpoch: -1 });
      expect(m.req.entries.map(String)).toEqual(['x']);
      expect(first.messages.map((f) => f.req.seq)).not.toContain(m.req.seq);
    }
    net.deliverAll();
    expect(tokens(net.ready().acked)).toEqual(['a']);
  });

  it('retransmits when the answer is lost, and the follower keeps one copy', () => {
    const net = new Net({ retransmitTicks: 5, heartbeatTicks: 1000 });
    net.propose('a', 'x', 'y');
    net.ready();
    net.deliver(toPeer('r2'));
    net.drop(); // r2's answer and r3's request are lost
    net.tick(5);
    net.ready();
    net.deliverAll();
    expect(tokens(net.ready().acked)).toEqual(['a']);
    expect(net.contents(net.f('r2'))).toEqual(['x', 'y']);
    expect(net.f('r2').buffer.bytes).toBe(2);
  });

  it('pauses a follower for backoffTicks after a transport error, then probes it again', () => {
    const net = new Net({ backoffTicks: 3, heartbeatTicks: 1000 });
    net.propose('a', 'x');
    net.ready();
    const [lost] = net.pendingTo('r3');
    net.drop(toPeer('r3'));
    net.leader.peerUnreachable('r3', lost!.seq);
    for (let t = 0; t < 3; t++) {
      expect(net.ready().messages.filter((m) => m.to === 'r3')).toEqual([]);
      net.tick();
    }
    expect(net.ready().messages.filter((m) => m.to === 'r3').map((m) => m.req.firstId)).toEqual([0]);
  });

  it('catches up a follower that restarted empty from the leader buffer, without gaps', () => {
    const net = new Net({ maxBatchEntries: 3 });
    for (let i = 0; i < 10; i++) net.propose(`p${i}`, `e${i}`);
    net.settle();
    expect(net.contents(net.f('r3'))).toHaveLength(10);
    net.restart('r3');
    for (let i = 10; i < 15; i++) net.propose(`p${i}`, `e${i}`);
    // r2 is cut off: the new entries can only be acked once r3 really holds them, and it
    // must first get 0..9 back.
    const leaderLog = () => net.contents(net.leaderReplica);
    for (let round = 0; round < 40; round++) {
      net.ready();
      net.drop(toPeer('r2'));
      while (net.wire.length > 0) {
        net.deliver();
        const held = net.contents(net.f('r3'));
        expect(net.f('r3').buffer.startId).toBe(0);
        expect(held).toEqual(leaderLog().slice(0, held.length));
      }
      const before = net.acked.length;
      net.ready();
      if (net.acked.length > before) expect(net.f('r3').buffer.lastId).toBeGreaterThanOrEqual(net.acked[net.acked.length - 1]!.lastId);
      net.tick();
    }
    expect(net.contents(net.f('r3'))).toEqual(Array.from({ length: 15 }, (_, i) => `e${i}`));
    expect(net.leader.matchIdOf('r3')).toBe(14);
    expect(tokens(net.acked)).toEqual(Array.from({ length: 15 }, (_, i) => `p${i}`));
  });
});

describe('followers at their memory bound', () => {
  /** Replaces the follower with an empty one whose own account holds at most `entries` one-byte entries (raise `limitBytes` to make room). */
  const bounded = (net: Net, peer: string, entries: number) => {
    const account = { bytes: 0, limitBytes: entries * (1 + ENTRY_OVERHEAD_BYTES) };
    net.followers.set(peer, new LogReplica('log', account));
    return account;
  };

  it('takes nothing past the bound and answers Full with the prefix it proved to match', () => {
    const f = new LogReplica('log', { bytes: 0, limitBytes: 2 * (1 + ENTRY_OVERHEAD_BYTES) });
    const req = (firstId: number, values: string[], commitId: number): AppendRequest => ({ log: 'log', epoch: 1, leader: 'r1', seq: firstId, firstId, prevEpoch: firstId > 0 ? 1 : -1, entryEpoch: 1, commitId, entries: values.map((v) => Buffer.from(v)) });
    expect(f.handleAppend(req(0, ['a', 'b'], -1))).toMatchObject({ status: ReplyStatus.Ok, lastId: 1 });
    expect(f.handleAppend(req(2, ['c'], 1))).toMatchObject({ status: ReplyStatus.Full, lastId: 1 });
    expect([f.buffer.lastId, f.commitId]).toEqual([1, 1]);
    // A duplicate of what it holds needs no room.
    expect(f.handleAppend(req(0, ['a', 'b'], 1))).toMatchObject({ status: ReplyStatus.Ok, lastId: 1 });
  });

  it('never acks what only one follower could not take: a quorum of leader and the other follower does', () => {
    const net = new Net({ heartbeatTicks: 1000 });
    bounded(net, 'r2', 0);
    net.propose('a', 'x');
    net.settle(5);
    expect(tokens(net.acked)).toEqual(['a']);
    expect([net.f('r2').buffer.lastId, net.leader.matchIdOf('r2'), net.leader.matchIdOf('r3')]).toEqual([-1, -1, 0]);
  });

  it('holds the ack while both followers are full, resends after the backoff, and acks once they have room', () => {
    const net = new Net({ heartbeatTicks: 1000, backoffTicks: 3, ackTimeoutTicks: 100 });
    const r2 = bounded(net, 'r2', 0);
    bounded(net, 'r3', 0);
    net.propose('a', 'x');
    net.ready();
    net.deliverAll();
    expect(net.wire).toEqual([]);
    expect(net.ready().messages).toEqual([]); // no resend before the backoff
    expect(net.acked).toEqual([]);
    // Full replies count as answers: the followers are alive, so appends are not refused NO_QUORUM.
    net.tick(2);
    expect(net.propose('b', 'y').ok).toBe(true);
    net.tick(1);
    expect(net.ready().messages.map((m) => m.to).sort()).toEqual(['r2', 'r3']);
    net.deliverAll();
    expect(net.acked).toEqual([]);
    Object.assign(r2, { limitBytes: 10 * (1 + ENTRY_OVERHEAD_BYTES) });
    net.settle(10);
    expect(tokens(net.acked)).toEqual(['a', 'b']);
    expect(net.contents(net.f('r2'))).toEqual(['x', 'y']);
    expect(net.failed).toEqual([]);
  });
});

describe('follower incarnations', () => {
  it('counts a restarted follower only for what its new incarnation answered, and starts its progress over', () => {
    const net = new Net({ heartbeatTicks: 2 }, true);
    net.incarnations.set('r2', 1).set('r3', 1);
    for (let i = 0; i < 5; i++) net.propose(`p${i}`, `e${i}`);
    net.settle();
    expect(net.leader.matchIdOf('r3', 1)).toBe(4);
    net.restart('r3');
    net.incarnations.set('r3', 2);
    // Until the new process answers, nothing it holds is known: the old process's progress does not carry over.
    expect(net.leader.matchIdOf('r3', 2)).toBe(-1);
    net.tick(2);
    expect(net.ready().messages.map((m) => m.to)).toContain('r3');
    net.deliver(toPeer('r3'));
    net.deliver(fromPeer('r3'));
    expect(net.leader.matchIdOf('r3', 2)).toBeLessThan(4);
    expect(net.leader.matchIdOf('r3', 1)).toBe(-1);
    net.settle();
    expect(net.contents(net.f('r3'))).toEqual(['e0', 'e1', 'e2', 'e3', 'e4']);
    expect(net.leader.matchIdOf('r3', 2)).toBe(4);
  });

  it('resets the progress of a follower whose new incarnation answers Ok to a message its old one was sent', () => {
    const net = new Net({ heartbeatTicks: 1000 });
    net.incarnations.set('r2', 1).set('r3', 1);
    for (let i = 0; i < 3; i++) net.propose(`p${i}`, `e${i}`);
    net.settle();
    net.incarnations.set('r3', 9);
    net.leader.handleReply('r3', { status: ReplyStatus.Ok, epoch: 1, seq: 12345, lastId: 1, incarnation: 9 });
    expect(net.leader.matchIdOf('r3')).toBe(1);
  });
});

describe('deposition', () => {
  it('a reply with a higher epoch deposes the leader: pending proposals fail FENCED and nothing is acked after', () => {
    const net = new Net();
    net.propose('a', 'x');
    net.propose('b', 'y');
    net.ready();
    const sentBefore = net.sent.length;
    net.f('r3').observeEpoch(2, 'r3'); // r3 was fenced by the next leader
    net.deliver(toPeer('r3'));
    expect(net.wire.find(fromPeer('r3'))).toMatchObject({ reply: { status: ReplyStatus.Fenced, epoch: 2 } });
    net.deliver(fromPeer('r3'));
    const ready = net.ready();
    expect(ready.failed).toEqual([
      { token: 'a', firstId: 0, lastId: 0, reason: 'FENCED' },
      { token: 'b', firstId: 1, lastId: 1, reason: 'FENCED' },
    ]);
    expect(net.leader.isDeposed).toBe(true);
    expect(net.leaderReplica.epoch).toBe(2);
    expect(net.leader.propose([Buffer.from('z')], 'c')).toEqual({ ok: false, reason: 'FENCED' });

    // r2 still holds and answers at epoch 1: too late, the leader acks nothing.
    net.deliver(toPeer('r2'));
    expect(net.wire.find(fromPeer('r2'))).toMatchObject({ reply: { status: ReplyStatus.Ok, lastId: 1 } });
    net.deliver(fromPeer('r2'));
    net.settle();
    expect(net.acked).toEqual([]);
    expect(net.leaderReplica.commitId).toBe(-1);
    expect(ready.messages).toEqual([]);
    expect(net.sent).toHaveLength(sentBefore); // not even heartbeats
    expect(net.failed).toHaveLength(2);
    expect(net.leader.hasReady()).toBe(false);
  });

  it('stepDown() fails every waiting proposal once, drops unsent messages and stops everything', () => {
    const net = new Net({ ackTimeoutTicks: 5 });
    net.propose('a', 'x');
    net.ready();
    net.propose('b', 'y'); // not sent yet
    net.leader.stepDown();
    net.leader.stepDown();
    const ready = net.ready();
    expect(ready.messages).toEqual([]);
    expect(ready.failed).toEqual([
      { token: 'a', firstId: 0, lastId: 0, reason: 'FENCED' },
      { token: 'b', firstId: 1, lastId: 1, reason: 'FENCED' },
    ]);
    expect(net.leader.isDeposed).toBe(true);
    expect(net.leader.pendingCount).toBe(0);
    expect(net.propose('c', 'z')).toEqual({ ok: false, reason: 'FENCED' });
    // Answers to what was sent before change nothing; time passing fails nothing twice.
    net.deliverAll();
    net.tick(20);
    net.ready();
    expect(net.acked).toEqual([]);
    expect(net.failed).toHaveLength(2);
    expect(net.leader.hasReady()).toBe(false);
  });

  it('steps down when its own replica saw a higher epoch (fenced by a recovering leader)', () => {
    const net = new Net();
    net.propose('a', 'x');
    net.ready();
    net.leaderReplica.observeEpoch(3, 'r2');
    expect(net.leader.isDeposed).toBe(true);
    expect(net.propose('b', 'y')).toEqual({ ok: false, reason: 'FENCED' });
    const ready = net.ready();
    expect(ready.failed).toEqual([{ token: 'a', firstId: 0, lastId: 0, reason: 'FENCED' }]);
    expect(ready.messages).toEqual([]);
    net.deliverAll();
    net.ready();
    expect(net.acked).toEqual([]);
  });

  it('refuses to lead an epoch below the replica fence', () => {
    const replica = new LogReplica('log', { bytes: 0 }, { epoch: 4 });
    expect(() => new LeaderLog(replica, config({ epoch: 3 }))).toThrow(/below fence 4/);
  });
});

describe('commit point and heartbeats', () => {
  // Five replicas: a follower and the leader are no quorum, so followers learn the commit point from the leader.
  const FIVE = ['r2', 'r3', 'r4', 'r5'];
  const commits = (net: Net) => FIVE.map((p) => net.f(p).commitId);

  it('tells idle followers of a 5-replica log the commit point at the next tick, not with a message per commit', () => {
    const net = new Net({ heartbeatTicks: 1000, peers: FIVE });
    net.propose('a', 'x');
    net.ready();
    net.deliverAll();
    expect(commits(net)).toEqual([-1, -1, -1, -1]); // the message with the entry said -1
    const ready = net.ready();
    expect(tokens(ready.acked)).toEqual(['a']);
    // No message just for the commit point in the turn that releases the ack...
    expect(ready.messages).toEqual([]);
    // ...it rides on the next entries when they come before the next tick...
    net.propose('b', 'y');
    expect(net.ready().messages.map((m) => [m.to, m.req.firstId, m.req.entries.length, m.req.commitId])).toEqual(FIVE.map((p) => [p, 1, 1, 0]));
    net.deliverAll();
    expect(tokens(net.ready().acked)).toEqual(['b']);
    expect(commits(net)).toEqual([0, 0, 0, 0]);
    // ...and an idle log sends it at the next tick.
    expect(net.ready().messages).toEqual([]);
    net.tick();
    expect(net.ready().messages.map((m) => [m.to, m.req.firstId, m.req.entries.length, m.req.commitId, m.req.prevEpoch])).toEqual(FIVE.map((p) => [p, 2, 0, 1, 1]));
    net.deliverAll();
    expect(commits(net)).toEqual([1, 1, 1, 1]);
    net.tick();
    expect(net.ready().messages).toEqual([]); // nothing new to say
  });

  it('tells a follower of a 5-replica log that asked for it (tail readers) each commit point at once, the others at the next tick', () => {
    const net = new Net({ heartbeatTicks: 1000, peers: FIVE }, true);
    net.following.add('r2');
    net.ready();
    net.deliverAll(); // the first heartbeat's replies carry the flag
    net.propose('a', 'x');
    net.ready();
    net.deliverAll();
    const ready = net.ready();
    expect(tokens(ready.acked)).toEqual(['a']);
    expect(ready.messages.map((m) => [m.to, m.req.entries.length, m.req.commitId])).toEqual([['r2', 0, 0]]);
    net.deliverAll();
    expect(commits(net)).toEqual([0, -1, -1, -1]);
    expect(net.ready().messages).toEqual([]); // told once, not again
    net.tick();
    expect(net.ready().messages.map((m) => [m.to, m.req.commitId])).toEqual(['r3', 'r4', 'r5'].map((p) => [p, 0]));
    // Once its readers are gone its replies stop asking, and it waits for the tick like the others.
    net.following.delete('r2');
    net.deliverAll();
    net.propose('b', 'y');
    net.ready();
    net.deliverAll();
    expect(net.ready().messages).toEqual([]);
  });

  it('sends a 3-replica log\'s followers no message only for the commit point (each commits what it takes), unless one asks: it predates the pair rule', () => {
    const net = new Net({ heartbeatTicks: 1000 }, true);
    net.ready();
    net.deliverAll();
    net.propose('a', 'x');
    net.ready();
    net.deliverAll();
    expect([net.f('r2').commitId, net.f('r3').commitId]).toEqual([0, 0]);
    const ready = net.ready();
    expect(tokens(ready.acked)).toEqual(['a']);
    expect(ready.messages).toEqual([]);
    net.tick();
    expect(net.ready().messages).toEqual([]);
    // A follower of the previous release with tail readers asks in its replies, and is told at once.
    net.following.add('r2');
    net.propose('b', 'y');
    net.ready();
    net.deliverAll();
    const after = net.ready();
    expect(tokens(after.acked)).toEqual(['b']);
    expect(after.messages.map((m) => [m.to, m.req.entries.length, m.req.commitId])).toEqual([['r2', 0, 1]]);
  });

  it('an idle leader sends heartbeats every heartbeatTicks', () => {
    const net = new Net({ heartbeatTicks: 4 });
    expect(net.ready().messages).toHaveLength(2); // tick 0: the first heartbeat announces the leader
    net.deliverAll();
    const beatTicks: number[] = [];
    for (let t = 1; t <= 12; t++) {
      net.tick();
      if (net.ready().messages.length > 0) beatTicks.push(t);
      net.deliverAll();
    }
    expect(beatTicks).toEqual([4, 8, 12]);
  });
});

describe('check-quorum', () => {
  /** Rounds in which nothing reaches the followers: each message fails as `refused` says, or is lost. */
  const silentRounds = (net: Net, ticks: number, refused: (peer: string) => boolean | undefined = () => undefined): boolean[] => {
    const lost: boolean[] = [];
    for (let t = 0; t < ticks; t++) {
      const ready = net.ready();
      lost.push(ready.quorumLost);
      for (const { to, req } of ready.messages) {
        const how = refused(to);
        if (how !== undefined) net.leader.peerUnreachable(to, req.seq, how);
      }
      net.drop();
      net.tick();
    }
    return lost;
  };

  it('steps down once no follower has answered for ackTimeoutTicks, says so once, and fails what waits with ACK_TIMEOUT', () => {
    const net = new Net({ checkQuorum: true, ackTimeoutTicks: 20 });
    silentRounds(net, 10);
    expect(net.propose('a', 'x')).toMatchObject({ ok: true });
    const lost = silentRounds(net, 15);
    // Round 10 runs at tick 20, the first with both followers ackTimeoutTicks silent.
    expect(lost.indexOf(true)).toBe(10);
    expect(lost.filter(Boolean)).toHaveLength(1);
    expect(net.leader.isDeposed).toBe(true);
    expect(net.failed).toEqual([{ token: 'a', firstId: 0, lastId: 0, reason: 'ACK_TIMEOUT' }]);
    expect(net.propose('b', 'y')).toEqual({ ok: false, reason: 'FENCED' });
    expect(net.ready().messages).toEqual([]);
  });

  it('never steps down on an idle log whose followers answer the heartbeats', () => {
    const net = new Net({ checkQuorum: true, ackTimeoutTicks: 20, heartbeatTicks: 5 });
    for (let t = 0; t < 500; t++) {
      expect(net.ready().quorumLost).toBe(false);
      net.deliverAll();
      net.tick();
    }
    expect(net.leader.isDeposed).toBe(false);
    expect(net.propose('a', 'x')).toMatchObject({ ok: true });
  });

  it('keeps leading while one follower answers, however long the other is silent', () => {
    const net = new Net({ checkQuorum: true, ackTimeoutTicks: 10 });
    for (let t = 0; t < 100; t++) {
      expect(net.ready().quorumLost).toBe(false);
      net.drop(toPeer('r3'));
      net.deliverAll();
      net.tick();
    }
    expect(net.leader.isDeposed).toBe(false);
  });

  it('stays (refusing with NO_QUORUM) when the silent followers refuse connections: no other replica could lead', () => {
    const net = new Net({ checkQuorum: true, ackTimeoutTicks: 20, backoffTicks: 1 });
    expect(silentRounds(net, 60, () => true)).not.toContain(true);
    expect(net.leader.isDeposed).toBe(false);
    expect(net.propose('a', 'x')).toEqual({ ok: false, reason: 'NO_QUORUM' });
  });

  it('steps down once a follower whose connections were refused fails otherwise (cut off rather than dead)', () => {
    const net = new Net({ checkQuorum: true, ackTimeoutTicks: 20, backoffTicks: 1 });
    // r2 dead (refused), r3 cut off (its messages fail otherwise): r3 alone cannot make a new leader.
    expect(silentRounds(net, 40, (peer) => peer === 'r2')).not.toContain(true);
    expect(net.leader.isDeposed).toBe(false);
    // r2's address now stops refusing (it is back, or cut off rather than dead): both may be alive.
    expect(silentRounds(net, 10, () => false)).toContain(true); // within a heartbeat
    expect(net.leader.isDeposed).toBe(true);
  });

  it('is off unless configured: a leader without check-quorum keeps refusing with NO_QUORUM', () => {
    const net = new Net({ ackTimeoutTicks: 20 });
    expect(silentRounds(net, 100)).not.toContain(true);
    expect(net.leader.isDeposed).toBe(false);
  });
});

describe('sequence numbers on the wire', () => {
  it('keeps matching answers to messages after the u32 seq field wraps', () => {
    const net = new Net({ maxInflight: 3, maxBatchEntries: 1, heartbeatTicks: 1000 }, true);
    // Pretend the leader has sent 2^32 - 2 messages already (a long-lived leader of a busy log).
    (net.leader as unknown as { seq: number }).seq = 2 ** 32 - 2;
    for (let i = 0; i < 4; i++) net.propose(`p${i}`, `e${i}`);
    net.settle(3);
    expect(tokens(net.acked)).toEqual(['p0', 'p1', 'p2', 'p3']);

    // Pipelining still works: a matched answer moves a probing follower to replicate.
    for (let i = 4; i < 10; i++) net.propose(`p${i}`, `e${i}`);
    net.ready();
    expect(net.pendingTo('r2')).toHaveLength(3);
    net.deliverAll();

    // A Gap answer is still matched to its message: a restarted follower is caught up.
    net.restart('r3');
    net.propose('p10', 'e10');
    net.settle(10, toPeer('r2'));
    expect(net.contents(net.f('r3'))).toEqual(Array.from({ length: 11 }, (_, i) => `e${i}`));
    expect(tokens(net.acked)).toContain('p10');
    expect(net.sent.some((s) => s.req.seq < 100)).toBe(true); // it did wrap
  });
});

describe('timestamps', () => {
  const T = 1_800_000_000_000;
  const propose = (net: Net, value: string, clock: { nowMs: number; givenMs?: number }) => net.leader.propose([Buffer.from(value)], value, undefined, clock);

  it('stamps each proposal with the clock, never below the log\'s last time, and replicates the times', () => {
    const net = new Net({}, true);
    expect(propose(net, 'a', { nowMs: T })).toMatchObject({ ok: true, timeMs: T });
    expect(propose(net, 'b', { nowMs: T - 50 })).toMatchObject({ ok: true, timeMs: T }); // the clock went back
    expect(propose(net, 'c', { nowMs: T + 3 })).toMatchObject({ ok: true, timeMs: T + 3 });
    net.settle();
    for (const r of [net.leaderReplica, net.f('r2'), net.f('r3')]) expect(r.buffer.timesOf(0, 3)).toEqual([T, T, T + 3]);
  });

  it('takes an append\'s own time at or above the last, and refuses one below it (not applied)', () => {
    const net = new Net();
    propose(net, 'a', { nowMs: T });
    expect(propose(net, 'b', { nowMs: T, givenMs: T + 100 })).toMatchObject({ ok: true, timeMs: T + 100 });
    expect(propose(net, 'c', { nowMs: T + 200, givenMs: T + 99 })).toEqual({ ok: false, reason: 'TIME_BEHIND', lastTimeMs: T + 100 });
    expect(net.leaderReplica.buffer.lastId).toBe(1);
    expect(propose(net, 'd', { nowMs: T, givenMs: T + 100 })).toMatchObject({ ok: true, firstId: 2, timeMs: T + 100 });
  });

  it('a new leader stamps no lower than the times it recovered', () => {
    const net = new Net();
    propose(net, 'a', { nowMs: T + 1000 });
    net.settle();
    const runs = net.f('r2').runsBetween(0, 0, 1 << 20);
    const next = new LogReplica('log', { bytes: 0 });
    for (const run of runs) next.adopt(run);
    const leader = new LeaderLog<string>(next, config({ self: 'r2', peers: ['r1', 'r3'], epoch: 2 }));
    expect(leader.propose([Buffer.from('b')], 'b', undefined, { nowMs: T })).toMatchObject({ ok: true, firstId: 1, timeMs: T + 1000 });
  });
});
