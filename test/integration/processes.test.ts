/**
 * Slow writes, graceful stops, several processes, and rows Postgres refuses: each ends exact.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import pg from 'pg';
import { Pipeline } from '../../src/pipeline.js';
import { migrate } from '../../src/sink/migrate.js';
import { PgSink } from '../../src/sink/postgres.js';
import { createSqsClient, SqsQueue } from '../../src/source/sqs.js';
import { generateKeyText } from '../../src/transform/key.js';
import { HmacMasker } from '../../src/transform/mask.js';
import { startCli, summaryOf } from '../helpers/cli.js';
import { drainPipeline } from '../helpers/drain.js';
import { loginBody, silentLog } from '../helpers/fixtures.js';
import { endState, exactEndState, loadedQueue } from '../helpers/load.js';
import { migrateDatabase, query, queueDepth, sendBodies, TEST_CREDENTIALS, testKey, useServers } from '../helpers/servers.js';

const servers = useServers();

function runEnv(queueUrl: string, databaseUrl: string, key: string) {
  return { SQS_QUEUE_URL: queueUrl, AWS_ENDPOINT_URL_SQS: servers.sqs.endpoint, DATABASE_URL: databaseUrl, PII_KEY: key };
}

describe('processes', () => {
  test('writes slower than the visibility timeout: heartbeats keep every message from a second delivery', { timeout: 120_000 }, async () => {
    const { queueUrl, valid, invalid } = await loadedQueue(servers, 40, 91, { VisibilityTimeout: '1' });
    const databaseUrl = await servers.database();
    await migrateDatabase(databaseUrl);
    // A real slow database: every insert into user_logins takes 2.5 s, 2.5 times the timeout.
    await query(
      databaseUrl,
      `CREATE FUNCTION slow_down() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(2.5); RETURN NULL; END $$;
       CREATE TRIGGER slow_down AFTER INSERT ON user_logins FOR EACH STATEMENT EXECUTE FUNCTION slow_down();`,
    );

    const result = await startCli(['run', '--drain', '--wait-time-seconds', '1', '--receive-concurrency', '4'], runEnv(queueUrl, databaseUrl, generateKeyText())).exited;

    assert.equal(result.code, 0, result.stderr);
    const summary = summaryOf(result.stdout);
    assert.equal(summary.received, valid + invalid, 'a message was delivered twice');
    assert.equal(summary.duplicates, 0);
    assert.ok((summary.visibilityExtensions ?? 0) > 0);
    assert.deepEqual(await endState(databaseUrl), exactEndState(valid, invalid));
  });

  test('SIGTERM mid-run exits 0 within the shutdown timeout plus 2 s; a second run finishes exact', { timeout: 120_000 }, async () => {
    const { queueUrl, valid, invalid } = await loadedQueue(servers, 5_000, 92, { VisibilityTimeout: '30' });
    const databaseUrl = await servers.database();
    const env = runEnv(queueUrl, databaseUrl, generateKeyText());
    const run = startCli(['run', '--wait-time-seconds', '20', '--shutdown-timeout-seconds', '10'], env);
    await run.waitForLog('batch committed');

    const signalledAt = Date.now();
    run.child.kill('SIGTERM');
    const stopped = await run.exited;
    const tookMs = Date.now() - signalledAt;

    assert.equal(stopped.code, 0, stopped.stderr);
    // Receives under way answer first (their wait is at most the shutdown timeout less 1 s).
    assert.ok(tookMs < 12_000, `took ${tookMs} ms`);
    assert.match(stopped.stderr, /SIGTERM received; finishing batches in flight/);
    const partial = await endState(databaseUrl);
    assert.ok(partial.ledger < valid + invalid, 'the stop should have come mid-run');
    // What it committed it also deleted; what it held but did not commit it handed back.
    const summary = summaryOf(stopped.stdout);
    assert.equal(summary.written, partial.rows);

    const second = await startCli(['run', '--drain', '--wait-time-seconds', '1'], env).exited;
    assert.equal(second.code, 0, second.stderr);
    assert.deepEqual(await endState(databaseUrl), exactEndState(valid, invalid));
    assert.equal(await queueDepth(servers.sqsClient, queueUrl), 0);
  });

  test('a second signal exits at once; a later run still ends exact', { timeout: 120_000 }, async () => {
    const { queueUrl, valid, invalid } = await loadedQueue(servers, 3_000, 94, { VisibilityTimeout: '2' });
    const databaseUrl = await servers.database();
    const env = runEnv(queueUrl, databaseUrl, generateKeyText());
    await migrateDatabase(databaseUrl);
    // Slow writes, so that batches are still in flight when the signals come.
    await query(
      databaseUrl,
      `CREATE FUNCTION slow_down() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$;
       CREATE TRIGGER slow_down AFTER INSERT ON user_logins FOR EACH STATEMENT EXECUTE FUNCTION slow_down();`,
    );
    const run = startCli(['run', '--wait-time-seconds', '20'], env);
    await run.waitForLog('batch committed');

    run.child.kill('SIGTERM');
    while (!run.stderr().includes('SIGTERM received')) await new Promise((resolve) => setTimeout(resolve, 10));
    run.child.kill('SIGTERM');
    const stopped = await run.exited;

    assert.equal(stopped.code, 130, stopped.stderr);
    assert.match(stopped.stderr, /received again; exiting now/);
    await query(databaseUrl, 'DROP TRIGGER slow_down ON user_logins');
    const second = await startCli(['run', '--drain', '--wait-time-seconds', '1'], env).exited;
    assert.equal(second.code, 0, second.stderr);
    assert.deepEqual(await endState(databaseUrl), exactEndState(valid, invalid));
  });

  test('with a dead-letter queue, each rejected message is forwarded with its body untouched and the reason attached', { timeout: 60_000 }, async () => {
    const queueUrl = await servers.queue();
    const deadLetterUrl = await servers.queue();
    const databaseUrl = await servers.database();
    const bad = [JSON.stringify({ foo: 'oops_wrong_msg_type', bar: '123' }), 'not json, from 198.51.100.99', loginBody({ app_version: 'v1' })];
    await sendBodies(servers.sqsClient, queueUrl, [...bad, loginBody({ user_id: 'fine' })]);

    const result = await startCli(['run', '--drain', '--wait-time-seconds', '1', '--dead-letter-queue-url', deadLetterUrl], runEnv(queueUrl, databaseUrl, generateKeyText())).exited;

    assert.equal(result.code, 0, result.stderr);
    const { ReceiveMessageCommand } = await import('@aws-sdk/client-sqs');
    const { Messages = [] } = await servers.sqsClient.send(
      new ReceiveMessageCommand({ QueueUrl: deadLetterUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageAttributeNames: ['All'] }),
    );
    assert.deepEqual(Messages.map((m) => m.Body).sort(), [...bad].sort());
    const reasons = Object.fromEntries(Messages.map((m) => [m.Body, m.MessageAttributes?.login_etl_reason?.StringValue]));
    assert.equal(reasons[bad[0] as string], 'user_id is required');
    assert.equal(reasons[bad[1] as string], 'body is not valid JSON');
    assert.match(reasons[bad[2] as string] ?? '', /^app_version /);
    const rejectedIds = await query<{ message_id: string }>(databaseUrl, 'SELECT message_id FROM login_etl.rejected_messages');
    assert.deepEqual(
      Messages.map((m) => m.MessageAttributes?.login_etl_message_id?.StringValue).sort(),
      rejectedIds.map((r) => r.message_id).sort(),
    );
    assert.equal(await queueDepth(servers.sqsClient, queueUrl), 0);
  });

  test('four run processes on one queue and one database end exact', { timeout: 120_000 }, async () => {
    const { queueUrl, valid, invalid } = await loadedQueue(servers, 4_000, 93, { VisibilityTimeout: '5' });
    const databaseUrl = await servers.database();
    const env = runEnv(queueUrl, databaseUrl, generateKeyText());

    const results = await Promise.all(
      Array.from({ length: 4 }, () => startCli(['run', '--drain', '--wait-time-seconds', '1', '--receive-concurrency', '2'], env).exited),
    );

    for (const result of results) assert.equal(result.code, 0, result.stderr);
    const summaries = results.map((r) => summaryOf(r.stdout));
    assert.equal(summaries.reduce((sum, s) => sum + (s.written ?? 0), 0), valid);
    assert.ok(summaries.filter((s) => (s.written ?? 0) > 0).length >= 2, 'the work should have been shared');
    assert.deepEqual(await endState(databaseUrl), exactEndState(valid, invalid));
    assert.equal(await queueDepth(servers.sqsClient, queueUrl), 0);
  });

  test("rows the user's own user_logins refuses are rejected with Postgres's reason; the rest of their batch commits", { timeout: 60_000 }, async () => {
    const databaseUrl = await servers.database();
    // The user's table: the DDL, with a narrower device_type and a CHECK constraint of their own.
    await query(
      databaseUrl,
      `CREATE TABLE user_logins(
         user_id varchar(128), device_type varchar(7), masked_ip varchar(256),
         masked_device_id varchar(256), locale varchar(32) CHECK (locale <> 'XX'), app_version integer, create_date date)`,
    );
    const queueUrl = await servers.queue();
    const bodies = Array.from({ length: 10 }, (_, i) => loginBody({ user_id: `user-${i}`, ip: `198.51.100.${i}` }));
    bodies[3] = loginBody({ user_id: 'user-3', locale: 'XX', ip: '198.51.100.3' });
    bodies[8] = loginBody({ user_id: 'user-8', device_type: 'windows-phone', ip: '198.51.100.8' });
    await sendBodies(servers.sqsClient, queueUrl, bodies);
    const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
    const client = createSqsClient({ queueUrl, region: 'us-east-1', endpoint: servers.sqs.endpoint }, { maxSockets: 4, credentials: TEST_CREDENTIALS });
    try {
      await migrate(pool);
      const pipeline = new Pipeline(
        { queue: new SqsQueue(client, queueUrl), sink: new PgSink(pool), masker: new HmacMasker(testKey()), log: silentLog },
        { receiveConcurrency: 1, waitTimeSeconds: 1, drain: true, drainCheckIntervalMs: 200, visibilityTimeoutSeconds: 30 },
      );

      const stats = await drainPipeline(pipeline, 30_000);

      assert.equal(stats.received, 10);
      assert.equal(stats.written, 8);
      assert.equal(stats.rejected, 2);
      const users = await query<{ user_id: string }>(databaseUrl, 'SELECT user_id FROM user_logins ORDER BY user_id');
      assert.deepEqual(users.map((u) => u.user_id), ['user-0', 'user-1', 'user-2', 'user-4', 'user-5', 'user-6', 'user-7', 'user-9']);
      const rejected = await query<{ reason: string; body: string }>(databaseUrl, 'SELECT reason, r::text AS body FROM login_etl.rejected_messages r ORDER BY reason');
      assert.deepEqual(
        rejected.map((r) => r.reason),
        [
          'Postgres refused the write: new row for relation "user_logins" violates check constraint "user_logins_locale_check" (SQLSTATE 23514)',
          'Postgres refused the write: value too long for type character varying(7) (SQLSTATE 22001)',
        ],
      );
      for (const row of rejected) assert.ok(!row.body.includes('198.51.100.'), 'nothing raw in the rejected row: its body is sealed');
      assert.equal(await queueDepth(servers.sqsClient, queueUrl), 0);
    } finally {
      client.destroy();
      await pool.end();
    }
  });
});

