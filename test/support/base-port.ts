/** A free base port for `tern cluster --base-port`, for tests that start the CLI's own cluster. */
import { createServer } from 'node:net';

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** A base port whose derived ports (base+1..3, base+101..103, base+379, base+380, base+390) are all free. */
export async function freeBasePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 30_000);
    const ports = [1, 2, 3, 101, 102, 103, 379, 380, 390].map((d) => base + d);
    if ((await Promise.all(ports.map(canBind))).every(Boolean)) return base;
  }
  throw new Error('no free base port');
}
