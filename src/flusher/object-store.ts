/**
 * The object store as the flusher and readers see it, over any S3-compatible
 * service through @aws-sdk/client-s3 (AWS S3, MinIO, s3rver). Correctness
 * never rests on conditional writes (s3rver ignores them): keys carry the
 * epoch, and the epoch-compared manifest in etcd decides what counts.
 */
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client, type PutObjectCommandInput, type PutObjectCommandOutput } from '@aws-sdk/client-s3';
import type { BuildMiddleware } from '@smithy/types';

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface ObjectStoreOptions {
  endpoint: string;
  region: string;
  bucket: string;
  /** Undefined: the AWS SDK's default credential chain (AWS_* variables, web identity, instance role). */
  credentials: S3Credentials | undefined;
  forcePathStyle: boolean;
  /** A request unanswered this long fails and is retried by the caller. */
  timeoutMs: number;
  /** Told of every failed request, by operation (metrics). */
  onError?: (operation: 'put' | 'get' | 'list' | 'delete') => void;
}

export interface StoredObject {
  key: string;
  lastModified: Date;
  size: number;
}

export class ObjectStore {
  private readonly s3: S3Client;

  constructor(private readonly options: ObjectStoreOptions) {
    this.s3 = new S3Client({
      endpoint: options.endpoint,
      region: options.region,
      forcePathStyle: options.forcePathStyle,
      // The flusher retries with its own backoff and keeps entries in memory meanwhile.
      maxAttempts: 1,
      // Every entry carries its own CRC-32C (object-format.ts), checked on every read: a second,
      // whole-object checksum computed in JavaScript on the leader's event loop buys nothing.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      // No `Expect: 100-continue`: the SDK sends it on bodies of 2 MiB and more (every default
      // 4 MiB object), and @smithy/node-http-handler then sends each upload on a fresh TCP
      // connection without keep-alive and waits a round trip for the store's 100 before the
      // body. What it saves, a refused body not sent, costs a 4 MiB upload on a path that is an
      // error anyway. Measured on 2026-12-03 (bench/results/2026-12-03-flush.md): on its own, with
      // 3 uploads in flight, within the noise; with 4 in flight (flusher.ts), faster. A keep-alive
      // connection the store closed meanwhile fails one upload, which the flusher retries.
      expectContinueHeader: false,
      requestHandler: { requestTimeout: options.timeoutMs, connectionTimeout: options.timeoutMs },
      ...(options.credentials ? { credentials: options.credentials } : {}),
    });
  }

  put(key: string, body: Buffer): Promise<void> {
    return this.observed('put', async () => {
      const command = new PutObjectCommand({ Bucket: this.options.bucket, Key: key, Body: body, ContentLength: body.length });
      command.middlewareStack.add(unsignedPayload, { step: 'build', name: 'ternUnsignedPayload' });
      await this.s3.send(command);
    });
  }

  get(key: string, range?: { start: number; end: number }): Promise<Buffer> {
    return this.observed('get', async () => {
      const res = await this.s3.send(
        new GetObjectCommand({ Bucket: this.options.bucket, Key: key, ...(range ? { Range: `bytes=${range.start}-${range.end - 1}` } : {}) }),
      );
      return Buffer.from(await res.Body!.transformToByteArray());
    });
  }

  delete(key: string): Promise<void> {
    return this.observed('delete', async () => {
      await this.s3.send(new DeleteObjectCommand({ Bucket: this.options.bucket, Key: key }));
    });
  }

  list(prefix: string): Promise<StoredObject[]> {
    return this.observed('list', async () => {
      const out: StoredObject[] = [];
      let token: string | undefined;
      do {
        const res = await this.s3.send(new ListObjectsV2Command({ Bucket: this.options.bucket, Prefix: prefix, ContinuationToken: token }));
        for (const o of res.Contents ?? []) out.push({ key: o.Key!, lastModified: o.LastModified ?? new Date(0), size: o.Size ?? 0 });
        token = res.IsTruncated ? res.NextContinuationToken : undefined;
      } while (token);
      return out;
    });
  }

  private async observed<T>(operation: 'put' | 'get' | 'list' | 'delete', request: () => Promise<T>): Promise<T> {
    try {
      return await request();
    } catch (err) {
      this.options.onError?.(operation);
      throw err;
    }
  }

  close(): void {
    this.s3.destroy();
  }
}

/**
 * Signs an upload without hashing its body (`x-amz-content-sha256:
 * UNSIGNED-PAYLOAD`, which S3, MinIO and s3rver accept for PutObject; the
 * signer uses a hash already in the headers). SHA-256 over every flushed byte
 * cost the leader's event loop about 4 % of its time at 64 KiB entries, and
 * bought nothing: every entry carries its own CRC-32C, checked on every read,
 * and TLS protects the bytes in flight where the store is remote.
 */
const unsignedPayload: BuildMiddleware<PutObjectCommandInput, PutObjectCommandOutput> = (next) => (args) => {
  const request = args.request as { headers?: Record<string, string> };
  if (request.headers) request.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
  return next(args);
};
