/**
 * Redelivery: SQS delivers at least once. A message committed but not deleted (a crash between
 * the two, a refused delete) comes back with the same MessageId and must not be written twice.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import pg from 'pg';
import { Pipeline } from '../../src/pipeline.js';
import { migrate } from '../../src/sink/migrate.js';
import { PgSink, type Sink } from '../../src/sink/postgres.js';
import type { MessageRef, Queue } from '../../src/source/queue.js';
import { SqsQueue, createSqsClient } from '../../src/source/sqs.js';
import { HmacMasker } from '../../src/transform/mask.js';
import { transform, type Outcome } from '../../src/transform/transform.js';
import { SinkError } from '../../src/errors.js';
import { drainPipeline, sinkWith } from '../helpers/drain.js';
import { loginBody, shippedMigrations, silentLog } from '../helpers/fixtures.js';
import { query, queueDepth, sendBodies, TEST_CREDENTIALS, testKey, useServers } from '../helpers/servers.js';

const servers = useServers();

/** The real queue, except that the first `n` delete calls are lost, as if the process died. */
class LosingDeletes implements Queue {
  constructor(
    private readonly inner: Queue,
    private lose: number,
  ) {}
  receive = (o: Parameters<Queue['receive']>[0]) => this.inner.receive(o);
  changeVisibility = (m: readonly MessageRef[], s: number) => this.inner.changeVisibility(m, s);
  depth = () => this.inner.depth();
  settings = () => this.inner.settings();
  async delete(messages: readonly MessageRef[]): Promise<string[]> {
    if (this.lose > 0) {
      this.lose -= 1;
      throw new Error('connection reset before DeleteMessageBatch');
    }
    return await this.inner.delete(messages);
  }
}

/** A migrated database and a queue of test `t`, with an SQS client over the queue destroyed when `t` ends. */
async function setup(t: TestContext, visibilityTimeoutSeconds: string) {
  const { databaseUrl, pool } = await servers.migratedDatabase(t, { max: 4 });
  const queueUrl = await servers.queue({ VisibilityTimeout: visibilityTimeoutSeconds });
  const client = createSqsClient({ queueUrl, region: 'us-east-1', endpoint: servers.sqs.endpoint }, { maxSockets: 8, credentials: TEST_CREDENTIALS });
  t.after(() => client.destroy());
  return { databaseUrl, pool, queueUrl, queue: new SqsQueue(client, queueUrl) };
}

describe('exactly once in the table', () => {
  test('a message redelivered after its commit (same MessageId) is not written twice', async (t) => {
    const { databaseUrl, pool, queueUrl, queue } = await setup(t, '1');
    await sendBodies(servers.sqsClient, queueUrl, [loginBody({ user_id: 'redelivered' })]);
    const pipeline = new Pipeline(
      { queue: new LosingDeletes(queue, 1), sink: new PgSink(pool), masker: new HmacMasker(testKey()), log: silentLog },
      { receiveConcurrency: 1, waitTimeSeconds: 1, drain: true, drainCheckIntervalMs: 200, visibilityTimeoutSeconds: 1 },
    );

    const stats = await drainPipeline(pipeline, 30_000);

    assert.equal(stats.received, 2, 'the message should have been delivered twice');
    assert.equal(stats.written, 1);
    assert.equal(stats.duplicates, 1);
    const rows = await query(databaseUrl, `SELECT 1 FROM user_logins WHERE user_id = 'redelivered'`);
    assert.equal(rows.length, 1);
    const ledger = await query<{ outcome: string }>(databaseUrl, 'SELECT outcome FROM login_etl.processed_messages');
    assert.deepEqual(ledger, [{ outcome: 'written' }]);
    assert.equal(await queueDepth(servers.sqsClient, queueUrl), 0);
  });

  test('the same MessageId twice in one batch gives one row and deletes both receipts', async (t) => {
    const { databaseUrl, pool } = await setup(t, '30');
    const masker = new HmacMasker(testKey());
    const message = { messageId: 'same-id', receiptHandle: 'r1', body: loginBody({ user_id: 'twice' }), sentTimestampMs: Date.now(), receiveCount: 1 };
    const outcomes = [transform(message, masker), transform({ ...message, receiptHandle: 'r2' }, masker)];

    const result = await new PgSink(pool).write(outcomes);

    assert.deepEqual(result, { written: 1, rejected: 0, duplicates: 1, forward: [] });
    const again = await new PgSink(pool).write(outcomes.slice(0, 1));
    assert.deepEqual(again, { written: 0, rejected: 0, duplicates: 1, forward: [] });
    assert.equal((await query(databaseUrl, `SELECT 1 FROM user_logins WHERE user_id = 'twice'`)).length, 1);
  });

  /** The real sink, failing its first `n` writes with `error()`. */
  function failingFirst(real: Sink, n: number, error: () => Error): Sink {
    let failures = n;
    return sinkWith(async (outcomes: readonly Outcome[]) => {
      if (failures > 0) {
        failures -= 1;
        throw error();
      }
      return await real.write(outcomes);
    }, real);
  }

  test('a transient write failure is retried while the batch is held: no redelivery, no loss', async (t) => {
    const { databaseUrl, pool, queueUrl, queue } = await setup(t, '30');
    await sendBodies(servers.sqsClient, queueUrl, [loginBody({ user_id: 'retried' })]);
    const connectionLost = () => new SinkError('Postgres refused the write: Connection terminated unexpectedly', { cause: new Error('Connection terminated unexpectedly') });
    const pipeline = new Pipeline(
      { queue, sink: failingFirst(new PgSink(pool), 2, connectionLost), masker: new HmacMasker(testKey()), log: silentLog },
      { receiveConcurrency: 1, waitTimeSeconds: 1, drain: true, drainCheckIntervalMs: 200, retryBaseDelayMs: 10, visibilityTimeoutSeconds: 30 },
    );

    const stats = await drainPipeline(pipeline, 30_000);

    assert.deepEqual([stats.writeFailures, stats.received, stats.written, stats.released], [2, 1, 1, 0]);
    assert.equal((await query(databaseUrl, `SELECT 1 FROM user_logins WHERE user_id = 'retried'`)).length, 1);
    assert.equal(await queueDepth(servers.sqsClient, queueUrl), 0);
  });

  test('a batch that fails for an unknown reason is held, not released or deleted, and lands once the sink works: no redelivery', async (t) => {
    const { databaseUrl, pool, queueUrl, queue } = await setup(t, '30');
    await sendBodies(servers.sqsClient, queueUrl, [loginBody({ user_id: 'late' })]);
    const pipeline = new Pipeline(
      { queue, sink: failingFirst(new PgSink(pool), 1, () => new TypeError('unexpected')), masker: new HmacMasker(testKey()), log: silentLog },
      { receiveConcurrency: 1, waitTimeSeconds: 1, drain: true, drainCheckIntervalMs: 200, retryBaseDelayMs: 10, visibilityTimeoutSeconds: 30 },
    );

    const stats = await drainPipeline(pipeline, 30_000);

    assert.equal(stats.writeFailures, 1);
    assert.equal(stats.released, 0, 'an unknown failure is broken, not a reason to hand the batch back');
    assert.equal(stats.received, 1, 'held and retried in hand, not redelivered');
    assert.equal(stats.written, 1);
    assert.equal((await query(databaseUrl, `SELECT 1 FROM user_logins WHERE user_id = 'late'`)).length, 1);
    assert.equal(await queueDepth(servers.sqsClient, queueUrl), 0);
  });

  test('migrations run from many processes at once without racing', async () => {
    const databaseUrl = await servers.database();
    const pools = Array.from({ length: 6 }, () => new pg.Pool({ connectionString: databaseUrl, max: 1 }));
    try {
      const reports = await Promise.all(pools.map((pool) => migrate(pool)));
      assert.equal(reports.filter((r) => r.applied.length > 0).length, 1);
      const versions = await query<{ version: number }>(databaseUrl, 'SELECT version FROM login_etl.schema_migrations ORDER BY version');
      assert.deepEqual(versions, shippedMigrations().map((file) => ({ version: Number.parseInt(file, 10) })));
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  });
});
