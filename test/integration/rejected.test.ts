/**
 * Rejected messages at rest: bodies kept before sealing are sealed by the next run, and key
 * holders reach the originals only through `login-etl rejected`, audited. `run --drain` and
 * `rejected list`, `show`, `export` and `replay` run in-process (what they print or leave in the
 * database and the queues is what is checked); roles.test.ts runs `replay` as a child process.
 */
import { ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import pg from 'pg';
import { defaultRunConfig } from '../../src/config.js';
import { runPipeline } from '../../src/run.js';
import { migrate } from '../../src/sink/migrate.js';
import type { RejectedRow } from '../../src/sink/rejected.js';
import { generateKeyText, generateVaultKey, KeyRing, parseKeyRing, parsePiiKey } from '../../src/transform/key.js';
import { loadSealedBox } from '../../src/transform/sealed-box.js';
import { cliInProcess } from '../helpers/cli.js';
import { safetyStop } from '../helpers/drain.js';
import { loginBody, shippedMigrations, silentLog } from '../helpers/fixtures.js';
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

describe('login-etl rejected', () => {
  const BAD = [
    '{"user_id":"","remote_addr":"203.0.113.9:443","ip":"198.51.100.1"}',
    'client 203.0.113.21:51234 connected; device_id={"serial":"SECRETDEV-A1"}',
    // SQS takes no C0 controls but C1 ones: CSI (U+009B) erases a line on many terminals.
    '{"device_id"=>"SECRETDEV-E5", "ip"=>"198.51.100.5"}\n\u009b2K\u202e',
  ];
  const RAW = ['203.0.113.9', '198.51.100.1', '203.0.113.21', 'SECRETDEV-A1', 'SECRETDEV-E5', '198.51.100.5'];

  /** A database whose rejected_messages holds BAD (and one valid login), as `run` left it. */
  async function rejectedIn(env: Record<string, string>): Promise<{ databaseUrl: string; ids: string[] }> {
    const databaseUrl = await servers.database();
    const queueUrl = await servers.queue();
    await sendBodies(servers.sqsClient, queueUrl, [...BAD, loginBody()]);
    const run = await cliInProcess(['run', '--drain', '--wait-time-seconds', '1', '--sqs-endpoint', servers.sqs.endpoint], { SQS_QUEUE_URL: queueUrl, DATABASE_URL: databaseUrl, ...env });
    assert.equal(run.code, 0, run.stderr);
    const rows = await query<{ message_id: string }>(databaseUrl, 'SELECT message_id FROM login_etl.rejected_messages ORDER BY rejected_at, message_id');
    assert.equal(rows.length, BAD.length);
    return { databaseUrl, ids: rows.map((r) => r.message_id) };
  }

  const audits = (databaseUrl: string) =>
    query<{ action: string; source: string; values_requested: number; values_recovered: number; message_ids: string[] | null; target: string | null; reason: string | null }>(
      databaseUrl,
      'SELECT action, source, values_requested, values_recovered, message_ids, target, reason FROM login_etl.unmask_audit ORDER BY id',
    );

  function assertNoRaw(where: string, text: string): void {
    for (const raw of RAW) assert.ok(!text.includes(raw), `${raw} in ${where}`);
    assert.ok(!/[\u009b\u202e]/.test(text), `a control character reached ${where}`);
  }

  test('list shows what is kept in clear, without a key, and opens nothing', async () => {
    const key = generateKeyText();
    const { databaseUrl, ids } = await rejectedIn({ PII_KEY: key });
    const table = await cliInProcess(['rejected', 'list'], { DATABASE_URL: databaseUrl });
    assert.equal(table.code, 0, table.stderr);
    assertNoRaw('the list', table.stdout + table.stderr);
    for (const id of ids) assert.ok(table.stdout.includes(id));
    assert.match(table.stdout, /user_id is empty/);
    assert.match(table.stdout, /object: user_id string\(0\), ip string\(12\); 1 other key/);
    const json = await cliInProcess(['rejected', 'list', '--json', '--limit', '2'], { DATABASE_URL: databaseUrl });
    const lines = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as { message_id: string; bytes: number; dead_letter: string; body?: string });
    assert.deepEqual(lines.map((l) => l.message_id), ids.slice(0, 2));
    assert.deepEqual(lines.map((l) => l.dead_letter), ['none', 'none'], 'no dead-letter queue was configured');
    // The forwarding state as the claim and its record leave it.
    await query(databaseUrl, `UPDATE login_etl.rejected_messages SET forward_claimed_at = now() WHERE message_id = $1`, [ids[0]]);
    await query(databaseUrl, `UPDATE login_etl.rejected_messages SET forward_claimed_at = now(), forwarded_at = now() WHERE message_id = $1`, [ids[1]]);
    const states = await cliInProcess(['rejected', 'list', '--json', '--limit', '2'], { DATABASE_URL: databaseUrl });
    assert.deepEqual(states.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { dead_letter: string }).dead_letter), ['unconfirmed', 'forwarded']);
    assert.ok(lines.every((l) => l.body === undefined && typeof l.bytes === 'number'));
    assertNoRaw('the JSON list', json.stdout);
    assert.deepEqual(await audits(databaseUrl), [], 'listing opens nothing, so it records nothing');
  });

  test('show opens the originals for a key holder, after committing an audit record with the message ids', async () => {
    const key = generateKeyText();
    const { databaseUrl, ids } = await rejectedIn({ PII_KEY: key });
    const shown = await cliInProcess(['rejected', 'show', ids[0] ?? '', ids[2] ?? '', '--reason', 'ticket 42'], { DATABASE_URL: databaseUrl, PII_KEY: key });
    assert.equal(shown.code, 0, shown.stderr);
    const lines = shown.stdout.trim().split('\n');
    assert.ok(!/[\u009b\u202e]/.test(shown.stdout), 'control characters in a body are printed escaped');
    const bodies = lines.map((l) => (JSON.parse(l) as { body: string }).body);
    const ring = new KeyRing([parsePiiKey(key, 'PII_KEY')], 'PII_KEY');
    const byId = new Map((await storedRejections(databaseUrl)).map((r) => [r.messageId, openedBody(r, ring)]));
    assert.deepEqual(bodies, [byId.get(ids[0] ?? ''), byId.get(ids[2] ?? '')]);
    assert.ok(bodies.every((b) => b !== undefined && BAD.includes(b)));
    assert.match(shown.stderr, /opened 2 of 2 rejected messages \(audit record \d+\)/);
    assert.deepEqual(await audits(databaseUrl), [
      { action: 'rejected-show', source: 'arguments', values_requested: 2, values_recovered: 2, message_ids: [ids[0], ids[2]], target: null, reason: 'ticket 42' },
    ]);

    const wrongKey = await cliInProcess(['rejected', 'show', ids[1] ?? '', 'no-such-id', '--reason', 'r'], { DATABASE_URL: databaseUrl, PII_KEY: generateKeyText() });
    assert.equal(wrongKey.code, 1);
    assert.equal(wrongKey.stdout, '', 'nothing opens with another key');
    assertNoRaw('a refusal', wrongKey.stderr);
    assert.match(wrongKey.stderr, /no-such-id: no such rejected message/);
    assert.match(wrongKey.stderr, /refused: key \S+ is not in the key ring/);
  });

  test('nothing is printed when the audit record does not come back', async () => {
    const key = generateKeyText();
    const { databaseUrl, ids } = await rejectedIn({ PII_KEY: key });
    await query(databaseUrl, `CREATE FUNCTION public.swallow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$`);
    await query(databaseUrl, `CREATE TRIGGER swallow BEFORE INSERT ON login_etl.unmask_audit FOR EACH ROW EXECUTE FUNCTION public.swallow()`);
    const shown = await cliInProcess(['rejected', 'show', ...ids, '--reason', 'r'], { DATABASE_URL: databaseUrl, PII_KEY: key });
    assert.equal(shown.code, 1);
    assert.equal(shown.stdout, '');
    assertNoRaw('the failure', shown.stderr);
    assert.match(shown.stderr, /audit record was not stored/);
  });

  test('export writes a new file only its owner can read, and never overwrites one', async () => {
    const key = generateKeyText();
    const { databaseUrl } = await rejectedIn({ PII_KEY: key });
    const dir = mkdtempSync(join(tmpdir(), 'login-etl-export-'));
    const file = join(dir, 'rejected.jsonl');
    const exported = await cliInProcess(['rejected', 'export', '--out', file, '--reason', 'r'], { DATABASE_URL: databaseUrl, PII_KEY: key });
    assert.equal(exported.code, 0, exported.stderr);
    assert.equal(exported.stdout, '');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { body: string });
    assert.deepEqual(lines.map((l) => l.body).sort(), [...BAD].sort());
    const again = await cliInProcess(['rejected', 'export', '--out', file, '--reason', 'r'], { DATABASE_URL: databaseUrl, PII_KEY: key });
    assert.equal(again.code, 2);
    assert.match(again.stderr, /--out: .* exists already; it is never overwritten/);
    assert.equal((await audits(databaseUrl)).length, 1, 'a refused export records nothing');
    assert.deepEqual((await audits(databaseUrl)).map((a) => [a.action, a.source, a.values_recovered]), [['rejected-export', 'filter', 3]]);
  });

  test('replay sends the originals back to a queue, marks them, and --not-replayed skips them next time', async () => {
    const { holder, pipeline } = generateVaultKey('v1');
    const { databaseUrl, ids } = await rejectedIn({ PII_KEYS: JSON.stringify([pipeline]), LOGIN_ETL_MASK_MODE: 'vault' });
    const target = await servers.queue();
    const env = { DATABASE_URL: databaseUrl, SQS_QUEUE_URL: target, AWS_ENDPOINT_URL_SQS: servers.sqs.endpoint };

    const withoutPrivateKey = await cliInProcess(['rejected', 'replay', '--reason', 'r'], { ...env, PII_KEYS: JSON.stringify([pipeline]) });
    assert.equal(withoutPrivateKey.code, 1, 'the pipeline cannot open what it sealed');
    assert.match(withoutPrivateKey.stderr, /needs the vault private_key of key v1/);
    assert.equal(await queueDepth(servers.sqsClient, target), 0);

    const replayed = await cliInProcess(['rejected', 'replay', ids[1] ?? '', '--reason', 'producer fixed'], { ...env, PII_KEYS: JSON.stringify([holder]) });
    assert.equal(replayed.code, 0, replayed.stderr);
    assert.match(replayed.stderr, /replayed 1 of 1 rejected message to /);
    const received = await servers.sqsClient.send(new ReceiveMessageCommand({ QueueUrl: target, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
    const ring = parseKeyRing(JSON.stringify([holder]), 'PII_KEYS');
    const original = openedBody((await storedRejections(databaseUrl)).find((r) => r.messageId === ids[1]) as RejectedRow, ring, await loadSealedBox());
    assert.deepEqual(received.Messages?.map((m) => m.Body), [original]);
    const marked = await query<{ message_id: string }>(databaseUrl, 'SELECT message_id FROM login_etl.rejected_messages WHERE replayed_at IS NOT NULL');
    assert.deepEqual(marked.map((m) => m.message_id), [ids[1]]);
    const audit = (await audits(databaseUrl)).at(-1);
    assert.deepEqual([audit?.action, audit?.target, audit?.message_ids], ['rejected-replay', target, [ids[1]]]);

    const rest = await cliInProcess(['rejected', 'replay', '--not-replayed', '--reason', 'r'], { ...env, PII_KEYS: JSON.stringify([holder]) });
    assert.equal(rest.code, 0, rest.stderr);
    assert.match(rest.stderr, /replayed 2 of 2 rejected messages/);
  });

  test('replay marks exactly what SQS accepted: a body the queue refuses stays unmarked, the rest are not sent twice', async () => {
    const key = generateKeyText();
    const { databaseUrl } = await rejectedIn({ PII_KEY: key });
    // A queue that takes only small messages: the 80-byte Ruby hash fits, the others do not.
    const target = await servers.queue({ MaximumMessageSize: '1024' });
    await query(databaseUrl, `UPDATE login_etl.rejected_messages SET replayed_at = NULL`);
    const env = { DATABASE_URL: databaseUrl, SQS_QUEUE_URL: target, AWS_ENDPOINT_URL_SQS: servers.sqs.endpoint, PII_KEY: key };
    const padded = await servers.queue();
    await sendBodies(servers.sqsClient, padded, ['x'.repeat(2_000)]);
    const run = await cliInProcess(['run', '--drain', '--wait-time-seconds', '1', '--sqs-endpoint', servers.sqs.endpoint], { SQS_QUEUE_URL: padded, DATABASE_URL: databaseUrl, PII_KEY: key });
    assert.equal(run.code, 0, run.stderr);

    const replayed = await cliInProcess(['rejected', 'replay', '--reason', 'r'], env);

    assert.equal(replayed.code, 1, replayed.stderr);
    assert.match(replayed.stderr, /not replayed: SQS refused it/);
    assert.match(replayed.stderr, /replayed 3 of 4 rejected messages/);
    const unmarked = await query<{ body_bytes: number }>(databaseUrl, 'SELECT body_bytes FROM login_etl.rejected_messages WHERE replayed_at IS NULL');
    assert.deepEqual(unmarked, [{ body_bytes: 2_000 }]);
    assert.equal(await queueDepth(servers.sqsClient, target), 3);
    const again = await cliInProcess(['rejected', 'replay', '--not-replayed', '--reason', 'r'], env);
    assert.equal(again.code, 1);
    assert.equal(await queueDepth(servers.sqsClient, target), 3, 'a rerun sends nothing twice');
  });

  test('bad usage is exit 2 and records nothing', async () => {
    const databaseUrl = await servers.database();
    for (const args of [['rejected'], ['rejected', 'show'], ['rejected', 'list', 'id-1'], ['rejected', 'list', '--since', 'yesterday'], ['rejected', 'show', 'x', '--out', 'f'], ['rejected', 'show', 'x'], ['rejected', 'export', '--reason', ' ']]) {
      const result = await cliInProcess(args, { DATABASE_URL: databaseUrl, PII_KEY: generateKeyText() });
      assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
    }
    const noKey = await cliInProcess(['rejected', 'show', 'x', '--reason', 'r'], { DATABASE_URL: databaseUrl });
    assert.equal(noKey.code, 2);
    assert.match(noKey.stderr, /PII_KEY: is required/);
  });
});
