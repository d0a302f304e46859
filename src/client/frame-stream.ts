/**
 * An incremental reader of a frames body (src/frames.ts: u32 big-endian
 * length, then that many bytes) as it arrives in arbitrary chunks, for the
 * streaming tail. Ids are implied: the first frame's id is known (the
 * `tern-from-id` header, else the `from` asked for) and each entry is the
 * next. A frame whose length field is 0xFFFFFFFF carries no data and no id:
 * a keep-alive, skipped.
 */
export const KEEP_ALIVE_LENGTH = 0xffffffff;

export interface Entry {
  id: number;
  data: Buffer;
}

export class FrameStreamParser {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Keep-alive frames seen, for tests and diagnostics. */
  keepAlives = 0;

  constructor(private nextId: number) {}

  /** The id the next entry will get. */
  get next(): number {
    return this.nextId;
  }

  /** Bytes received but not yet a whole frame (a stream that ends with some is cut mid-frame). */
  get partialBytes(): number {
    return this.pendingBytes;
  }

  /** Takes a chunk; returns the whole entries it completes, in order. */
  push(chunk: Buffer): Entry[] {
    if (chunk.length === 0) return [];
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    const buf = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    const out: Entry[] = [];
    let o = 0;
    while (buf.length - o >= 4) {
      const len = buf.readUInt32BE(o);
      if (len === KEEP_ALIVE_LENGTH) {
        this.keepAlives++;
        o += 4;
        continue;
      }
      if (buf.length - o - 4 < len) break;
      // A copy, so an entry the caller keeps does not pin the whole chunk.
      out.push({ id: this.nextId++, data: Buffer.from(buf.subarray(o + 4, o + 4 + len)) });
      o += 4 + len;
    }
    const rest = buf.subarray(o);
    this.pending = rest.length ? [rest] : [];
    this.pendingBytes = rest.length;
    return out;
  }
}
