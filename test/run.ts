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
 * The test runner runs here too (node:test's `run`), four files at once, the longest first; its
 * report is the `spec` reporter's, as `node --test` prints it. Prints the suite's wall time last,
 * and exits 1 if a test failed.
 */
import { readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pipeline } from 'node:stream/promises';
import { run } from 'node:test';
import { spec } from 'node:test/reporters';
import { fileURLToPath } from 'node:url';
import { createPostgresTemplate, POSTGRES_TEMPLATE_VARIABLE, startLocalPostgres, templateFrom, type LocalPostgres } from '../src/embedded/postgres.js';
import { startLocalSqs } from '../src/embedded/sqs.js';
import { SHARED_POSTGRES_DISPOSABLE_VARIABLE, SHARED_POSTGRES_VARIABLE, SHARED_SQS_VARIABLE } from './helpers/servers.js';

/** A test that runs longer than this has hung; the slowest (the leak campaign) takes about 1 min. */
const TEST_TIMEOUT_MS = 8 * 60_000;
/**
 * Test files run at once. Four on two cores: most of the long files mostly wait (an outage, a
 * visibility timeout, a chaos soak's pauses, a slow trigger) and leave the cores to the others.
 */
const TEST_FILES_AT_ONCE = 4;
/**
 * Files that take longest from start to end, run first, so that none of them starts last and
 * runs alone at the end (longest first; the others follow by name). Their order only schedules:
 * each file starts its own work and needs no other to have run.
 */
const LONGEST_FIRST = [
  'bench/chaos.test.js',
  'test/integration/outages.test.js',
  'test/integration/leak-campaign.test.js',
  'test/integration/queue-contract.test.js',
  'test/integration/processes.test.js',
  'bench/smoke.test.js',
  'test/unit-tests.js',
  'test/integration/pii.test.js',
  'test/integration/cli.test.js',
  'test/integration/pipeline-faults.test.js',
  'test/integration/failure-policy.test.js',
  'test/integration/crash.test.js',
];

/** Every test file under dist/: the unit tests as one (test/unit-tests.ts), each other file on its own. */
async function testFiles(dist: string): Promise<string[]> {
  const found = ['test/unit-tests.js'];
  for (const folder of ['test/integration', 'bench']) {
    for (const file of await readdir(join(dist, folder), { recursive: true })) if (file.endsWith('.test.js')) found.push(`${folder}/${file}`);
  }
  const rank = (file: string) => {
    const index = LONGEST_FIRST.indexOf(file);
    return index === -1 ? LONGEST_FIRST.length : index;
  };
  return found.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b)).map((file) => join(dist, file));
}

async function main(): Promise<number> {
  const startedAt = performance.now();
  const dist = fileURLToPath(new URL('..', import.meta.url));
  const files = await testFiles(dist);
  let postgres: LocalPostgres | undefined;
  // What the test processes inherit. Node's compile cache for them too, where the CLI keeps its
  // own (src/cli.ts): each of them loads the SDK, pg and the code under test again.
  process.env.NODE_COMPILE_CACHE ??= join(tmpdir(), 'node-compile-cache');
  // One initdb for the run: every Postgres it starts (this one, a test file's own, the bench's and
  // the chaos soak's) copies the template instead.
  const made = templateFrom(process.env) === undefined ? await createPostgresTemplate() : undefined;
  if (made !== undefined) process.env[POSTGRES_TEMPLATE_VARIABLE] = made.dir;
  const template = templateFrom(process.env);
  if (process.env[SHARED_POSTGRES_VARIABLE] === undefined || process.env[SHARED_POSTGRES_VARIABLE] === '') {
    postgres = await startLocalPostgres({ auth: 'trust', template });
    process.env[SHARED_POSTGRES_VARIABLE] = postgres.url;
    process.env[SHARED_POSTGRES_DISPOSABLE_VARIABLE] = '1';
  }
  // The emulator answers from this process; test files create queues with names of their own on it.
  const sqs = await startLocalSqs();
  process.env[SHARED_SQS_VARIABLE] = sqs.endpoint;

  // Ctrl-C or a SIGTERM ends the test processes before the shared servers stop.
  const stop = new AbortController();
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => stop.abort());
  let failed = false;
  const stream = run({ files, concurrency: TEST_FILES_AT_ONCE, timeout: TEST_TIMEOUT_MS, signal: stop.signal });
  // As `node --test` counts: a failing test marked todo does not fail the run.
  stream.on('test:fail', (event: { todo?: unknown }) => {
    if (event.todo === undefined || event.todo === false) failed = true;
  });
  await pipeline(stream.compose(spec), process.stdout, { end: false });
  await Promise.all([postgres?.stop(), sqs.stop()]);
  await made?.remove();
  const seconds = (performance.now() - startedAt) / 1000;
  process.stdout.write(`test suite wall time: ${seconds.toFixed(1)} s\n`);
  return failed || stop.signal.aborted ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`could not run the test suite: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
