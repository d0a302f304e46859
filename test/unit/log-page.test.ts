import { describe, expect, it } from 'vitest';
import { logPage } from '../../src/http/client-api.js';

describe('logPage (GET /v1/logs paging)', () => {
  const names = ['a', 'b', 'bb', 'c', 'd'];

  it('pages from the first name, with next while more follow', () => {
    expect(logPage(names, undefined, 2)).toEqual({ logs: ['a', 'b'], next: 'b' });
    expect(logPage(names, 'b', 2)).toEqual({ logs: ['bb', 'c'], next: 'c' });
    expect(logPage(names, 'c', 2)).toEqual({ logs: ['d'] });
  });

  it('takes any string as after, named log or not', () => {
    expect(logPage(names, 'ba', 10)).toEqual({ logs: ['bb', 'c', 'd'] });
    expect(logPage(names, '', 1)).toEqual({ logs: ['a'], next: 'a' });
    expect(logPage(names, 'z', 10)).toEqual({ logs: [] });
  });

  it('gives no next when the page ends exactly at the last name', () => {
    expect(logPage(names, undefined, 5)).toEqual({ logs: names });
    expect(logPage([], undefined, 5)).toEqual({ logs: [] });
  });

  it('walks every name exactly once, whatever the page size', () => {
    for (let limit = 1; limit <= 6; limit++) {
      const seen: string[] = [];
      for (let after: string | undefined; ; ) {
        const page = logPage(names, after, limit);
        seen.push(...page.logs);
        if (page.next === undefined) break;
        after = page.next;
      }
      expect(seen).toEqual(names);
    }
  });
});
