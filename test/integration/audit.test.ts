/**
 * `unmask` cannot be skipped or forged, as a user (here a superuser) runs it, against a real
 * Postgres; the command runs in-process, since what it prints and its exit code are what is
 * checked (test/integration/pii.test.ts runs it as a child process). --query runs one read-only
 * statement on its own connection; the audit row is committed through login_etl.record_audit
 * before anything is printed, and never changes; siv values decrypt only as their own column;
 * stored text is printed escaped.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { generateKeyText, generateVaultKey, parseKeyRing } from '../../src/transform/key.js';
import { createMasker, type VaultEntry } from '../../src/transform/mask.js';
import { cliInProcess } from '../helpers/cli.js';
import { migrateDatabase, query, useServers } from '../helpers/servers.js';

const servers = useServers();

const SIV_RING = JSON.stringify({ keys: [{ id: 's1', status: 'active', secret: generateKeyText() }] });
const VAULT_KEY = generateVaultKey('v1');
const VAULT_RING = JSON.stringify({ keys: [VAULT_KEY.holder] });

interface Login {
  readonly user_id: string;
  readonly ip: string;
  readonly device_id: string;
  readonly device_type?: string;
}

const LOGINS: readonly Login[] = [
  { user_id: 'a', ip: '198.51.100.1', device_id: 'dev-a' },
  { user_id: 'b', ip: '198.51.100.2', device_id: 'dev-b' },
];

/** A migrated database holding `logins`, masked in `mode` with the test ring, as `run` writes them. */
async function databaseWith(mode: 'siv' | 'vault', logins: readonly Login[] = LOGINS): Promise<string> {
  const databaseUrl = await servers.database();
  await migrateDatabase(databaseUrl);
  const masker = await createMasker(mode, parseKeyRing(mode === 'siv' ? SIV_RING : VAULT_RING, 'test').active);
  const vault: VaultEntry[] = [];
  const rows = logins.map((l) => [l.user_id, l.device_type ?? 'ios', masker.mask('ip', l.ip, vault), masker.mask('device_id', l.device_id, vault)]);
  await query(
    databaseUrl,
    `INSERT INTO user_logins (user_id, device_type, masked_ip, masked_device_id, create_date)
     SELECT u, d, i, m, current_date FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(u, d, i, m)`,
    [rows.map((r) => r[0]), rows.map((r) => r[1]), rows.map((r) => r[2]), rows.map((r) => r[3])],
  );
  if (vault.length > 0) {
    await query(
      databaseUrl,
      'INSERT INTO login_etl.pii_vault (token, key_id, field, sealed) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[])',
      [vault.map((v) => v.token), vault.map((v) => v.keyId), vault.map((v) => v.field), vault.map((v) => Buffer.from(v.sealed))],
    );
  }
  return databaseUrl;
}

const holderEnv = (databaseUrl: string, ring = SIV_RING) => ({ DATABASE_URL: databaseUrl, PII_KEYS: ring });
const originals = (stdout: string) => stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { value: string; field: string; original: string });
const auditRows = (databaseUrl: string) =>
  query<{ db_user: string; os_user: string; action: string; source: string; values_recovered: number }>(
    databaseUrl,
    'SELECT db_user, os_user, action, source, values_recovered FROM login_etl.unmask_audit ORDER BY id',
  );

describe('the audit row comes first, through record_audit, and stays', () => {
  test('a trigger that drops audit inserts makes unmask fail with exit 1 and print no original', async () => {
    const databaseUrl = await databaseWith('siv');
    await query(
      databaseUrl,
      `CREATE FUNCTION swallow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
       CREATE TRIGGER swallow BEFORE INSERT ON login_etl.unmask_audit FOR EACH ROW EXECUTE FUNCTION swallow();`,
    );

    const result = await cliInProcess(['unmask', '--query', 'SELECT masked_ip FROM user_logins'], holderEnv(databaseUrl));

    assert.equal(result.code, 1);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /^login-etl: the audit record was not stored .*so nothing is shown/m);
    assert.doesNotMatch(result.stderr, /recovered \d+ of/);
    assert.equal((await auditRows(databaseUrl)).length, 0);
  });

  test('the row names the database user and the action; nobody, not even a superuser, can change or remove it', async () => {
    const databaseUrl = await databaseWith('siv');
    const result = await cliInProcess(['unmask', '--query', 'SELECT masked_device_id FROM user_logins', '--reason', 'ticket 7'], holderEnv(databaseUrl));
    assert.equal(result.code, 0, result.stderr);

    for (const statement of [
      `UPDATE login_etl.unmask_audit SET db_user = 'alice'`,
      'DELETE FROM login_etl.unmask_audit',
      'TRUNCATE login_etl.unmask_audit',
    ]) {
      await assert.rejects(query(databaseUrl, statement), /login_etl\.unmask_audit is append-only/, statement);
    }
    const rows = await auditRows(databaseUrl);
    assert.deepEqual(rows.map((r) => ({ ...r, os_user: r.os_user.length > 0 })), [
      { db_user: 'postgres', os_user: true, action: 'unmask', source: 'query', values_recovered: 2 },
    ]);
    assert.match(result.stderr, /recovered 2 of 2 values \(audit record 1\)/);
  });
});

describe('unmask --query runs exactly one read-only statement', () => {
  test('"COMMIT; DELETE the audit; UPDATE user_logins; SELECT" is refused, and changes nothing', async () => {
    const databaseUrl = await databaseWith('siv');
    const first = await cliInProcess(['unmask', '--query', 'SELECT masked_ip FROM user_logins'], holderEnv(databaseUrl));
    assert.equal(first.code, 0, first.stderr);

    const result = await cliInProcess(
      ['unmask', '--query', `COMMIT; DELETE FROM login_etl.unmask_audit; UPDATE user_logins SET device_type = 'x'; SELECT 1`],
      holderEnv(databaseUrl),
    );

    assert.deepEqual(await query(databaseUrl, 'SELECT count(*)::int AS n FROM login_etl.unmask_audit'), [{ n: 1 }], 'the audit row was deleted');
    assert.deepEqual(await query(databaseUrl, `SELECT DISTINCT device_type FROM user_logins`), [{ device_type: 'ios' }]);
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /--query must be exactly one SQL statement/);
    assert.equal(result.stdout, '');
  });

  test('"COMMIT; INSERT INTO the audit" cannot forge a row for another database user', async () => {
    const databaseUrl = await databaseWith('siv');

    const result = await cliInProcess(
      [
        'unmask',
        '--query',
        `COMMIT; INSERT INTO login_etl.unmask_audit (os_user, db_user, reason, source, values_requested, values_recovered, key_ids)
         VALUES ('alice', 'alice', 'forged', 'query', 1, 1, '{s1}'); SELECT masked_ip FROM user_logins`,
      ],
      holderEnv(databaseUrl),
    );

    assert.deepEqual(await query(databaseUrl, `SELECT id FROM login_etl.unmask_audit WHERE db_user = 'alice' OR os_user = 'alice'`), []);
    assert.equal(result.code, 2, result.stderr);
    assert.equal(result.stdout, '');
  });

  test('the statement sees a read-only transaction with a timeout, on a connection other than the audit\'s', async () => {
    const databaseUrl = await databaseWith('siv');
    const settings = `SELECT concat_ws(' ', current_setting('transaction_read_only'), current_setting('statement_timeout'), current_setting('application_name'))`;

    const result = await cliInProcess(['unmask', '--field', 'ip', '--query', settings], holderEnv(databaseUrl));

    // The setting comes back as a value, which is not a masked one: refused, and echoed.
    assert.equal(result.code, 1);
    assert.match(result.stderr, /value 1 \(on 1min login-etl unmask --query\): refused: is not a masked value/);
    const writes = await cliInProcess(['unmask', '--query', `WITH gone AS (DELETE FROM login_etl.unmask_audit RETURNING os_user) SELECT * FROM gone`, '--field', 'ip'], holderEnv(databaseUrl));
    assert.equal(writes.code, 1);
    assert.match(writes.stderr, /read-only transaction|data-modifying statements/);
  });

  test('COPY ... TO a file, which a READ ONLY transaction allows a superuser, is refused: only a query can run', async () => {
    const databaseUrl = await databaseWith('siv');
    const target = join(mkdtempSync(join(tmpdir(), 'login-etl-copy-')), 'written-by-query.txt');

    const result = await cliInProcess(['unmask', '--field', 'ip', '--query', `COPY (SELECT masked_ip FROM user_logins) TO '${target}'`], holderEnv(databaseUrl));

    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /--query must be exactly one SQL statement, a SELECT, VALUES or TABLE \(syntax error at or near "COPY"\)/);
    assert.equal(existsSync(target), false, 'the query wrote a file on the database host');
    assert.deepEqual(await auditRows(databaseUrl), []);
  });
});

describe('siv values are bound to their column', () => {
  test('a siv value moved to the other column is refused through --query', async () => {
    const databaseUrl = await databaseWith('siv');
    await query(databaseUrl, `UPDATE user_logins SET masked_ip = masked_device_id WHERE user_id = 'b'`);

    const result = await cliInProcess(['unmask', '--query', `SELECT masked_ip FROM user_logins WHERE user_id = 'b'`], holderEnv(databaseUrl));

    assert.equal(result.code, 1);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /value 1 \(siv:s1:.*\): refused: does not authenticate with key s1 as ip/);
    // Renaming the column in a subquery does not help: the column's origin is what counts.
    const renamed = await cliInProcess(
      ['unmask', '--query', `SELECT masked_ip FROM (SELECT masked_device_id AS masked_ip FROM user_logins WHERE user_id = 'a') q`],
      holderEnv(databaseUrl),
    );
    assert.equal(renamed.code, 0, renamed.stderr);
    assert.deepEqual(originals(renamed.stdout).map((l) => [l.field, l.original]), [['device_id', 'dev-a']]);
  });

  test('on the command line a siv value needs --field, and decrypts only with its own', async () => {
    const databaseUrl = await databaseWith('siv');
    const [row] = await query<{ masked_device_id: string }>(databaseUrl, `SELECT masked_device_id FROM user_logins WHERE user_id = 'a'`);
    assert.ok(row);

    const wrong = await cliInProcess(['unmask', '--field', 'ip', row.masked_device_id], holderEnv(databaseUrl));
    const missing = await cliInProcess(['unmask', row.masked_device_id], holderEnv(databaseUrl));
    const fromStdin = await cliInProcess(['unmask'], holderEnv(databaseUrl), `${row.masked_device_id}\n`);
    const right = await cliInProcess(['unmask', '--field', 'device_id', row.masked_device_id], holderEnv(databaseUrl));

    for (const result of [missing, fromStdin]) {
      assert.equal(result.stdout, '');
      assert.equal(result.code, 2);
      assert.match(result.stderr, /siv values are bound to their column: give --field ip or --field device_id/);
    }
    assert.equal(wrong.stdout, '');
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /refused: does not authenticate with key s1 as ip/);
    assert.equal(right.code, 0, right.stderr);
    assert.deepEqual(originals(right.stdout), [{ value: row.masked_device_id, field: 'device_id', original: 'dev-a' }]);
    // Refused without a field: nothing ran, so nothing was recorded.
    assert.deepEqual((await auditRows(databaseUrl)).map((r) => r.values_recovered), [0, 1]);
  });

  test('siv values from a --query column that is not a masked column of user_logins need --field, which must agree with a masked one', async () => {
    const databaseUrl = await databaseWith('siv');
    const both = 'SELECT masked_ip FROM user_logins UNION ALL SELECT masked_device_id FROM user_logins';

    const unknown = await cliInProcess(['unmask', '--query', both], holderEnv(databaseUrl));
    const asIp = await cliInProcess(['unmask', '--query', both, '--field', 'ip'], holderEnv(databaseUrl));
    const contradicting = await cliInProcess(['unmask', '--query', 'SELECT masked_ip FROM user_logins', '--field', 'device_id'], holderEnv(databaseUrl));

    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /siv values are bound to their column: give --field ip or --field device_id/);
    assert.equal(asIp.code, 1);
    assert.deepEqual(originals(asIp.stdout).map((l) => l.original).sort(), ['198.51.100.1', '198.51.100.2']);
    assert.equal([...asIp.stderr.matchAll(/refused: does not authenticate with key s1 as ip/g)].length, 2);
    assert.equal(contradicting.code, 2);
    assert.match(contradicting.stderr, /--field device_id contradicts the query's first column, which is user_logins\.masked_ip/);
  });

  test('a vault token given with a field opens only if its vault entry is of that field', async () => {
    const databaseUrl = await databaseWith('vault');
    const [row] = await query<{ masked_ip: string }>(databaseUrl, `SELECT masked_ip FROM user_logins WHERE user_id = 'a'`);
    assert.ok(row);

    const wrong = await cliInProcess(['unmask', '--field', 'device_id', row.masked_ip], holderEnv(databaseUrl, VAULT_RING));
    const noField = await cliInProcess(['unmask', row.masked_ip], holderEnv(databaseUrl, VAULT_RING));

    assert.equal(wrong.code, 1);
    assert.equal(wrong.stdout, '');
    assert.match(wrong.stderr, /refused: its vault entry is of ip, not device_id/);
    assert.equal(noField.code, 0, noField.stderr);
    assert.deepEqual(originals(noField.stdout), [{ value: row.masked_ip, field: 'ip', original: '198.51.100.1' }]);
  });
});

describe('stored text is printed escaped', () => {
  const OSC52 = '\x1b]52;c;aGVsbG8=\x07';
  const ERASE = '\x1b[2K';
  const RAW = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/;

  test('report: a device_type with a clipboard write and a line erase reaches the terminal as text', async () => {
    const databaseUrl = await databaseWith('siv', [{ user_id: 'a', ip: '198.51.100.1', device_id: 'dev-a', device_type: `ios${OSC52}${ERASE}` }]);

    const result = await cliInProcess(['report'], { DATABASE_URL: databaseUrl });

    assert.equal(result.code, 0, result.stderr);
    assert.ok(!result.stdout.includes('\x1b'), 'an ESC byte reached stdout');
    assert.ok(!RAW.test(result.stdout), 'a control character reached stdout');
    assert.match(result.stdout, /^  ios\\x1b\]52;c;aGVsbG8=\\x07\\x1b\[2K +1$/m);
  });

  test('unmask: originals and echoed values are escaped, and each line still parses to the original', async () => {
    const device = `dev${ERASE}\u202egpj.exe\u2028${OSC52}`;
    const databaseUrl = await databaseWith('siv', [{ user_id: 'a', ip: '198.51.100.1', device_id: device }]);

    const result = await cliInProcess(['unmask', '--query', 'SELECT masked_device_id FROM user_logins'], holderEnv(databaseUrl));
    const echoed = await cliInProcess(['unmask', '--field', 'ip', `${ERASE}not-a-value\u202e`], holderEnv(databaseUrl));

    assert.equal(result.code, 0, result.stderr);
    assert.ok(!RAW.test(result.stdout), 'a control character reached stdout');
    assert.deepEqual(originals(result.stdout).map((l) => l.original), [device]);
    assert.equal(echoed.code, 1);
    assert.ok(!RAW.test(echoed.stderr.replace(/\n/g, '')), 'a control character reached stderr');
    assert.match(echoed.stderr, /value 1 \(\\x1b\[2Knot-a-value\\u202e\): refused: is not a masked value/);
  });
});
