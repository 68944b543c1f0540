import { defineConfig } from 'vitest/config';

// Where the suite's time goes (2 cores): one file at a time, vitest's default there (cores - 1), left a core idle
// while most files wait on sockets, timers and child processes, and paid ~0.8 s of fork start-up per file.
// So the suite runs in two groups, one after the other:
// - `parallel`: the short files (under ~2.5 s alone), two at a time, in two worker threads that are reused;
// - `serial`: files that are long, CPU-heavy, or sensitive to a busy machine (heap, RSS and fd bounds, fd limits,
//   network namespaces named after process.pid, timing against the proxy's timeouts), one at a time in a forked
//   process of its own, as before. In vitest 3 all projects share one pool per pool kind, sized from the root
//   options: hence threads for one group and forks for the other, each with its own size.
// A new test file lands in `parallel`; put it in SERIAL if it takes seconds, loads the CPU, measures the process
// it runs in, or needs the machine to itself.

const SERIAL = [
  'test/abuse/**/*.test.ts',
  'test/intercept/**/*.test.ts',
  'test/inject/**/*.test.ts',
  'test/fuzz/**/*.test.ts',
  'src/h2/session-abuse.test.ts',
  'src/h2/session-fuzz.test.ts',
  'src/process/idle-memory.test.ts',
  'test/ca/renewal.test.ts',
  'test/e2e/access-log-bound.test.ts',
  'test/e2e/ca-restart.test.ts',
  'test/e2e/cert-rotation.test.ts',
  'test/e2e/cli.test.ts',
  'test/e2e/concurrency.test.ts',
  'test/e2e/ctl-proxies.test.ts',
  'test/e2e/ctl.test.ts',
  'test/e2e/demo-restart.test.ts',
  'test/e2e/demo.test.ts',
  'test/e2e/h2-pool.test.ts',
  'test/e2e/h1-idle-timers.test.ts',
  'test/e2e/health-checks.test.ts',
  'test/e2e/http1-codec.test.ts',
  'test/e2e/http1-raw-body.test.ts',
  'test/e2e/mtls-resumption.test.ts',
  'test/e2e/peer-keepalive.test.ts',
  'test/e2e/request-timeout.test.ts',
  'test/e2e/resilience.test.ts',
  'test/e2e/retries.test.ts',
  'test/e2e/status-port.test.ts',
  'test/e2e/tcp-backpressure.test.ts',
  'test/e2e/xds-tls.test.ts',
  'test/examples/dashboard.test.ts',
  'test/xds/control-cli.test.ts',
  'test/xds/control-replicas.test.ts',
  'test/xds/control-server.test.ts',
];

const INCLUDE = ['test/**/*.test.ts', 'src/**/*.test.ts', 'xds/**/*.test.ts'];
const EXCLUDE = ['dist/**', 'node_modules/**'];

export default defineConfig({
  test: {
    testTimeout: 20_000,
    hookTimeout: 20_000,
    poolOptions: {
      // isolate: false: a thread runs its files one after another in one module graph, so the src modules a file
      // imports are loaded once per thread, not once per file (that loading was most of the time between files).
      // Test files themselves are still evaluated afresh. The price: module-level state in src is shared between
      // the files of one thread; a file that changes process-wide state (fake timers, env, spies, a library that
      // reads its setup once, as grpc-js-xds does its bootstrap) must undo it in afterEach/afterAll or go in SERIAL.
      threads: { maxThreads: 2, minThreads: 1, isolate: false },
      forks: { maxForks: 1, minForks: 1 },
    },
    projects: [
      {
        extends: true,
        test: { name: 'parallel', include: INCLUDE, exclude: [...EXCLUDE, ...SERIAL], pool: 'threads', sequence: { groupOrder: 0 } },
      },
      {
        extends: true,
        test: { name: 'serial', include: SERIAL, exclude: EXCLUDE, pool: 'forks', sequence: { groupOrder: 1 } },
      },
    ],
  },
});
