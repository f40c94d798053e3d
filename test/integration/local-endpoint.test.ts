/**
 * Local endpoints just work: with no AWS credentials anywhere (no AWS_* credential variables, a
 * home without ~/.aws, no instance metadata), the commands that talk to a local SQS sign with
 * dummy credentials and say so once; any other endpoint still fails for want of credentials.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { generateSampleEvents } from '../../src/embedded/sample-data.js';
import { generateKeyText } from '../../src/transform/key.js';
import { cli, logLines } from '../helpers/cli.js';
import { query, queueDepth, useServers } from '../helpers/servers.js';

const servers = useServers();
let home: string;
/** The CLI helper's environment without its dummy credentials, and nowhere else to find any. */
let noCredentials: Record<string, string | undefined>;
const key = generateKeyText();
const DUMMY_NOTICE = 'no AWS credentials found; signing with the dummy credentials test/test, since the SQS endpoint is local';

before(() => {
  home = mkdtempSync(join(tmpdir(), 'login-etl-home-'));
  // Instance metadata off: on a cloud machine with a role the chain would find credentials there.
  noCredentials = { AWS_ACCESS_KEY_ID: undefined, AWS_SECRET_ACCESS_KEY: undefined, HOME: home, AWS_EC2_METADATA_DISABLED: 'true' };
});
after(() => {
  rmSync(home, { recursive: true, force: true });
});

describe('a local endpoint without credentials', () => {
  test('send, then run --drain, against the emulator exit 0, each saying once that it signs with test/test', async () => {
    const queueUrl = await servers.queue();
    const events = generateSampleEvents({ count: 20, seed: 31 });

    const sent = await cli(['send', '--queue-url', queueUrl, '--sqs-endpoint', servers.sqs.endpoint], noCredentials, events.map((e) => e.body).join('\n'));

    assert.equal(sent.code, 0, sent.stderr);
    assert.equal(sent.stdout, 'sent 20 messages\n');
    assert.equal(sent.stderr, `login-etl: ${DUMMY_NOTICE} (${servers.sqs.endpoint})\n`);

    const databaseUrl = await servers.database();
    const run = await cli(['run', '--drain', '--wait-time-seconds', '1'], {
      ...noCredentials,
      SQS_QUEUE_URL: queueUrl,
      AWS_ENDPOINT_URL_SQS: servers.sqs.endpoint,
      DATABASE_URL: databaseUrl,
      PII_KEY: key,
    });

    assert.equal(run.code, 0, run.stderr);
    const notices = logLines(run.stdout).filter((line) => line.msg === DUMMY_NOTICE);
    assert.equal(notices.length, 1, run.stdout);
    assert.equal(notices[0]?.level, 'info');
    assert.equal(notices[0]?.endpoint, servers.sqs.endpoint);
    const [count] = await query<{ n: number }>(databaseUrl, 'SELECT count(*)::int AS n FROM user_logins');
    assert.equal(count?.n, events.filter((e) => e.valid).length);
    assert.equal(await queueDepth(servers.sqsClient, queueUrl), 0);
  });

  test('check reaches the queue too', async () => {
    const queueUrl = await servers.queue();
    const result = await cli(['check'], {
      ...noCredentials,
      SQS_QUEUE_URL: queueUrl,
      AWS_ENDPOINT_URL: servers.sqs.endpoint,
      DATABASE_URL: await servers.database(),
      PII_KEY: key,
    });
    assert.match(result.stdout, /^ok {3}queue: GetQueueAttributes answered/m);
    assert.equal(result.stderr, `login-etl: ${DUMMY_NOTICE} (${servers.sqs.endpoint})\n`);
  });
});

describe('any other endpoint without credentials', () => {
  const AWS_QUEUE = 'https://sqs.eu-west-1.amazonaws.com/123456789012/login-queue';
  const CREDENTIALS_ERROR = /^login-etl: SQS \w+ failed: no usable AWS credentials \(Could not load credentials from any providers\); the SDK looks in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE and ~\/\.aws/;

  test('send to real AWS or to a remote endpoint fails with a credentials error, exit 2 (the user must provide them)', async () => {
    for (const endpoint of [[], ['--sqs-endpoint', 'http://sqs.example.invalid:4566']]) {
      const result = await cli(['send', '--queue-url', AWS_QUEUE, ...endpoint], noCredentials, '{"user_id":"u1"}\n');
      assert.equal(result.code, 2, result.stderr);
      assert.match(result.stderr, CREDENTIALS_ERROR);
      assert.doesNotMatch(result.stderr, /dummy/);
      assert.equal(result.stdout, '');
    }
  });

  test('run against a remote endpoint stops at start-up with the credentials error, exit 2', async () => {
    const result = await cli(['run', '--drain'], {
      ...noCredentials,
      SQS_QUEUE_URL: 'http://sqs.example.invalid:4566/000000000000/login-queue',
      AWS_REGION: 'us-east-1',
      DATABASE_URL: await servers.database(),
      PII_KEY: key,
    });
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, CREDENTIALS_ERROR);
    assert.doesNotMatch(result.stdout + result.stderr, /dummy/);
  });
});
