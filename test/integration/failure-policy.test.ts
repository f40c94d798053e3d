/**
 * The failure policy and the drain, end to end: a revoked privilege on the real Postgres, dead
 * letters larger than one SendMessageBatch on the SQS emulator, and `run` against an SQS
 * endpoint nobody listens on. Each reproduces a failure seen on the code before the policy.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import pg from 'pg';
import { pino } from 'pino';
import { freePort } from '../../src/embedded/ports.js';
import { Health } from '../../src/observability/health.js';
import { Pipeline, type PipelineDeps, type PipelineOptions } from '../../src/pipeline.js';
import { PgSink } from '../../src/sink/postgres.js';
import { DEAD_LETTER_MESSAGE_ID_ATTRIBUTE, type DeadLetterQueue } from '../../src/source/queue.js';
import { SqsDeadLetterQueue } from '../../src/source/sqs.js';
import { generateKeyText } from '../../src/transform/key.js';
import { HmacMasker } from '../../src/transform/mask.js';
import { logLines, startCli, summaryOf } from '../helpers/cli.js';
import { drainPipeline, sinkWith } from '../helpers/drain.js';
import { FakeDeadLetterQueue, FakeQueue } from '../helpers/fake-queue.js';
import { loginBody, silentLog } from '../helpers/fixtures.js';
import { migrateDatabase, query, sendBodies, testKey, useServers } from '../helpers/servers.js';

const servers = useServers();

const OPTIONS: PipelineOptions = {
  receiveConcurrency: 1,
  waitTimeSeconds: 1,
  drain: true,
  visibilityTimeoutSeconds: 30,
  retryBaseDelayMs: 50,
  retryMaxDelayMs: 400,
};

function pipeline(deps: Omit<PipelineDeps, 'masker' | 'log'> & Partial<Pick<PipelineDeps, 'log'>>, options: Partial<PipelineOptions> = {}): Pipeline {
  return new Pipeline({ masker: new HmacMasker(testKey()), log: silentLog, ...deps }, { ...OPTIONS, ...options });
}

const logins = (prefix: string, count: number) => Array.from({ length: count }, (_, i) => loginBody({ user_id: `${prefix}-${i}` }));

async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await sleep(10);
  }
}

let roles = 0;

describe('the failure policy against real servers', () => {
  test('INSERT on user_logins revoked: held, unready, no split, poison or forward, no hot loop; after GRANT each row is written once', { timeout: 60_000 }, async () => {
    const databaseUrl = await servers.database();
    await migrateDatabase(databaseUrl);
    // A role of its own: a superuser ignores privileges.
    const role = `etl_writer_${process.pid}_${(roles += 1)}`;
    await query(databaseUrl, `CREATE ROLE ${role} LOGIN PASSWORD 'writer'`);
    await query(databaseUrl, `GRANT USAGE ON SCHEMA login_etl TO ${role}`);
    await query(databaseUrl, `GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA login_etl TO ${role}`);
    await query(databaseUrl, `GRANT SELECT, INSERT ON user_logins TO ${role}`);
    await query(databaseUrl, `REVOKE INSERT ON user_logins FROM ${role}`);
    const url = new URL(databaseUrl);
    url.username = role;
    url.password = 'writer';
    const pool = new pg.Pool({ connectionString: url.toString(), max: 2 });
    try {
      const real = new PgSink(pool);
      const writes: number[] = [];
      const sink = sinkWith(async (outcomes) => {
        writes.push(performance.now());
        return await real.write(outcomes);
      }, real);
      const queue = new FakeQueue();
      queue.send(logins('revoked', 8));
      const deadLetters = new FakeDeadLetterQueue();
      const health = new Health();
      const lines: Record<string, unknown>[] = [];
      const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
      const p = pipeline({ queue, sink, deadLetters, health, log });
      const run = drainPipeline(p, 50_000);

      await until(() => writes.length > 0, 'the first write is tried');
      const windowStart = performance.now();
      await sleep(3_000);
      const inWindow = writes.filter((at) => at >= windowStart).length;

      assert.ok(inWindow <= 30, `${inWindow} writes in 3 s: the sink is not retried in a hot loop`);
      assert.equal(deadLetters.calls.length, 0, 'nothing forwarded');
      assert.deepEqual([p.stats.poisoned, p.stats.rejected, p.stats.released, p.stats.written], [0, 0, 0, 0]);
      assert.deepEqual(new Set(queue.receiveCounts().values()), new Set([1]), 'held, not handed back and received again');
      assert.equal(health.ready, false);
      assert.match(health.snapshot().errors.postgres ?? '', /^broken: .*permission denied for table user_logins \(SQLSTATE 42501\)/);
      const [stored] = await query<{ n: number }>(databaseUrl, 'SELECT count(*)::int AS n FROM login_etl.rejected_messages');
      assert.equal(stored?.n, 0, 'no rejection: the rows are not at fault');
      const held = lines.filter((l) => (l.level as number) >= 40 && l.dependency === 'postgres');
      assert.equal(held.length, 1, `logged once, not once per attempt: ${JSON.stringify(held)}`);
      assert.equal(held[0]?.kind, 'broken');

      await query(databaseUrl, `GRANT INSERT ON user_logins TO ${role}`);
      const stats = await run;

      assert.deepEqual([stats.written, stats.rejected, stats.poisoned, stats.deadLettered, stats.released], [8, 0, 0, 0, 0]);
      const rows = await query<{ user_id: string; n: number }>(databaseUrl, 'SELECT user_id, count(*)::int AS n FROM user_logins GROUP BY user_id');
      assert.deepEqual(new Map(rows.map((r) => [r.user_id, r.n])), new Map(Array.from({ length: 8 }, (_, i) => [`revoked-${i}`, 1])));
      assert.deepEqual(deadLetters.letters, [], 'nothing reached the dead-letter queue');
      assert.equal(health.ready, true);
      assert.ok(lines.some((l) => l.msg === 'Postgres works again'));
      assert.deepEqual(queue.remaining(), []);
    } finally {
      await pool.end();
    }
  });

  test('dead letters are sent in requests of at most 1 MiB: two rejected 600,000-byte bodies reach the dead-letter queue', { timeout: 60_000 }, async (t) => {
    const { databaseUrl, sink } = await servers.migratedDatabase(t, { max: 2 });
    const deadLetterUrl = await servers.queue();
    const sqsDeadLetters = new SqsDeadLetterQueue(servers.sqsClient, deadLetterUrl);
    let forwards = 0;
    const deadLetters: DeadLetterQueue = {
      forward: async (letters) => {
        forwards += 1;
        return await sqsDeadLetters.forward(letters);
      },
    };
    const queue = new FakeQueue();
    const bodies = ['x'.repeat(600_000), 'y'.repeat(600_000)];
    const ids = queue.send(bodies);

    const stats = await drainPipeline(pipeline({ queue, sink, deadLetters }), 20_000);

    assert.deepEqual([stats.rejected, stats.deadLettered, stats.writeFailures, stats.released], [2, 2, 0, 0]);
    assert.equal(forwards, 1, 'one forward, split into two requests');
    const received: { id: string | undefined; bytes: number }[] = [];
    for (let i = 0; i < 5 && received.length < 2; i += 1) {
      const { Messages } = await servers.sqsClient.send(
        new ReceiveMessageCommand({ QueueUrl: deadLetterUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageAttributeNames: ['All'] }),
      );
      for (const m of Messages ?? []) received.push({ id: m.MessageAttributes?.[DEAD_LETTER_MESSAGE_ID_ATTRIBUTE]?.StringValue, bytes: m.Body?.length ?? 0 });
    }
    assert.deepEqual(
      received.sort((a, b) => (a.id ?? '').localeCompare(b.id ?? '')),
      [...ids].sort().map((id) => ({ id, bytes: 600_000 })),
    );
    const rows = await query<{ forwarded: boolean }>(databaseUrl, 'SELECT forwarded_at IS NOT NULL AS forwarded FROM login_etl.rejected_messages');
    assert.deepEqual(rows, [{ forwarded: true }, { forwarded: true }]);
    assert.deepEqual(queue.remaining(), []);
  });
});

describe('run and its drain, from the command line', () => {
  const key = generateKeyText();
  const aws = { AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test', AWS_REGION: 'us-east-1' };

  test('run --drain against an SQS endpoint nobody listens on exits 1 naming SQS after the unreachable timeout', { timeout: 60_000 }, async () => {
    const databaseUrl = await servers.database();
    const closed = await freePort();
    const started = performance.now();
    const run = startCli(['run', '--drain'], {
      ...aws,
      SQS_QUEUE_URL: `http://127.0.0.1:${closed}/000000000000/nowhere`,
      AWS_ENDPOINT_URL_SQS: `http://127.0.0.1:${closed}`,
      DATABASE_URL: databaseUrl,
      PII_KEY: key,
      LOGIN_ETL_UNREACHABLE_TIMEOUT_SECONDS: '2',
    });
    const kill = setTimeout(() => run.child.kill('SIGKILL'), 25_000);
    const result = await run.exited;
    clearTimeout(kill);
    const elapsedMs = performance.now() - started;

    assert.equal(result.code, 1, `exit ${result.code} (${result.signal}); stderr: ${result.stderr}`);
    assert.match(result.stderr, /^login-etl: SQS could not be reached for \d+ s \(--unreachable-timeout-seconds\): .*ECONNREFUSED/m);
    assert.ok(elapsedMs < 15_000, `exited after ${Math.round(elapsedMs)} ms`);
    const lines = logLines(result.stdout);
    assert.equal(lines.filter((l) => l.msg === 'receive failed; backing off').length, 1, 'the outage is logged when it starts, not every attempt');
    assert.ok(lines.filter((l) => l.msg === 'could not read the queue depth').length <= 1);
  });

  test('run without --drain keeps trying an unreachable SQS past that timeout, says why on /readyz, and stops cleanly', { timeout: 60_000 }, async () => {
    const databaseUrl = await servers.database();
    const closed = await freePort();
    const port = await freePort();
    const run = startCli(['run'], {
      ...aws,
      SQS_QUEUE_URL: `http://127.0.0.1:${closed}/000000000000/nowhere`,
      AWS_ENDPOINT_URL_SQS: `http://127.0.0.1:${closed}`,
      DATABASE_URL: databaseUrl,
      PII_KEY: key,
      LOGIN_ETL_UNREACHABLE_TIMEOUT_SECONDS: '1',
      LOGIN_ETL_HTTP_PORT: String(port),
      LOGIN_ETL_HTTP_HOST: '127.0.0.1',
    });
    try {
      await run.waitForLog('receive failed; backing off');
      await sleep(2_500);
      assert.equal(run.child.exitCode, null, 'still running');
      const response = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(2_000) });
      const body = (await response.json()) as { ready: boolean; sqs: boolean; errors: { sqs?: string } };
      assert.equal(response.status, 503);
      assert.deepEqual([body.ready, body.sqs], [false, false]);
      assert.match(body.errors.sqs ?? '', /ECONNREFUSED/);
    } finally {
      run.child.kill('SIGTERM');
    }
    const result = await run.exited;
    assert.equal(result.code, 0, result.stderr);
  });

  test('run --drain exits 0 within 200 ms of its last commit, with the default 20 s long poll', { timeout: 60_000 }, async (t) => {
    const databaseUrl = await servers.database();
    const queueUrl = await servers.queue();
    await sendBodies(servers.sqsClient, queueUrl, logins('quick', 45));
    const run = startCli(['run', '--drain', '--receive-concurrency', '2'], {
      ...aws,
      SQS_QUEUE_URL: queueUrl,
      AWS_ENDPOINT_URL_SQS: servers.sqs.endpoint,
      DATABASE_URL: databaseUrl,
      PII_KEY: key,
    });
    const result = await run.exited;
    const exitedAtMs = Date.now();

    assert.equal(result.code, 0, result.stderr);
    assert.equal(summaryOf(result.stdout).written, 45);
    const lines = logLines(result.stdout);
    const at = (line: Record<string, unknown> | undefined) => Date.parse(String(line?.time));
    const lastCommitMs = Math.max(...lines.filter((l) => l.msg === 'batch committed').map(at));
    const stoppedMs = at(lines.find((l) => l.msg === 'pipeline stopped'));
    t.diagnostic(`stopped ${stoppedMs - lastCommitMs} ms and exited ${exitedAtMs - lastCommitMs} ms after the last commit`);
    assert.ok(stoppedMs - lastCommitMs < 200, `the pipeline stopped ${stoppedMs - lastCommitMs} ms after its last commit`);
    assert.ok(exitedAtMs - lastCommitMs < 1_000, `the process exited ${exitedAtMs - lastCommitMs} ms after its last commit`);
  });
});
