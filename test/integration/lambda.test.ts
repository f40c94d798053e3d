/**
 * The Lambda handler, invoked in this process with SQS-shaped events as an event source mapping
 * sends them, against the embedded Postgres.
 */
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { freePort } from '../../src/embedded/ports.js';
import { ConfigError } from '../../src/errors.js';
import { createHandler, type LambdaHandler, type SqsEvent, type SqsRecord } from '../../src/lambda.js';
import { DEAD_LETTER_MESSAGE_ID_ATTRIBUTE } from '../../src/source/queue.js';
import { generateKeyText, generateVaultKey } from '../../src/transform/key.js';
import { loginBody } from '../helpers/fixtures.js';
import { dumpAllTables, query, useServers } from '../helpers/servers.js';

const servers = useServers();
const key = generateKeyText();

let ids = 0;
function record(body: string, overrides: Partial<SqsRecord> = {}): SqsRecord {
  ids += 1;
  return {
    messageId: `00000000-0000-4000-8000-${String(ids).padStart(12, '0')}`,
    receiptHandle: `handle-${ids}`,
    body,
    attributes: { SentTimestamp: String(Date.UTC(2024, 1, 29, 12)), ApproximateReceiveCount: '1', SenderId: 'AIDEXAMPLE' },
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:us-east-1:000000000000:login-queue',
    ...overrides,
  };
}
const event = (...records: SqsRecord[]): SqsEvent => ({ Records: records });

/** A handler reading its settings from `env`, closed when test `t` ends. */
function handlerOf(t: TestContext, env: () => NodeJS.ProcessEnv): LambdaHandler {
  const handler = createHandler(env);
  t.after(() => handler.close());
  return handler;
}

describe('Lambda handler', () => {
  test('valid and invalid records become rows and rejections; nothing is reported failed', async (t) => {
    const databaseUrl = await servers.database();
    const handler = handlerOf(t, () => ({ DATABASE_URL: databaseUrl, PII_KEY: key }));
    const good = record(loginBody({ user_id: 'lambda-1', ip: '192.0.2.44', device_id: '777-88-9999', app_version: '6.02' }));
    const bad = record('{"foo": "oops_wrong_msg_type", "bar": "123"}');
    const notJson = record('{"user_id": "x", "ip": "198.51.100.200"');

    const response = await handler(event(good, bad, notJson));

    assert.deepEqual(response, { batchItemFailures: [] });
    const rows = await query<Record<string, unknown>>(databaseUrl, 'SELECT user_id, masked_ip, app_version, create_date::text FROM user_logins');
    assert.equal(rows.length, 1);
    assert.equal(rows[0]?.user_id, 'lambda-1');
    assert.equal(rows[0]?.app_version, 6_002_000);
    assert.equal(rows[0]?.create_date, '2024-02-29');
    assert.match(String(rows[0]?.masked_ip), /^hmac:/);
    const rejected = await query<{ message_id: string; reason: string }>(databaseUrl, 'SELECT message_id, reason FROM login_etl.rejected_messages ORDER BY reason');
    assert.deepEqual(rejected.map((r) => r.message_id).sort(), [bad.messageId, notJson.messageId].sort());
    const dump = await dumpAllTables(databaseUrl);
    for (const raw of ['192.0.2.44', '777-88-9999', '198.51.100.200']) assert.ok(!dump.includes(raw), `${raw} is stored raw`);
  });

  test('with a dead-letter queue, each rejection is forwarded there once, also when its record is delivered again', async (t) => {
    const databaseUrl = await servers.database();
    const deadLetterQueueUrl = await servers.queue();
    const handler = handlerOf(t, () => ({
      DATABASE_URL: databaseUrl,
      PII_KEY: key,
      LOGIN_ETL_DEAD_LETTER_QUEUE_URL: deadLetterQueueUrl,
      AWS_ENDPOINT_URL_SQS: servers.sqs.endpoint,
      AWS_REGION: 'us-east-1',
      LOG_LEVEL: 'warn',
    }));
    const bad = record('{"foo": "oops_wrong_msg_type", "bar": "123"}');
    const good = record(loginBody({ user_id: 'lambda-dead-letters' }));

    assert.deepEqual(await handler(event(good, bad)), { batchItemFailures: [] });
    assert.deepEqual(await handler(event({ ...bad, receiptHandle: 'delivered-again' })), { batchItemFailures: [] });

    const { Messages = [] } = await servers.sqsClient.send(
      new ReceiveMessageCommand({ QueueUrl: deadLetterQueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageAttributeNames: ['All'] }),
    );
    assert.deepEqual(
      Messages.map((m) => [m.Body, m.MessageAttributes?.[DEAD_LETTER_MESSAGE_ID_ATTRIBUTE]?.StringValue]),
      [[bad.body, bad.messageId]],
      'one letter: the rejected body, untouched, naming its message',
    );
    const [rejection] = await query<{ forwarded: boolean }>(databaseUrl, 'SELECT forwarded_at IS NOT NULL AS forwarded FROM login_etl.rejected_messages');
    assert.equal(rejection?.forwarded, true);
  });

  test('a rejection the dead-letter queue cannot take yet keeps its record failed; delivered again, it is forwarded once and nothing is written twice', async (t) => {
    const databaseUrl = await servers.database();
    const deadLetterQueueUrl = await servers.queue();
    const env = (endpoint: string) => () => ({
      DATABASE_URL: databaseUrl,
      PII_KEY: key,
      LOGIN_ETL_DEAD_LETTER_QUEUE_URL: deadLetterQueueUrl,
      AWS_ENDPOINT_URL_SQS: endpoint,
      AWS_REGION: 'us-east-1',
      LOG_LEVEL: 'silent',
    });
    const bad = record('{"foo": "oops_wrong_msg_type", "bar": "123"}');
    const good = record(loginBody({ user_id: 'lambda-dead-letters-down' }));

    const unreachable = handlerOf(t, env(`http://127.0.0.1:${await freePort()}`));
    assert.deepEqual(await unreachable(event(good, bad)), { batchItemFailures: [{ itemIdentifier: bad.messageId }] });

    const reachable = handlerOf(t, env(servers.sqs.endpoint));
    assert.deepEqual(await reachable(event({ ...bad, receiptHandle: 'delivered-again' })), { batchItemFailures: [] });
    const { Messages = [] } = await servers.sqsClient.send(
      new ReceiveMessageCommand({ QueueUrl: deadLetterQueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageAttributeNames: ['All'] }),
    );
    assert.deepEqual(Messages.map((m) => m.MessageAttributes?.[DEAD_LETTER_MESSAGE_ID_ATTRIBUTE]?.StringValue), [bad.messageId]);
    const counts = await query<{ rows: number; rejections: number }>(
      databaseUrl,
      'SELECT (SELECT count(*)::int FROM user_logins) AS rows, (SELECT count(*)::int FROM login_etl.rejected_messages) AS rejections',
    );
    assert.deepEqual(counts, [{ rows: 1, rejections: 1 }]);
  });

  test('the same record delivered twice, in one event and in a later one, gives one row', async (t) => {
    const databaseUrl = await servers.database();
    const handler = handlerOf(t, () => ({ DATABASE_URL: databaseUrl, PII_KEY: key }));
    const once = record(loginBody({ user_id: 'lambda-twice' }));
    const again = { ...once, receiptHandle: 'another-handle', attributes: { ...once.attributes, ApproximateReceiveCount: '2' } };

    assert.deepEqual(await handler(event(once, again)), { batchItemFailures: [] });
    assert.deepEqual(await handler(event(again)), { batchItemFailures: [] });

    const [count] = await query<{ n: number }>(databaseUrl, `SELECT count(*)::int AS n FROM user_logins WHERE user_id = 'lambda-twice'`);
    assert.equal(count?.n, 1);
  });

  test('a row Postgres refuses (a CHECK of its own user_logins) is split out and rejected with its reason; the others are rows, nothing is reported failed', async (t) => {
    const databaseUrl = await servers.database();
    const handler = handlerOf(t, () => ({ DATABASE_URL: databaseUrl, PII_KEY: key }));
    assert.deepEqual(await handler(event(record(loginBody({ user_id: 'first' })))), { batchItemFailures: [] });
    await query(databaseUrl, `ALTER TABLE user_logins ADD CONSTRAINT no_tv CHECK (device_type <> 'tv')`);
    const records = [
      record(loginBody({ user_id: 'split-1' })),
      record(loginBody({ user_id: 'split-2', device_type: 'tv' })),
      record(loginBody({ user_id: 'split-3' })),
      record(loginBody({ user_id: 'split-4' })),
      record('not json'),
    ];

    const response = await handler(event(...records));

    assert.deepEqual(response, { batchItemFailures: [] });
    const rows = await query<{ user_id: string }>(databaseUrl, `SELECT user_id FROM user_logins WHERE user_id LIKE 'split-%' ORDER BY user_id`);
    assert.deepEqual(rows.map((r) => r.user_id), ['split-1', 'split-3', 'split-4']);
    const rejected = await query<{ message_id: string; reason: string }>(databaseUrl, 'SELECT message_id, reason FROM login_etl.rejected_messages ORDER BY reason');
    assert.deepEqual(rejected.map((r) => r.message_id).sort(), [records[1]?.messageId, records[4]?.messageId].sort());
    assert.match(rejected.find((r) => r.message_id === records[1]?.messageId)?.reason ?? '', /^Postgres refused the write: .*"no_tv" \(SQLSTATE 23514\)$/);
  });

  test('a privilege revoked: the records are reported failed, not split, not rejected', async (t) => {
    const databaseUrl = await servers.database();
    const role = `lambda_writer_${process.pid}`;
    await query(databaseUrl, `CREATE ROLE ${role} LOGIN PASSWORD 'writer'`);
    const url = new URL(databaseUrl);
    url.username = role;
    url.password = 'writer';
    const admin = handlerOf(t, () => ({ DATABASE_URL: databaseUrl, PII_KEY: key }));
    const handler = handlerOf(t, () => ({ DATABASE_URL: url.toString(), PII_KEY: key }));
    // Migrated by its owner; the function's role may read and write everything but user_logins.
    assert.deepEqual(await admin(event(record(loginBody({ user_id: 'owner' })))), { batchItemFailures: [] });
    await query(databaseUrl, `GRANT USAGE, CREATE ON SCHEMA login_etl TO ${role}`);
    await query(databaseUrl, `GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA login_etl TO ${role}`);
    await query(databaseUrl, `GRANT SELECT ON user_logins TO ${role}`);
    const records = [record(loginBody({ user_id: 'denied-1' })), record(loginBody({ user_id: 'denied-2' })), record('not json')];

    const response = await handler(event(...records));

    assert.deepEqual(response.batchItemFailures.map((f) => f.itemIdentifier), records.map((r) => r.messageId));
    const [counts] = await query<{ rejected: number; ledger: number }>(
      databaseUrl,
      `SELECT (SELECT count(*) FROM login_etl.rejected_messages)::int AS rejected, (SELECT count(*) FROM login_etl.processed_messages)::int AS ledger`,
    );
    assert.deepEqual(counts, { rejected: 0, ledger: 1 });
  });

  test('Postgres unreachable: every record is reported in batchItemFailures; they land once it is back', async (t) => {
    const databaseUrl = await servers.database();
    const closed = await freePort();
    let url = databaseUrl.replace(`:${servers.postgres.port}/`, `:${closed}/`);
    const handler = handlerOf(t, () => ({ DATABASE_URL: url, PII_KEY: key }));
    const records = [record(loginBody({ user_id: 'later-1' })), record(loginBody({ user_id: 'later-2' })), record('not json')];

    const response = await handler(event(...records));

    assert.deepEqual(response.batchItemFailures.map((f) => f.itemIdentifier), records.map((r) => r.messageId));
    url = databaseUrl;
    assert.deepEqual(await handler(event(...records)), { batchItemFailures: [] });
    const [count] = await query<{ n: number }>(databaseUrl, 'SELECT count(*)::int AS n FROM user_logins');
    assert.equal(count?.n, 2);
  });

  test('Postgres going away after start: the records of the failed write are reported', async (t) => {
    const databaseUrl = await servers.database();
    const handler = handlerOf(t, () => ({ DATABASE_URL: databaseUrl, PII_KEY: key }));
    assert.deepEqual(await handler(event(record(loginBody({ user_id: 'warm' })))), { batchItemFailures: [] });
    // Every connection of this database dropped, and new ones refused, as in a failover.
    const name = new URL(databaseUrl).pathname.slice(1);
    await query(servers.postgres.url, `ALTER DATABASE ${name} WITH ALLOW_CONNECTIONS false`);
    await query(servers.postgres.url, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, [name]);
    const records = [record(loginBody({ user_id: 'cold-1' })), record(loginBody({ user_id: 'cold-2' }))];

    const response = await handler(event(...records));

    await query(servers.postgres.url, `ALTER DATABASE ${name} WITH ALLOW_CONNECTIONS true`);
    assert.deepEqual(response.batchItemFailures.map((f) => f.itemIdentifier), records.map((r) => r.messageId));
  });

  test('a bad setting fails the invocation with a ConfigError naming it', async () => {
    const handler = createHandler(() => ({ DATABASE_URL: 'mysql://nope', PII_KEY: key }));
    await assert.rejects(handler(event(record('{}'))), (err: unknown) => err instanceof ConfigError && /DATABASE_URL/.test(err.message));
    const noKey = createHandler(() => ({ DATABASE_URL: 'postgres://u@127.0.0.1/d' }));
    await assert.rejects(noKey(event(record('{}'))), /PII_KEY: is required/);
  });

  for (const mode of ['hmac', 'siv'] as const) {
    test(`${mode}: a ring holding a vault private key fails the invocation with a ConfigError naming PII_KEYS, before touching the database`, async (t) => {
      const databaseUrl = await servers.database();
      const { holder } = generateVaultKey('v1');
      const handler = handlerOf(t, () => ({ DATABASE_URL: databaseUrl, PII_KEYS: JSON.stringify([holder]), LOGIN_ETL_MASK_MODE: mode }));
      await assert.rejects(
        handler(event(record(loginBody({ user_id: `private-${mode}` })))),
        (err: unknown) => err instanceof ConfigError && err.setting === 'PII_KEYS' && /holds a vault private_key/.test(err.message) && !err.message.includes(holder.private_key as string),
      );
      const [schema] = await query<{ found: string | null }>(databaseUrl, `SELECT to_regclass('user_logins')::text AS found`);
      assert.equal(schema?.found, null);
    });
  }
});
