import { describe, expect, it } from 'vitest';
import { NEMESIS_NAMES } from './nemesis.js';
import { parseRunArgs, seeded } from './run.js';

describe('jepsen-lite run options', () => {
  it('takes a list of nemeses, all or none, and refuses unknown ones by name', () => {
    expect(parseRunArgs(['--nemesis', 'kill-leader,partition-leader', '--seed', '42']).nemeses).toEqual(['kill-leader', 'partition-leader']);
    expect(parseRunArgs(['--nemesis', 'all']).nemeses).toEqual(NEMESIS_NAMES);
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
});
