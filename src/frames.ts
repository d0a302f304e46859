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

/**
 * The keep-alive frame of a streaming tail (README, Client API): the length
 * 0xFFFFFFFF with no data after it. No entry can have that length (entries are
 * at most --max-entry-bytes, far below 4 GiB), so a reader tells it from an
 * entry by its length alone; it carries no id and does not advance the stream.
 */
export const KEEP_ALIVE_LENGTH = 0xffffffff;
export const KEEP_ALIVE_FRAME: Buffer = Buffer.from([0xff, 0xff, 0xff, 0xff]);

/** What a chunk of a frames stream held: the entries completed by it, and keep-alive frames seen. */
export interface FrameStreamChunk {
  entries: Buffer[];
  keepAlives: number;
}

/**
 * Decodes a frames stream (a streaming tail's body) that arrives in chunks cut
 * anywhere: push each chunk, get the entries it completes, in order. Pure: no
 * sockets. Entries are views into the chunks (which must stay unmodified), or
 * into one copy when a frame spans chunks; the chunks of an incomplete frame
 * are held, not joined, until it is complete, so a large entry arriving in
 * many chunks is copied once. `pending` tells the bytes held back; a stream
 * that ends with pending > 0 was cut off mid-frame.
 */
export class FrameStreamDecoder {
  private held: Buffer[] = [];
  private heldBytes = 0;
  /** Bytes the held frame needs in all, its length prefix included; 0 while its prefix is incomplete. */
  private needed = 0;

  constructor(private readonly maxFrameBytes = Infinity) {}

  get pending(): number {
    return this.heldBytes;
  }

  push(chunk: Buffer): FrameStreamChunk {
    let buf = chunk;
    if (this.heldBytes > 0) {
      this.held.push(chunk);
      this.heldBytes += chunk.length;
      if (this.needed > 0 && this.heldBytes < this.needed) return { entries: [], keepAlives: 0 };
      buf = Buffer.concat(this.held, this.heldBytes);
      this.held = [];
      this.heldBytes = 0;
      this.needed = 0;
    }
    const entries: Buffer[] = [];
    let keepAlives = 0;
    let o = 0;
    while (o + 4 <= buf.length) {
      const len = buf.readUInt32BE(o);
      if (len === KEEP_ALIVE_LENGTH) {
        keepAlives++;
        o += 4;
        continue;
      }
      if (len > this.maxFrameBytes) throw new FrameLimitError(`frame of ${len} bytes is over the ${this.maxFrameBytes}-byte entry limit`);
      if (o + 4 + len > buf.length) {
        this.needed = 4 + len;
        break;
      }
      entries.push(buf.subarray(o + 4, o + 4 + len));
      o += 4 + len;
    }
    if (o < buf.length) {
      this.held = [buf.subarray(o)];
      this.heldBytes = buf.length - o;
    }
    return { entries, keepAlives };
  }
}
