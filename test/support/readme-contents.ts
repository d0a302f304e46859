/**
 * The README's table of contents, made from its own headings: `## ` sections
 * and their `### ` subsections, linked by GitHub's anchor rule. A unit test
 * checks the README's block between the contents markers equals it, and
 * `node dist/test/support/readme-contents.js --write` rewrites the block.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const CONTENTS_START = '<!-- contents -->';
export const CONTENTS_END = '<!-- /contents -->';

/** GitHub's heading anchor: lower case, punctuation but `-` and `_` dropped, spaces to `-`. */
export function anchorOf(heading: string): string {
  return heading
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

/** The contents list for `readme`: every heading below the title but its own, outside code blocks. */
export function contentsOf(readme: string): string {
  const lines: string[] = [];
  let inCode = false;
  for (const line of readme.split('\n')) {
    if (line.startsWith('```')) inCode = !inCode;
    const m = !inCode && /^(##|###) (.+)$/.exec(line);
    if (!m || m[2] === 'Contents') continue;
    const indent = m[1] === '###' ? '  ' : '';
    lines.push(`${indent}- [${m[2]}](#${anchorOf(m[2]!)})`);
  }
  return lines.join('\n');
}

/** The block between the markers as the README has it now. */
export function currentContents(readme: string): string | undefined {
  const start = readme.indexOf(CONTENTS_START);
  const end = readme.indexOf(CONTENTS_END);
  if (start < 0 || end < start) return undefined;
  return readme.slice(start + CONTENTS_START.length, end).trim();
}

function rewrite(path: string): void {
  const readme = readFileSync(path, 'utf8');
  const start = readme.indexOf(CONTENTS_START);
  const end = readme.indexOf(CONTENTS_END);
  if (start < 0 || end < start) throw new Error(`${path} has no ${CONTENTS_START} ... ${CONTENTS_END} block`);
  const next = `${readme.slice(0, start + CONTENTS_START.length)}\n${contentsOf(readme)}\n${readme.slice(end)}`;
  writeFileSync(path, next);
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv.includes('--write')) {
  rewrite(fileURLToPath(new URL('../../../README.md', import.meta.url)));
}
