/**
 * Tern frames: the compact binary body for batches of entries, used by
 * clients for batch appends and for binary reads (content type
 * `application/vnd.tern.frames`): a sequence of frames, each a u32 big-endian
 * byte length followed by that many bytes. Nothing else: no header, no
 * padding; an empty body is zero frames.
 */
export const FRAMES_CONTENT_TYPE = 'application/vnd.tern.frames';

export class FrameError extends Error {}
/** A well-formed body over a limit: a frame too big, or too many frames. */
export class FrameLimitError extends FrameError {}

/**
 * Splits a frames body into entries; each entry is a view into `body` (no
 * copy). The frame count is checked as it goes, so a body of millions of
 * empty frames is refused before it costs millions of views.
 */
export function decodeFrames(body: Buffer, maxFrameBytes = Infinity, maxFrames = Infinity): Buffer[] {
  const out: Buffer[] = [];
  let o = 0;
  while (o < body.length) {
    if (o + 4 > body.length) throw new FrameError(`truncated frame header at byte ${o}`);
    if (out.length >= maxFrames) throw new FrameLimitError(`more than ${maxFrames} frames: over the entry count limit`);
    const len = body.readUInt32BE(o);
    o += 4;
    if (len > maxFrameBytes) throw new FrameLimitError(`frame of ${len} bytes at byte ${o - 4} is over the ${maxFrameBytes}-byte entry limit`);
    if (o + len > body.length) throw new FrameError(`frame at byte ${o - 4} claims ${len} bytes, only ${body.length - o} remain`);
    out.push(body.subarray(o, o + len));
    o += len;
  }
  return out;
}

/** Encodes entries as frames: the chunks to write in order (entries are referenced, not copied). */
export function encodeFrames(entries: readonly Buffer[]): Buffer[] {
  const chunks: Buffer[] = [];
  for (const e of entries) {
    const len = Buffer.allocUnsafe(4);
    len.writeUInt32BE(e.length, 0);
    chunks.push(len, e);
  }
  return chunks;
}
