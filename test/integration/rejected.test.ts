/**
 * Rejected messages at rest: bodies kept before sealing are sealed by the next run, and key
 * holders reach the originals only through `login-etl rejected`, audited.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { defaultRunConfig } from '../../src/config.js';
import { runPipeline } from '../../src/run.js';
import { migrate } from '../../src/sink/migrate.js';
import { KeyRing } from '../../src/transform/key.js';
import { safetyStop } from '../helpers/drain.js';
import { shippedMigrations, silentLog } from '../helpers/fixtures.js';
import { dumpAllTables, openedBody, query, startServers, storedRejections, TEST_CREDENTIALS, testKey, type Servers } from '../helpers/servers.js';

let servers: Servers;
before(async () => {
  servers = await startServers();
});
after(async () => {
  await servers?.stop();
});

/** A database as a release before sealing left it: migrations 001 to 003 only. */
async function databaseBeforeSealing(): Promise<string> {
  const databaseUrl = await servers.database();
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query('CREATE SCHEMA login_etl');
    await client.query(`CREATE TABLE login_etl.schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    for (const file of shippedMigrations().filter((f) => Number.parseInt(f, 10) <= 3)) {
      await client.query(readFileSync(new URL(`../../../migrations/${file}`, import.meta.url), 'utf8'));
      await client.query('INSERT INTO login_etl.schema_migrations (version, name) VALUES ($1, $2)', [Number.parseInt(file, 10), file]);
    }
  } finally {
    await client.end();
  }
  return databaseUrl;
}

describe('rejected messages stored before sealing', () => {
  test('migration 004 moves their bodies out of sight, and the next run seals them', async () => {
    const databaseUrl = await databaseBeforeSealing();
    // Scrubbing as text missed an address with a port: exactly what sealing is for.
    const scrubbed = ['{"user_id":"","remote_addr":"203.0.113.9:443","ip":"hmac:k:abc"}', 'client 203.0.113.21:51234 connected'];
    await query(
      databaseUrl,
      `INSERT INTO login_etl.rejected_messages (message_id, reason, body) VALUES ('old-1', 'user_id is empty', $1), ('old-2', 'body is not valid JSON', $2)`,
      scrubbed,
    );
    const pool = new pg.Pool({ connectionString: databaseUrl, max: 1 });
    try {
      assert.deepEqual((await migrate(pool)).applied.slice(0, 1), ['004_sealed_rejections.sql']);
    } finally {
      await pool.end();
    }
    const waiting = await query<{ legacy_body: string }>(databaseUrl, 'SELECT legacy_body FROM login_etl.rejected_messages ORDER BY message_id');
    assert.deepEqual(waiting.map((r) => r.legacy_body), scrubbed, 'kept aside, not lost, until a key is at hand');

    const key = testKey();
    const queueUrl = await servers.queue();
    const config = defaultRunConfig({ sqs: { queueUrl, region: 'us-east-1', endpoint: servers.sqs.endpoint }, databaseUrl, piiKey: key });
    const safety = safetyStop(30_000);
    await runPipeline(
      { ...config, waitTimeSeconds: 1, drain: true, http: undefined, logLevel: 'silent' },
      { log: silentLog, stop: safety.signal, credentials: TEST_CREDENTIALS },
    );
    safety.assertDrained();

    const rows = await storedRejections(databaseUrl);
    assert.equal(rows.length, 2);
    const ring = new KeyRing([key], 'PII_KEY');
    assert.deepEqual(rows.map((r) => openedBody(r, ring)).sort(), [...scrubbed].sort());
    assert.deepEqual(rows.find((r) => r.messageId === 'old-2')?.shape, { json: 'invalid' });
    assert.equal(rows.find((r) => r.messageId === 'old-1')?.bytes, Buffer.byteLength(scrubbed[0] ?? ''));
    const everything = await dumpAllTables(databaseUrl);
    for (const raw of ['203.0.113.9', '203.0.113.21']) assert.ok(!everything.includes(raw), `${raw} is still stored in clear`);
  });
});
