import { describe, expect, it } from 'vitest';
import { keys, parseKey, type ParsedKey } from '../../src/fencing/keys.js';

describe('etcd keys', () => {
  const table: [key: string, parsed: ParsedKey][] = [
    [keys.coordinator(), { kind: 'coordinator' }],
    [keys.node('r1'), { kind: 'node', id: 'r1' }],
    [keys.member('r2'), { kind: 'member', id: 'r2' }],
    [keys.log('a/b'), { kind: 'log', name: 'a/b' }],
    [keys.epoch('orders'), { kind: 'epoch', name: 'orders' }],
    [keys.leader('orders'), { kind: 'leader', name: 'orders' }],
    [keys.retention('orders'), { kind: 'retention', name: 'orders' }],
    [keys.flushedThrough('orders'), { kind: 'flushedThrough', name: 'orders' }],
    [keys.segment('a/b', 7), { kind: 'segment', name: 'a/b', epoch: 7 }],
    [keys.manifestEntry('orders', 1234), { kind: 'manifestEntry', name: 'orders', firstId: 1234 }],
    [keys.reader('a/b', 'billing.v2'), { kind: 'reader', name: 'a/b', reader: 'billing.v2' }],
  ];

  it.each(table)('%s reads back as what it was built from', (key, parsed) => {
    expect(parseKey(key)).toEqual(parsed);
  });

  it('a key outside the layout reads back as nothing', () => {
    expect(parseKey('unknown/x')).toBeUndefined();
    expect(parseKey('orphan')).toBeUndefined();
  });

  it('orders a log’s segments and manifest entries numerically, as etcd orders keys by bytes', () => {
    expect([keys.segment('l', 10), keys.segment('l', 9)].sort()).toEqual([keys.segment('l', 9), keys.segment('l', 10)]);
    expect([keys.manifestEntry('l', 100), keys.manifestEntry('l', 20)].sort()).toEqual([keys.manifestEntry('l', 20), keys.manifestEntry('l', 100)]);
  });

  it('builds each log’s keys under its prefix', () => {
    expect(keys.segment('l', 1).startsWith(keys.segments('l'))).toBe(true);
    expect(keys.manifestEntry('l', 1).startsWith(keys.manifest('l'))).toBe(true);
    expect(keys.reader('l', 'r').startsWith(keys.readers('l'))).toBe(true);
    // A log's delete takes its readers with it.
    expect(keys.ofLog('l').prefixes).toContain(keys.readers('l'));
    expect(keys.node('r1').startsWith(keys.nodes())).toBe(true);
  });
});
