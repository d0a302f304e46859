import { defineConfig } from 'vitest/config';

// Integration tests spawn etcd and three replica processes each; on a 2-core
// machine running several such clusters at once only makes every test slower
// and flakier, so files run one at a time.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
