/**
 * Where the benchmarks' s3rver keeps its files: on tmpfs (/dev/shm) when the
 * machine has one. In production the object store is a remote service (S3,
 * or MinIO on machines of its own), so its disk is not the replicas'. On the
 * benchmark machine, s3rver's file writes would put page-cache writeback and
 * ext4 journaling for every flushed byte on the two cores Tern shares with
 * NATS, which is not part of Tern (on the 2-core VM: 6-8 % of appends/s at
 * 64 KiB x 16, in alternated runs). s3rver's own work (HTTP, an MD5 of every
 * object, the file writes themselves) still runs there and is counted in the
 * server CPU column. The files stay until the run ends (a default
 * bench:compare stores about 9 GB), so tmpfs is used only with room for
 * `minFreeBytes`; otherwise they go to the temp directory, and the report
 * says so.
 */
import { mkdtempSync, readFileSync, rmSync, statfsSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';

export interface ObjectStoreDir {
  dir: string;
  /** For the report: "tmpfs (/dev/shm)" or "disk (/tmp)". */
  where: string;
  remove(): void;
}

export function objectStoreDir(prefix: string, minFreeBytes: number): ObjectStoreDir {
  const parent = isTmpfs('/dev/shm') && freeBytes('/dev/shm') >= minFreeBytes ? '/dev/shm' : os.tmpdir();
  const dir = mkdtempSync(join(parent, prefix));
  return {
    dir,
    where: parent === '/dev/shm' ? 'tmpfs (/dev/shm)' : `disk (${parent})`,
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

function isTmpfs(mountPoint: string): boolean {
  try {
    return readFileSync('/proc/mounts', 'utf8')
      .split('\n')
      .some((line) => {
        const [, mount, type] = line.split(' ');
        return mount === mountPoint && type === 'tmpfs';
      });
  } catch {
    return false;
  }
}

function freeBytes(dir: string): number {
  const { bavail, bsize } = statfsSync(dir);
  return bavail * bsize;
}
