/**
 * Deadlines and the hard stop: a `run` whose write waits on a lock, and an SQS endpoint that
 * never answers deletes or visibility changes, both stop within the shutdown timeout plus 2 s;
 * what was not committed is visible again at once, even with a shutdown timeout shorter than the
 * long-poll wait; drains leave no long poll behind. Nothing is lost or written twice.
 */
import { GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Socket } from 'node:net';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { Pipeline } from '../../src/pipeline.js';
import type { Queue } from '../../src/source/queue.js';
import { createQueue } from '../../src/source/clients.js';
import { generateKeyText } from '../../src/transform/key.js';
import { HmacMasker } from '../../src/transform/mask.js';
import { startCli } from '../helpers/cli.js';
import { drainPipeline } from '../helpers/drain.js';
import { FakeQueue } from '../helpers/fake-queue.js';
import { loginBody, silentLog } from '../helpers/fixtures.js';
import { endState, exactEndState, loadedQueue } from '../helpers/load.js';
import { MemorySink } from '../helpers/memory-sink.js';
import { migrateDatabase, query, sendBodies, TEST_CREDENTIALS, testKey, useServers } from '../helpers/servers.js';

const servers = useServers();

function runEnv(queueUrl: string, databaseUrl: string, key: string) {
  return { SQS_QUEUE_URL: queueUrl, AWS_ENDPOINT_URL_SQS: servers.sqs.endpoint, DATABASE_URL: databaseUrl, PII_KEY: key };
}

async function visibility(queueUrl: string): Promise<{ visible: number; inFlight: number }> {
  const { Attributes: a } = await servers.sqsClient.send(
    new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }),
  );
  return { visible: Number(a?.ApproximateNumberOfMessages ?? 0), inFlight: Number(a?.ApproximateNumberOfMessagesNotVisible ?? 0) };
}

describe('shutdown', () => {
  test(
    'SIGTERM while the write waits on a lock, shutdown timeout 3 s shorter than the 20 s wait: exits within 5 s, the statement cancelled, every message visible again at once and committed once by a later run',
    { timeout: 120_000 },
    async () => {
      const { queueUrl, valid, invalid } = await loadedQueue(servers, 100, 95, { VisibilityTimeout: '60' });
      const databaseUrl = await servers.database();
      await migrateDatabase(databaseUrl);
      const env = runEnv(queueUrl, databaseUrl, generateKeyText());
      const locker = new pg.Client({ connectionString: databaseUrl });
      await locker.connect();
      try {
        await locker.query('BEGIN');
        await locker.query('LOCK TABLE user_logins IN ACCESS EXCLUSIVE MODE');
        const run = startCli(['run', '--wait-time-seconds', '20', '--shutdown-timeout-seconds', '3', '--receive-concurrency', '4'], env);
        // Every message received and a write waiting on the lock.
        for (;;) {
          const waiting = await query<{ n: number }>(databaseUrl, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'login-etl' AND wait_event_type = 'Lock'`);
          const depth = await visibility(queueUrl);
          if ((waiting[0]?.n ?? 0) > 0 && depth.visible === 0) break;
          assert.equal(run.child.exitCode, null, run.stderr());
          await sleep(50);
        }

        const signalledAt = performance.now();
        run.child.kill('SIGTERM');
        const stopped = await run.exited;
        const tookMs = performance.now() - signalledAt;
        const depth = await visibility(queueUrl);

        assert.equal(stopped.code, 0, stopped.stderr);
        assert.ok(tookMs < 5_000, `exited ${Math.round(tookMs)} ms after SIGTERM`);
        assert.deepEqual(depth, { visible: 100, inFlight: 0 }, 'every message handed back and visible at once; no long poll took any back');
        // A backend ends when it reads its client's end of the connection, a moment after the
        // process has gone: looked for until then, not longer.
        const backendsLeft = async () =>
          (await query<{ n: number }>(databaseUrl, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'login-etl'`))[0]?.n;
        let left = await backendsLeft();
        for (const until = performance.now() + 2_000; left !== 0 && performance.now() < until; left = await backendsLeft()) await sleep(50);
        assert.equal(left, 0, 'no statement of the stopped run is left waiting on the lock');
      } finally {
        await locker.query('ROLLBACK');
        await locker.end();
      }

      const second = await startCli(['run', '--drain', '--wait-time-seconds', '1'], env).exited;
      assert.equal(second.code, 0, second.stderr);
      assert.deepEqual(await endState(databaseUrl), exactEndState(valid, invalid));
    },
  );

  test('an SQS endpoint that accepts connections and never answers deletes or visibility changes: the hard stop aborts them, within the shutdown timeout plus 2 s', { timeout: 60_000 }, async () => {
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => {
      sockets.add(socket);
      socket.resume(); // reads the request, never answers
    });
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    const address = silent.address();
    assert.ok(address !== null && typeof address === 'object');
    const endpoint = `http://127.0.0.1:${address.port}`;
    const clients = await createQueue({ queueUrl: `${endpoint}/000000000000/silent`, region: 'us-east-1', endpoint }, { connections: 4, credentials: TEST_CREDENTIALS });
    const fake = new FakeQueue({ visibilityTimeoutSeconds: 1 });
    const ids = fake.send(Array.from({ length: 20 }, (_, i) => loginBody({ user_id: `silent-${i}` })));
    // Receives from the fake; deletes and visibility changes to the endpoint that never answers.
    const queue: Queue = {
      receive: (options) => fake.receive(options),
      delete: (messages, signal) => clients.queue.delete(messages, signal),
      changeVisibility: (messages, timeoutSeconds, signal) => clients.queue.changeVisibility(messages, timeoutSeconds, signal),
      depth: () => fake.depth(),
      settings: () => fake.settings(),
    };
    const sink = new MemorySink();
    const masker = new HmacMasker(testKey());
    try {
      const stop = new AbortController();
      const pipeline = new Pipeline(
        { queue, sink, masker, log: silentLog },
        { receiveConcurrency: 2, waitTimeSeconds: 1, drain: false, visibilityTimeoutSeconds: 1, shutdownTimeoutMs: 1_000 },
      );
      const run = pipeline.run(stop.signal);
      while (sink.rows.length < 20) await sleep(10);
      await sleep(600); // a visibility extension is under way too (at half the 1 s timeout), unanswered
      const stoppedAt = performance.now();
      stop.abort();
      const stats = await run;
      const tookMs = performance.now() - stoppedAt;

      assert.ok(tookMs < 3_000, `run() ended ${Math.round(tookMs)} ms after the stop`);
      assert.equal(stats.written, 20);
      // With its visibility not extended, a message can come back and be deleted (in vain) again.
      assert.ok(stats.deleteFailures >= 20, `${stats.deleteFailures} delete failures: the deletes were aborted and left to the ledger`);
      assert.ok(sockets.size > 0, 'the calls reached the silent endpoint');

      // The messages come back (their visibility ends) and a later run commits none twice.
      fake.makeVisible(ids);
      const later = await drainPipeline(new Pipeline({ queue: fake, sink, masker, log: silentLog }, { receiveConcurrency: 2, waitTimeSeconds: 1, drain: true, visibilityTimeoutSeconds: 30 }));
      assert.equal(later.duplicates, 20);
      assert.equal(sink.rows.length, 20);
      assert.deepEqual(fake.remaining(), []);
    } finally {
      for (const socket of sockets) socket.destroy();
      silent.close();
      await clients.close();
    }
  });

  test('three back-to-back drains of 100 messages on one queue each end in seconds: none leaves a long poll behind to hide the next one', { timeout: 120_000 }, async () => {
    const queueUrl = await servers.queue({ VisibilityTimeout: '30' });
    const databaseUrl = await servers.database();
    const env = runEnv(queueUrl, databaseUrl, generateKeyText());
    const tookMs: number[] = [];
    for (let round = 0; round < 3; round += 1) {
      await sendBodies(servers.sqsClient, queueUrl, Array.from({ length: 100 }, (_, i) => loginBody({ user_id: `round-${round}-${i}` })));
      const started = performance.now();
      const result = await startCli(['run', '--drain'], env).exited;
      tookMs.push(Math.round(performance.now() - started));
      assert.equal(result.code, 0, result.stderr);
    }
    // A drain hidden behind an abandoned 20-second poll takes the visibility timeout (30 s).
    assert.ok(tookMs.every((ms) => ms < 10_000), `drains took ${tookMs.join(', ')} ms`);
    assert.equal((await endState(databaseUrl)).rows, 300);
  });
});
