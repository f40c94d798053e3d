/**
 * The pipeline against real servers: fauxqs for SQS and an embedded Postgres.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { generateSampleEvents } from '../../src/embedded/sample-data.js';
import { runPipeline } from '../../src/run.js';
import type { RejectedRow } from '../../src/sink/rejected.js';
import { HmacMasker } from '../../src/transform/mask.js';
import { describeShape } from '../../src/transform/shape.js';
import { defaultRunConfig, type RunConfig } from '../../src/config.js';
import { KeyRing, type PiiKey } from '../../src/transform/key.js';
import { safetyStop } from '../helpers/drain.js';
import { shapeFields, silentLog } from '../helpers/fixtures.js';
import {
  dumpAllTables,
  openedBody,
  query,
  queueDepth,
  sendBodies,
  storedRejections,
  TEST_CREDENTIALS,
  testKey,
  useServers,
} from '../helpers/servers.js';

const servers = useServers();

function config(queueUrl: string, databaseUrl: string, piiKey: PiiKey, overrides: Partial<RunConfig> = {}): RunConfig {
  return {
    ...defaultRunConfig({ sqs: { queueUrl, region: 'us-east-1', endpoint: servers.sqs.endpoint }, databaseUrl, piiKey }),
    waitTimeSeconds: 1,
    pgPoolMax: 5,
    logLevel: 'silent',
    drain: true,
    http: undefined,
    ...overrides,
  };
}

async function drain(queueUrl: string, databaseUrl: string, piiKey: PiiKey, overrides: Partial<RunConfig> = {}) {
  const safety = safetyStop(60_000);
  const summary = await runPipeline(config(queueUrl, databaseUrl, piiKey, overrides), {
    log: silentLog,
    stop: safety.signal,
    credentials: TEST_CREDENTIALS,
  });
  safety.assertDrained();
  return summary;
}

describe('run --drain on the exercise-shaped data set', () => {
  test('99 valid events become 99 rows, the malformed one a rejected row, the queue ends empty', async () => {
    const databaseUrl = await servers.database();
    const queueUrl = await servers.queue();
    const key = testKey();
    const events = generateSampleEvents({ count: 100, seed: 7 });
    const sentAfterMs = Date.now();
    await sendBodies(servers.sqsClient, queueUrl, events.map((e) => e.body));

    const summary = await drain(queueUrl, databaseUrl, key);

    assert.equal(summary.received, 100);
    assert.equal(summary.written, 99);
    assert.equal(summary.rejected, 1);
    assert.equal(await queueDepth(servers.sqsClient, queueUrl), 0);

    const rows = await query<{ user_id: string; masked_ip: string; masked_device_id: string; locale: string | null; app_version: number; version_text: string; create_date: string; device_type: string }>(
      databaseUrl,
      `SELECT user_id, device_type, masked_ip, masked_device_id, locale, app_version,
              login_etl.app_version_text(app_version) AS version_text, create_date::text
         FROM user_logins`,
    );
    assert.equal(rows.length, 99);
    const expected = events.filter((e) => e.valid).map((e) => JSON.parse(e.body) as Record<string, string | null>);
    assert.deepEqual(new Set(rows.map((r) => r.user_id)), new Set(expected.map((e) => e.user_id)));
    assert.equal(rows.filter((r) => r.locale === null).length, expected.filter((e) => e.locale === null).length);

    const masker = new HmacMasker(key);
    const byUser = new Map(rows.map((r) => [r.user_id, r]));
    const today = new Date(sentAfterMs).toISOString().slice(0, 10);
    for (const event of expected) {
      const row = byUser.get(event.user_id as string);
      assert.ok(row);
      assert.equal(row.masked_ip, masker.mask('ip', event.ip as string));
      assert.equal(row.masked_device_id, masker.mask('device_id', event.device_id as string));
      assert.equal(row.device_type, event.device_type);
      const [major = 0, minor = 0, patch = 0] = (event.app_version as string).split('.').map(Number);
      assert.equal(row.version_text, `${major}.${minor}.${patch}`);
      assert.equal(row.create_date, today);
    }

    const rejected = await storedRejections(databaseUrl);
    assert.equal(rejected.length, 1);
    assert.match(rejected[0]?.reason ?? '', /user_id is required/);
    assert.equal(describeShape(rejected[0]?.shape ?? { json: 'invalid' }), 'object: none of the 6 login fields; 2 other keys');
    assert.deepEqual(JSON.parse(openedBody(rejected[0] as RejectedRow, new KeyRing([key], 'PII_KEY'))), { foo: 'oops_wrong_msg_type', bar: '123' });
    assert.ok(rejected[0]?.sentAt instanceof Date);

    const everything = await dumpAllTables(databaseUrl);
    for (const event of expected) {
      assert.ok(!everything.includes(event.ip as string), 'a raw ip is stored');
      assert.ok(!everything.includes(event.device_id as string), 'a raw device_id is stored');
    }
  });

  test('rejected messages are kept sealed: nothing raw in clear, the original opens with the key', async () => {
    const databaseUrl = await servers.database();
    const queueUrl = await servers.queue();
    const key = testKey();
    const bad = JSON.stringify({ user_id: 'u-1', ip: '198.51.100.23', device_id: '123-45-6789', app_version: 'v2' });
    const bodies = [bad, 'not json at all 198.51.100.24:443', '[1,2,3]', '{"user_id":"","remote_addr":"203.0.113.9:443"}'];
    await sendBodies(servers.sqsClient, queueUrl, bodies);

    const summary = await drain(queueUrl, databaseUrl, key);

    assert.equal(summary.rejected, 4);
    const rows = (await storedRejections(databaseUrl)).sort((a, b) => a.reason.localeCompare(b.reason));
    assert.deepEqual(
      rows.map((r) => r.reason),
      [
        'app_version must be up to three dot-separated numbers, such as 2.3.0 or 0.96',
        'body is not valid JSON',
        'message expected object, received array',
        'user_id is empty',
      ],
    );
    const ring = new KeyRing([key], 'PII_KEY');
    assert.deepEqual(rows.map((r) => openedBody(r, ring)).sort(), [...bodies].sort());
    assert.deepEqual(rows[0]?.shape, {
      json: 'object',
      fields: shapeFields({ user_id: { type: 'string', length: 3, value: 'u-1' }, ip: { type: 'string', length: 13 }, device_id: { type: 'string', length: 11 }, app_version: { type: 'string', length: 2 } }),
      otherKeys: 0,
    });
    assert.equal(rows[0]?.bytes, Buffer.byteLength(bad));
    const everything = await dumpAllTables(databaseUrl);
    for (const raw of ['198.51.100.23', '198.51.100.24', '123-45-6789', '203.0.113.9']) assert.ok(!everything.includes(raw), `${raw} is stored`);
  });

  test('an existing user_logins created with the DDL is used as it is', async () => {
    const databaseUrl = await servers.database();
    await query(
      databaseUrl,
      `CREATE TABLE user_logins(
         user_id varchar(128), device_type varchar(32), masked_ip varchar(256),
         masked_device_id varchar(256), locale varchar(32), app_version integer, create_date date)`,
    );
    await query(databaseUrl, `INSERT INTO user_logins (user_id) VALUES ('already-there')`);
    const queueUrl = await servers.queue();
    await sendBodies(servers.sqsClient, queueUrl, generateSampleEvents({ count: 20, seed: 3, malformedRatio: 0 }).map((e) => e.body));

    const summary = await drain(queueUrl, databaseUrl, testKey());

    assert.equal(summary.written, 20);
    const [count] = await query<{ n: number }>(databaseUrl, 'SELECT count(*)::int AS n FROM user_logins');
    assert.equal(count?.n, 21);
    const columns = await query<{ column_name: string; data_type: string; character_maximum_length: number | null }>(
      databaseUrl,
      `SELECT column_name, data_type, character_maximum_length FROM information_schema.columns
        WHERE table_name = 'user_logins' ORDER BY ordinal_position`,
    );
    assert.deepEqual(
      columns.map((c) => `${c.column_name} ${c.data_type}${c.character_maximum_length ? `(${c.character_maximum_length})` : ''}`),
      [
        'user_id character varying(128)',
        'device_type character varying(32)',
        'masked_ip character varying(256)',
        'masked_device_id character varying(256)',
        'locale character varying(32)',
        'app_version integer',
        'create_date date',
      ],
    );
  });

  test('two pipelines on one queue and one database write every event exactly once', async () => {
    const databaseUrl = await servers.database();
    const queueUrl = await servers.queue();
    const key = testKey();
    const events = generateSampleEvents({ count: 600, seed: 11 });
    await sendBodies(servers.sqsClient, queueUrl, events.map((e) => e.body));

    const [a, b] = await Promise.all([drain(queueUrl, databaseUrl, key), drain(queueUrl, databaseUrl, key)]);

    assert.equal(a.written + b.written, events.filter((e) => e.valid).length);
    const [counts] = await query<{ rows: number; users: number; rejected: number }>(
      databaseUrl,
      `SELECT (SELECT count(*)::int FROM user_logins) AS rows,
              (SELECT count(DISTINCT user_id)::int FROM user_logins) AS users,
              (SELECT count(*)::int FROM login_etl.rejected_messages) AS rejected`,
    );
    assert.deepEqual(counts, { rows: 594, users: 594, rejected: 6 });
    assert.equal(await queueDepth(servers.sqsClient, queueUrl), 0);
  });
});
