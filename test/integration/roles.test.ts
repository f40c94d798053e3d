/**
 * deploy/postgres-roles.sql on a fresh database, with a LOGIN user in each group: the writer
 * runs the pipeline, the analyst the report, the key holder unmask and rekey, the owner migrate;
 * each with no more than it needs, and nobody can change, remove or forge audit rows. The
 * commands run in-process (`run --drain` included: what it logs and refuses is what is checked),
 * but for `rejected replay`, which runs as a child process here (the suite's one replay that does).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import pg from 'pg';
import { generateVaultKey } from '../../src/transform/key.js';
import { cli, cliInProcess, logLines, summaryOf } from '../helpers/cli.js';
import { loginBody } from '../helpers/fixtures.js';
import { query, sendBodies, useServers } from '../helpers/servers.js';

const ROLES_SQL = readFileSync(new URL('../../../deploy/postgres-roles.sql', import.meta.url), 'utf8');
/** The advisory lock migrate() takes (src/sink/migrate.ts). */
const MIGRATION_LOCK_ID = 7_221_904_311;

const servers = useServers();

/** The same database, logged in as `user`. */
function as(databaseUrl: string, user: string): string {
  const url = new URL(databaseUrl);
  url.username = user;
  url.password = `${user}-password`;
  return url.toString();
}

/** Runs `sql` as `user`; resolves with the error code Postgres refused it with, or 'ok'. */
async function attempt(databaseUrl: string, user: string, sql: string): Promise<string> {
  try {
    await query(as(databaseUrl, user), sql);
    return 'ok';
  } catch (err) {
    return `${(err as { code?: string }).code ?? '?'} ${(err as Error).message}`;
  }
}

test('each group can do its job and no more; the audit cannot be changed or forged', { timeout: 180_000 }, async () => {
  // Prepare: a database migrated by a superuser, the roles script applied twice (it is re-run
  // after every upgrade), and a LOGIN user in each group.
  const databaseUrl = await servers.database();
  const migrated = await cliInProcess(['migrate'], { DATABASE_URL: databaseUrl });
  assert.equal(migrated.code, 0, migrated.stderr);
  await query(databaseUrl, ROLES_SQL);
  await query(databaseUrl, ROLES_SQL);
  for (const [user, group] of [
    ['etl_owner', 'login_etl_owner'],
    ['etl_writer', 'login_etl_writer'],
    ['etl_analyst', 'login_etl_analyst'],
    ['etl_keyholder', 'login_etl_keyholder'],
  ] as const) {
    await query(databaseUrl, `CREATE ROLE ${user} LOGIN PASSWORD '${user}-password' IN ROLE ${group}`);
  }
  const vault = generateVaultKey('v1');
  const next = generateVaultKey('v2');
  const pipelineRing = JSON.stringify({ keys: [vault.pipeline] });
  const holderRing = JSON.stringify({ keys: [vault.holder] });
  const rotatedRing = JSON.stringify({ keys: [next.holder, { ...vault.holder, status: 'decrypt-only' }] });
  const queueUrl = await servers.queue();
  const bodies = [
    loginBody({ user_id: 'u1', ip: '198.51.100.1', device_id: 'dev-1' }),
    loginBody({ user_id: 'u2', ip: '198.51.100.2', device_id: 'dev-2' }),
    '{"user_id": "broken", "ip": "198.51.100.3"',
  ];
  await sendBodies(servers.sqsClient, queueUrl, bodies);
  const runAsWriter = () =>
    cliInProcess(['run', '--drain', '--wait-time-seconds', '1', '--sqs-endpoint', servers.sqs.endpoint, '--mask-mode', 'vault'], {
      SQS_QUEUE_URL: queueUrl,
      DATABASE_URL: as(databaseUrl, 'etl_writer'),
      PII_KEYS: pipelineRing,
    });

  // A rejected body stored before migration 004, which the writer's run seals.
  await query(databaseUrl, `INSERT INTO login_etl.rejected_messages (message_id, reason, legacy_body) VALUES ('legacy', 'old', '{"user_id": 7}')`);

  // The writer drains the queue: rows, a rejection and vault entries, and no warning (ledger
  // pruning included). It starts while another session holds the migration lock: with nothing
  // to apply, migrate() neither waits for it nor creates anything.
  const lock = new pg.Client({ connectionString: databaseUrl });
  await lock.connect();
  await lock.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_ID]);
  const run = await runAsWriter().finally(() => lock.end());
  assert.equal(run.code, 0, run.stderr);
  // Levels are written as labels. Besides the rejected message, the one warning is about the body
  // stored before sealing: nothing was refused for want of a privilege.
  const warnings = logLines(run.stdout).filter((l) => ['warn', 'error', 'fatal'].includes(l.level as string) && l.msg !== 'message rejected');
  assert.deepEqual(warnings.map((l) => [l.msg, l.bodies]), [[warnings[0]?.msg, 1]]);
  assert.match(String(warnings[0]?.msg), /^rejected bodies stored before sealing are sealed now; .* VACUUM FULL login_etl.rejected_messages/);
  assert.deepEqual({ written: summaryOf(run.stdout).written, rejected: summaryOf(run.stdout).rejected }, { written: 2, rejected: 1 });
  const [counts] = await query<{ vault: number; legacy: number; sealed: number }>(
    databaseUrl,
    `SELECT (SELECT count(*) FROM login_etl.pii_vault)::int AS vault,
            (SELECT count(legacy_body) FROM login_etl.rejected_messages)::int AS legacy,
            (SELECT count(sealed_body) FROM login_etl.rejected_messages)::int AS sealed`,
  );
  assert.deepEqual(counts, { vault: 4, legacy: 0, sealed: 2 });

  // The analyst: the report, with the rejected count; not the bodies, the vault or the audit.
  const report = await cliInProcess(['report', '--json'], { DATABASE_URL: as(databaseUrl, 'etl_analyst') });
  assert.equal(report.code, 0, report.stderr);
  assert.deepEqual((({ logins, rejected }) => ({ logins, rejected }))(JSON.parse(report.stdout) as { logins: number; rejected: number }), { logins: 2, rejected: 2 });
  assert.equal(
    await attempt(
      databaseUrl,
      'etl_analyst',
      'SELECT message_id, reason, sent_at, receive_count, rejected_at, body_bytes, body_token, body_shape, seal_key_id, seal_scheme, replayed_at FROM login_etl.rejected_messages',
    ),
    'ok',
  );
  for (const sql of [
    'SELECT sealed_body FROM login_etl.rejected_messages',
    'SELECT legacy_body FROM login_etl.rejected_messages',
    'SELECT sealed FROM login_etl.pii_vault',
    'SELECT * FROM login_etl.unmask_audit',
    `SELECT login_etl.record_audit('unmask', 'arguments', 'x', NULL, 0, 0, '{}')`,
    `UPDATE user_logins SET device_type = 'x'`,
  ]) {
    assert.match(await attempt(databaseUrl, 'etl_analyst', sql), /^42501 permission denied/, sql);
  }

  // The key holder: unmask through --query, recorded under its own name.
  const unmasked = await cliInProcess(['unmask', '--query', 'SELECT masked_device_id FROM user_logins', '--reason', 'roles test'], {
    DATABASE_URL: as(databaseUrl, 'etl_keyholder'),
    PII_KEYS: holderRing,
  });
  assert.equal(unmasked.code, 0, unmasked.stderr);
  assert.deepEqual(unmasked.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { original: string }).original).sort(), ['dev-1', 'dev-2']);
  const [record] = await query<{ db_user: string; reason: string; values_recovered: number }>(
    databaseUrl,
    'SELECT db_user, reason, values_recovered FROM login_etl.unmask_audit',
  );
  assert.deepEqual(record, { db_user: 'etl_keyholder', reason: 'roles test', values_recovered: 2 });

  // The analyst lists rejected messages (what is kept in clear); the key holder opens and replays
  // them, each use recorded under its own name.
  const listed = await cliInProcess(['rejected', 'list', '--json'], { DATABASE_URL: as(databaseUrl, 'etl_analyst') });
  assert.equal(listed.code, 0, listed.stderr);
  assert.equal(listed.stdout.trim().split('\n').length, 2);
  const replayTarget = await servers.queue();
  const replayed = await cli(['rejected', 'replay', '--reason', 'roles test'], {
    DATABASE_URL: as(databaseUrl, 'etl_keyholder'),
    PII_KEYS: holderRing,
    SQS_QUEUE_URL: replayTarget,
    AWS_ENDPOINT_URL_SQS: servers.sqs.endpoint,
  });
  assert.equal(replayed.code, 0, replayed.stderr);
  assert.deepEqual(await query(databaseUrl, 'SELECT count(*)::int AS n FROM login_etl.rejected_messages WHERE replayed_at IS NULL'), [{ n: 0 }]);
  assert.deepEqual(
    await query(databaseUrl, `SELECT db_user, action FROM login_etl.unmask_audit WHERE action = 'rejected-replay'`),
    [{ db_user: 'etl_keyholder', action: 'rejected-replay' }],
  );

  // ...and rekey after a key change: rows, the rejected body and the vault move to the new key.
  const rekeyed = await cliInProcess(['rekey', '--mask-mode', 'vault', '--log-format', 'json'], { DATABASE_URL: as(databaseUrl, 'etl_keyholder'), PII_KEYS: rotatedRing });
  assert.equal(rekeyed.code, 0, rekeyed.stderr);
  assert.equal(logLines(rekeyed.stdout).find((l) => l.msg === 'rekey done')?.rows, 2, rekeyed.stdout);
  assert.deepEqual(await query(databaseUrl, 'SELECT DISTINCT key_id FROM login_etl.pii_vault'), [{ key_id: 'v2' }]);

  // Nobody but the owner may write the audit, and the trigger stops the owner too.
  for (const user of ['etl_writer', 'etl_keyholder']) {
    for (const sql of [
      `UPDATE login_etl.unmask_audit SET db_user = 'alice'`,
      'DELETE FROM login_etl.unmask_audit',
      'TRUNCATE login_etl.unmask_audit',
      `INSERT INTO login_etl.unmask_audit (os_user, db_user, source, values_requested, values_recovered, key_ids) VALUES ('alice', 'alice', 'arguments', 1, 1, '{v1}')`,
    ]) {
      assert.match(await attempt(databaseUrl, user, sql), /^42501 permission denied for table unmask_audit/, `${user}: ${sql}`);
    }
  }
  assert.match(await attempt(databaseUrl, 'etl_writer', `SELECT login_etl.record_audit('unmask', 'arguments', 'x', NULL, 0, 0, '{}')`), /^42501 permission denied for function record_audit/);
  assert.match(await attempt(databaseUrl, 'etl_owner', 'DELETE FROM login_etl.unmask_audit'), /^42501 login_etl\.unmask_audit is append-only: DELETE refused/);
  // The function writes the caller's login name, whatever the caller passes or pretends.
  await query(as(databaseUrl, 'etl_keyholder'), `SET ROLE login_etl_analyst; RESET ROLE; SELECT login_etl.record_audit('unmask', 'arguments', 'alice', 'not alice', 0, 0, '{}')`);
  assert.deepEqual(await query(databaseUrl, `SELECT db_user FROM login_etl.unmask_audit WHERE reason = 'not alice'`), [{ db_user: 'etl_keyholder' }]);
  assert.equal(await attempt(databaseUrl, 'etl_keyholder', `SET ROLE login_etl_owner`).then((r) => r.split(' ')[0]), '42501');

  // An upgrade: a migration is pending. The writer stops with one line that says what to do;
  // the owner applies it; the writer runs again.
  await query(databaseUrl, 'DELETE FROM login_etl.schema_migrations WHERE version = 5');
  const pending = await runAsWriter();
  assert.equal(pending.code, 1);
  assert.match(pending.stderr, /^login-etl: migration 005_audit\.sql is pending and this database user may not apply it \(permission denied .*\): run `login-etl migrate` as the owner \(login_etl_owner\)\n$/);
  const upgraded = await cliInProcess(['migrate'], { DATABASE_URL: as(databaseUrl, 'etl_owner') });
  assert.equal(upgraded.code, 0, upgraded.stderr);
  assert.equal(upgraded.stdout, 'applied 005_audit.sql\n');
  assert.equal((await cliInProcess(['migrate'], { DATABASE_URL: as(databaseUrl, 'etl_owner') })).stdout, 'schema is up to date\n');
  const again = await runAsWriter();
  assert.equal(again.code, 0, again.stderr);
});
