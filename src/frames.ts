/**
 * Tern frames: the compact binary body for batches of entries, used by
 * clients for batch appends and for binary reads (content type
 * `application/vnd.tern.frames`): a sequence of frames, each a u32 big-endian
 * byte length followed by that many bytes. Nothing else: no header, no
 * padding; an empty body is zero frames.
 */
export const FRAMES_CONTENT_TYPE = 'application/vnd.tern.frames';
/**
 * Frames that carry each entry's time, for readers that ask for them
 * (`Accept`): per entry a u32 big-endian length of the data, an f64
 * big-endian time (ms since the Unix epoch), then the data. The keep-alive
 * frame stays its bare length. Plain frames stay the default, so readers that
 * predate times read on unchanged.
 */
export const TIMED_FRAMES_CONTENT_TYPE = 'application/vnd.tern.timed-frames';
/** Bytes of a timed frame before its data. */
const TIMED_HEADER_BYTES = 4 + 8;

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

/** Encodes entries and their times as timed frames: the chunks to write in order (entries referenced, not copied). */
export function encodeTimedFrames(entries: readonly Buffer[], times: readonly number[]): Buffer[] {
  const chunks: Buffer[] = [];
  for (let i = 0; i < entries.length; i++) {
    const head = Buffer.allocUnsafe(TIMED_HEADER_BYTES);
    head.writeUInt32BE(entries[i]!.length, 0);
    head.writeDoubleBE(times[i]!, 4);
    chunks.push(head, entries[i]!);
  }
  return chunks;
}

/** Splits a timed-frames body into entries (views into `body`) and their times. */
export function decodeTimedFrames(body: Buffer): { entries: Buffer[]; times: number[] } {
  const decoder = new FrameStreamDecoder(Infinity, true);
  const { entries, times } = decoder.push(body);
  if (decoder.pending > 0) throw new FrameError(`timed frames: ${decoder.pending} bytes of a frame cut short`);
  return { entries, times: times! };
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
  /** The entries' times, when the stream carries timed frames. */
  times?: number[];
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

  /** `timed`: the stream carries timed frames (TIMED_FRAMES_CONTENT_TYPE). */
  constructor(
    private readonly maxFrameBytes = Infinity,
    private readonly timed = false,
  ) {}

  get pending(): number {
    return this.heldBytes;
  }

  push(chunk: Buffer): FrameStreamChunk {
    let buf = chunk;
    if (this.heldBytes > 0) {
      this.held.push(chunk);
      this.heldBytes += chunk.length;
      if (this.needed > 0 && this.heldBytes < this.needed) return this.timed ? { entries: [], times: [], keepAlives: 0 } : { entries: [], keepAlives: 0 };
      buf = Buffer.concat(this.held, this.heldBytes);
      this.held = [];
      this.heldBytes = 0;
      this.needed = 0;
    }
    const entries: Buffer[] = [];
    const times: number[] | undefined = this.timed ? [] : undefined;
    const header = this.timed ? TIMED_HEADER_BYTES : 4;
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
      if (o + header + len > buf.length) {
        this.needed = header + len;
        break;
      }
      if (times) times.push(buf.readDoubleBE(o + 4));
      entries.push(buf.subarray(o + header, o + header + len));
      o += header + len;
    }
    if (o < buf.length) {
      this.held = [buf.subarray(o)];
      this.heldBytes = buf.length - o;
    }
    return times ? { entries, times, keepAlives } : { entries, keepAlives };
  }
}
