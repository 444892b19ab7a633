import {defineConfig} from 'vitest/config';

// Two projects: fast pure/screen tests run in parallel; lab tests build network
// namespaces with real sshd and iptables, so they run one file at a time.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts', 'test/ui/**/*.test.tsx', 'test/ui/**/*.test.ts'],
          // A limit for hangs, not a speed target (those are in `npm run bench`): the randomized
          // tests take seconds, more on a loaded machine.
          testTimeout: 30_000,
          env: {CI: 'false'},
        },
      },
      {
        test: {
          name: 'lab',
          include: ['test/lab/**/*.test.ts'],
          // Checks (and as root installs) the programs the lab needs before any lab is built.
          globalSetup: ['test/lab/support/global-setup.ts'],
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 180_000,
          env: {CI: 'false'},
        },
      },
    ],
  },
});
