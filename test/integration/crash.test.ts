/**
 * Crash: `run` killed with SIGKILL at random moments while it drains, restarted each time.
 * Whatever it was doing, every valid message must end in user_logins exactly once and every
 * invalid one in rejected_messages once.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generateKeyText } from '../../src/transform/key.js';
import { startCli, summaryOf } from '../helpers/cli.js';
import { endState, loadedQueue } from '../helpers/load.js';
import { queueDepth, useServers } from '../helpers/servers.js';

const servers = useServers();

test('SIGKILL at random moments during a drain of 10,000 messages loses and duplicates nothing', { timeout: 240_000 }, async () => {
  // A short visibility timeout brings a killed process's messages back quickly.
  const { queueUrl, valid, invalid } = await loadedQueue(servers, 10_000, 1234, { VisibilityTimeout: '2' });
  const databaseUrl = await servers.database();
  const env = { SQS_QUEUE_URL: queueUrl, AWS_ENDPOINT_URL_SQS: servers.sqs.endpoint, DATABASE_URL: databaseUrl, PII_KEY: generateKeyText() };
  const args = ['run', '--wait-time-seconds', '1', '--receive-concurrency', '4'];

  const kills: number[] = [];
  for (let i = 0; i < 6; i += 1) {
    const run = startCli(args, env);
    // Kill only once it is committing, at a random moment in the middle of its work.
    await run.waitForLog('batch committed');
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 400));
    run.child.kill('SIGKILL');
    const result = await run.exited;
    assert.equal(result.signal, 'SIGKILL', `run ${i} ended by itself: ${result.stderr}`);
    kills.push(result.stdout.split('\n').filter((l) => l.includes('"batch committed"')).length);
  }
  const before = await endState(databaseUrl);
  assert.ok(before.ledger < valid + invalid, 'the kills should have left work for the final run');

  const final = await startCli([...args, '--drain'], env).exited;

  assert.equal(final.code, 0, final.stderr);
  const state = await endState(databaseUrl);
  assert.deepEqual(state, { rows: valid, users: valid, rejected: invalid, rejectedIds: invalid, ledger: valid + invalid, ledgerWritten: valid });
  assert.equal(await queueDepth(servers.sqsClient, queueUrl), 0);
  assert.equal(kills.length, 6);
  // Messages held by the killed processes came back and were committed by a later one.
  assert.ok((summaryOf(final.stdout).received ?? 0) > 0);
});
