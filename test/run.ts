/**
 * `npm test`: one Postgres and one SQS emulator for the whole run, then Node's test runner over
 * every test file.
 *
 * Starting a Postgres costs an initdb and a server start (seconds on a small machine); one per
 * test file made that most of the suite's time. The server started here is shared: each test
 * asks test/helpers/servers.ts for a new database on it, and the few tests that stop or
 * reconfigure a server start their own. With LOGIN_ETL_TEST_POSTGRES_URL already set (a
 * superuser connection string), that server is used and none is started. Likewise the emulator:
 * starting one costs about half a second of CPU, once per run instead of once per file.
 *
 * Prints the suite's wall time last, and exits with the test runner's code.
 */
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { startLocalPostgres, type LocalPostgres } from '../src/embedded/postgres.js';
import { startLocalSqs } from '../src/embedded/sqs.js';
import { SHARED_POSTGRES_DISPOSABLE_VARIABLE, SHARED_POSTGRES_VARIABLE, SHARED_SQS_VARIABLE } from './helpers/servers.js';

/** A test that runs longer than this has hung; the slowest (the leak campaign) takes about 2 min. */
const TEST_TIMEOUT_MS = 8 * 60_000;
/**
 * Test files run at once. Three on two cores: the slowest files mostly wait (an outage, a
 * visibility timeout, a chaos soak's pauses) and leave a core free for a third; measured, three
 * took the suite from 218 to 166 s on a 2-core machine, which the whole suite's CPU (about 290 s,
 * Postgres included) keeps above 145 s however many run.
 */
const TEST_FILES_AT_ONCE = 3;
/** The unit tests run in one process (test/unit-tests.ts); each other file in one of its own. */
const PATTERNS = ['dist/test/unit-tests.js', 'dist/test/integration/**/*.test.js', 'dist/bench/**/*.test.js'];

async function main(): Promise<number> {
  const startedAt = performance.now();
  let postgres: LocalPostgres | undefined;
  // Node's compile cache for the test processes too, where the CLI keeps its own (src/cli.ts):
  // each of them loads the SDK, pg and the code under test again.
  const env: NodeJS.ProcessEnv = { NODE_COMPILE_CACHE: join(tmpdir(), 'node-compile-cache'), ...process.env };
  if (env[SHARED_POSTGRES_VARIABLE] === undefined || env[SHARED_POSTGRES_VARIABLE] === '') {
    postgres = await startLocalPostgres({ auth: 'trust' });
    env[SHARED_POSTGRES_VARIABLE] = postgres.url;
    env[SHARED_POSTGRES_DISPOSABLE_VARIABLE] = '1';
  }
  // The emulator answers from this process, whose event loop has nothing else to do; test files
  // create queues with names of their own on it.
  const sqs = await startLocalSqs();
  env[SHARED_SQS_VARIABLE] = sqs.endpoint;
  const child = spawn(
    process.execPath,
    ['--test', `--test-concurrency=${TEST_FILES_AT_ONCE}`, `--test-timeout=${TEST_TIMEOUT_MS}`, ...process.argv.slice(2), ...PATTERNS],
    { stdio: 'inherit', env },
  );
  // Ctrl-C reaches the runner through the process group; a SIGTERM sent to this process alone is
  // passed on, so the runner ends its test processes before the shared server stops.
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  process.on('SIGTERM', forward);
  process.on('SIGINT', () => undefined);
  const code = await new Promise<number>((resolve) => {
    child.on('exit', (status, signal) => resolve(status ?? (signal === null ? 1 : 128 + 15)));
  });
  await Promise.all([postgres?.stop(), sqs.stop()]);
  const seconds = (performance.now() - startedAt) / 1000;
  process.stdout.write(`test suite wall time: ${seconds.toFixed(1)} s\n`);
  return code;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`could not start the test suite's Postgres: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
