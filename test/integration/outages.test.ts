/**
 * Outages: Postgres stopped for 10 seconds, the SQS endpoint cut and restored. The same process
 * must ride them out, report not-ready meanwhile, and end exact.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { freePort } from '../../src/embedded/ports.js';
import { generateKeyText } from '../../src/transform/key.js';
import { startCli, summaryOf, type RunningCli } from '../helpers/cli.js';
import { endState, exactEndState, loadedQueue } from '../helpers/load.js';
import { queueDepth, useServers } from '../helpers/servers.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';

const servers = useServers({ ownPostgres: true });

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function readiness(port: number): Promise<number | 'down'> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(2_000) });
    return response.status;
  } catch {
    return 'down';
  }
}

/** Polls /readyz until it answers `status` or the process exits; resolves with whether it did. */
async function waitForReadiness(run: RunningCli, port: number, status: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && run.child.exitCode === null) {
    if ((await readiness(port)) === status) return true;
    await sleep(100);
  }
  return false;
}

async function visibleMessages(queueUrl: string): Promise<number> {
  const { GetQueueAttributesCommand } = await import('@aws-sdk/client-sqs');
  const { Attributes } = await servers.sqsClient.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['ApproximateNumberOfMessages'] }));
  return Number(Attributes?.ApproximateNumberOfMessages ?? 0);
}

/** What `run` is started with here: the queue, the database, a fresh key, and /readyz on `port` when given. */
function runEnv(queueUrl: string, databaseUrl: string, options: { endpoint?: string; port?: number } = {}): Record<string, string> {
  return {
    SQS_QUEUE_URL: queueUrl,
    AWS_ENDPOINT_URL_SQS: options.endpoint ?? servers.sqs.endpoint,
    DATABASE_URL: databaseUrl,
    PII_KEY: generateKeyText(),
    ...(options.port === undefined ? {} : { LOGIN_ETL_HTTP_PORT: String(options.port), LOGIN_ETL_HTTP_HOST: '127.0.0.1' }),
  };
}

describe('outages', () => {
  test('Postgres down for 6 s, twice the visibility timeout, mid-run: polling pauses, readiness drops and returns, the same process ends exact', { timeout: 120_000 }, async () => {
    const { queueUrl, valid, invalid } = await loadedQueue(servers, 6_000, 77, { VisibilityTimeout: '3' });
    const databaseUrl = await servers.database();
    const port = await freePort();
    const run = startCli(['run', '--drain', '--wait-time-seconds', '1', '--receive-concurrency', '4'], runEnv(queueUrl, databaseUrl, { port }));
    await run.waitForLog('batch committed');
    assert.equal(await readiness(port), 200);

    await servers.postgres.pause();
    const outageStarted = Date.now();
    assert.ok(await waitForReadiness(run, port, 503, 8_000), '/readyz never reported the outage');
    const alive = await fetch(`http://127.0.0.1:${port}/healthz`);
    assert.equal(alive.status, 200, '/healthz reports the process, not its dependencies');
    await sleep(2_000);
    const visibleEarly = await visibleMessages(queueUrl);
    await sleep(Math.max(0, 6_000 - (Date.now() - outageStarted)));
    const visibleLate = await visibleMessages(queueUrl);
    await servers.postgres.resume();

    assert.ok(visibleLate > 0, 'the queue should still hold messages during the outage');
    assert.equal(visibleLate, visibleEarly, 'nothing should be received while Postgres is down');
    assert.ok(await waitForReadiness(run, port, 200, 15_000), '/readyz never recovered');
    const result = await run.exited;
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(await endState(databaseUrl), exactEndState(valid, invalid));
    const summary = summaryOf(result.stdout);
    assert.ok((summary.writeFailures ?? 0) > 0, 'the outage should have failed some writes');
    assert.equal(summary.duplicates, 0, 'held batches were kept invisible: no redelivery');
    assert.equal(await queueDepth(servers.sqsClient, queueUrl), 0);
  });

  test('run started while Postgres is down waits for it, unready on /readyz, and ends exact once it is back', { timeout: 120_000 }, async () => {
    const { queueUrl, valid, invalid } = await loadedQueue(servers, 300, 78);
    const databaseUrl = await servers.database();
    const port = await freePort();
    await servers.postgres.pause();
    let run: RunningCli | undefined;
    try {
      run = startCli(['run', '--drain', '--wait-time-seconds', '1'], runEnv(queueUrl, databaseUrl, { port }));
      await run.waitForLog('Postgres is not reachable yet; waiting to check the schema');
      assert.ok(await waitForReadiness(run, port, 503, 10_000), '/readyz should say Postgres is down');
      await sleep(1_000);
      assert.equal(run.child.exitCode, null, 'run should wait, not exit');
    } finally {
      await servers.postgres.resume();
    }
    const result = await run.exited;
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(await endState(databaseUrl), exactEndState(valid, invalid));
  });

  test('a drain started while Postgres is down gives up after --unreachable-timeout-seconds, naming Postgres', { timeout: 60_000 }, async () => {
    const queueUrl = await servers.queue();
    const databaseUrl = await servers.database();
    await servers.postgres.pause();
    try {
      const result = await startCli(['run', '--drain', '--wait-time-seconds', '1', '--unreachable-timeout-seconds', '2', '--http-port', '0'], runEnv(queueUrl, databaseUrl)).exited;
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.stderr, /^login-etl: database \(DATABASE_URL, --database-url\) refused the connection at 127\.0\.0\.1:\d+ \(for 2 s, --unreachable-timeout-seconds\)$/m);
    } finally {
      await servers.postgres.resume();
    }
  });

  test('the SQS endpoint cut and restored: the process backs off, recovers and ends exact', { timeout: 120_000 }, async () => {
    const { queueUrl, valid, invalid } = await loadedQueue(servers, 4_000, 78, { VisibilityTimeout: '3' });
    const databaseUrl = await servers.database();
    const proxy = await startTcpProxy(Number(new URL(servers.sqs.endpoint).port));
    const port = await freePort();
    try {
      const run = startCli(['run', '--drain', '--wait-time-seconds', '1', '--receive-concurrency', '4'], runEnv(queueUrl, databaseUrl, { endpoint: proxy.url, port }));
      await run.waitForLog('batch committed');

      await proxy.cut();
      assert.ok(await waitForReadiness(run, port, 503, 8_000), '/readyz never reported the outage');
      await sleep(5_000);
      await proxy.restore();

      assert.ok(await waitForReadiness(run, port, 200, 20_000), '/readyz never recovered');
      const result = await run.exited;
      assert.equal(result.code, 0, result.stderr);
      assert.ok(result.stdout.includes('receive failed; backing off'));
      assert.deepEqual(await endState(databaseUrl), exactEndState(valid, invalid));
      assert.equal(await queueDepth(servers.sqsClient, queueUrl), 0);
    } finally {
      await proxy.close();
    }
  });
});
