import { describe, expect, it } from 'vitest';
import { DEFAULT_NEMESES, NEMESIS_NAMES } from './nemesis.js';
import type { AppendOp } from './checker.js';
import { forgottenProducers, idleEveryMs, parseRunArgs, seeded } from './run.js';

describe('jepsen-lite run options', () => {
  it('takes a list of nemeses, all or none, and refuses unknown ones by name', () => {
    expect(parseRunArgs(['--nemesis', 'kill-leader,partition-leader', '--seed', '42']).nemeses).toEqual(['kill-leader', 'partition-leader']);
    expect(parseRunArgs(['--nemesis', 'all']).nemeses).toEqual(DEFAULT_NEMESES);
    expect(parseRunArgs([]).nemeses).toEqual(DEFAULT_NEMESES);
    expect(parseRunArgs(['--nemesis', 'none']).nemeses).toEqual([]);
    expect(() => parseRunArgs(['--nemesis', 'kill-leader,meteor'])).toThrow(/unknown nemesis meteor/);
    expect(() => parseRunArgs(['--time', 'soon'])).toThrow(/--time must be an integer/);
  });

  it('names the report directory after the seed, and runs rounds instead of time when asked', () => {
    const options = parseRunArgs(['--seed', '7', '--rounds', '2'], new Date('2026-11-25T07:00:00Z'));
    expect(options.outDir).toMatch(/jepsen-reports\/2026-11-25T07-00-00-000Z-seed7$/);
    expect(options.rounds).toBe(2);
    expect(parseRunArgs([]).rounds).toBeUndefined();
  });

  it('mixes plain appenders and idempotent producers unless told otherwise, and refuses other modes', () => {
    expect(parseRunArgs([]).producers).toBe('mixed');
    expect(parseRunArgs(['--producers', 'idempotent']).producers).toBe('idempotent');
    expect(() => parseRunArgs(['--producers', 'sometimes'])).toThrow(/--producers must be one of plain, idempotent, mixed/);
  });

  it('runs plain HTTP unless --tls is given', () => {
    expect(parseRunArgs([]).tls).toBe(false);
    expect(parseRunArgs(['--tls', '--rounds', '1']).tls).toBe(true);
  });

  it('draws the same choices from the same seed, and others from another', () => {
    const draw = (seed: number) => Array.from({ length: 5 }, seeded(seed));
    expect(draw(42)).toEqual(draw(42));
    expect(draw(42)).not.toEqual(draw(43));
    expect(draw(42).every((x) => x >= 0 && x < 1)).toBe(true);
  });

  it('leaves kill-all out of all (opt-in), and adds it to all when named', () => {
    expect(NEMESIS_NAMES).toContain('kill-all');
    expect(DEFAULT_NEMESES).not.toContain('kill-all');
    expect(parseRunArgs(['--nemesis', 'all,kill-all']).nemeses).toEqual([...DEFAULT_NEMESES, 'kill-all']);
    expect(parseRunArgs(['--nemesis', 'kill-all,kill-leader,kill-all']).nemeses).toEqual(['kill-all', 'kill-leader']);
  });

  it('takes --idle-logs and --quiesce-after-ms, by default 50 idle logs that quiesce after 2 s', () => {
    expect(parseRunArgs([]).idleLogs).toBe(50);
    expect(parseRunArgs(['--idle-logs', '0']).idleLogs).toBe(0);
    expect(parseRunArgs(['--idle-logs', '200']).idleLogs).toBe(200);
    expect(() => parseRunArgs(['--idle-logs', 'many'])).toThrow(/--idle-logs must be an integer >= 0/);
    expect(parseRunArgs([]).quiesceAfterMs).toBe(2000);
    expect(parseRunArgs(['--quiesce-after-ms', '0']).quiesceAfterMs).toBe(0);
    expect(parseRunArgs(['--quiesce-after-ms', '1500']).quiesceAfterMs).toBe(1500);
    expect(() => parseRunArgs(['--quiesce-after-ms', 'soon'])).toThrow(/--quiesce-after-ms must be an integer/);
  });

  it('paces the idle logs so each waits about three quiescence delays between appends, within 20 appends a second in all', () => {
    // Two clients, 50 logs, 1 s delay: each client every 2 * 3000 / 50 = 120 ms, a log every 3 s on average.
    expect(idleEveryMs(50, 1000)).toBe(120);
    // The server's default delay (10 s) when none is given, and when 0 (never) is.
    expect(idleEveryMs(50)).toBe(1200);
    expect(idleEveryMs(50, 0)).toBe(1200);
    // 1,000 logs: capped at 20 appends a second (each client every 100 ms).
    expect(idleEveryMs(1000, 1000)).toBe(100);
  });

  it('fails a run whose producer was forgotten (SEQUENCE_GAP) unless a kill-all met its log unquiesced before', () => {
    const gap = (log: string, at: number): AppendOp => ({ type: 'append', process: `${log}/c1`, log, replica: 'client', value: 'v', invokeMs: at, completeMs: at + 1, outcome: 'fail', idempotent: true, error: 'SEQUENCE_GAP' });
    const kill = { killMs: 100, restartMs: 110, quiesced: ['q'] };
    expect(forgottenProducers([gap('L', 200)], [kill])).toEqual([]);
    expect(forgottenProducers([gap('L', 50)], [kill])).toHaveLength(1);
    expect(forgottenProducers([gap('q', 200)], [kill])).toHaveLength(1);
    expect(forgottenProducers([gap('L', 200)], [])[0]).toMatch(/1 producer appends refused SEQUENCE_GAP/);
  });
});
