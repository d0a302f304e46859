import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { anchorOf, contentsOf, currentContents } from '../support/readme-contents.js';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

describe('README contents', () => {
  it('lists every section and subsection, in order (rewrite: npm run build && node dist/test/support/readme-contents.js --write)', () => {
    expect(currentContents(readme)).toBe(contentsOf(readme));
  });

  it('makes anchors as GitHub does', () => {
    expect(anchorOf('Quickstart: the first five minutes')).toBe('quickstart-the-first-five-minutes');
    expect(anchorOf('Client API (v1)')).toBe('client-api-v1');
    expect(anchorOf('Side by side: Tern, NATS JetStream and plain HTTP')).toBe('side-by-side-tern-nats-jetstream-and-plain-http');
  });

  it('ignores headings inside code blocks', () => {
    expect(contentsOf('## A\n```\n## not a heading\n```\n### B')).toBe('- [A](#a)\n  - [B](#b)');
  });
});
