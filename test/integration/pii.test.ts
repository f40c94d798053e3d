/**
 * Personal data end to end, as a user runs it: the CLI's commands against real servers, in-process
 * where what they print, their exit code and what they leave in the database are checked (`run
 * --drain`, `unmask`, `rekey`), and in child processes where the process is: everything the first
 * drain of each mode writes, `unmask` reading stdin, and `rekey` beside `run`. Nothing raw may
 * leak in any mode; siv and vault values come back through `unmask` for key holders only, with an
 * audit record; `rekey` rewrites old values while `run` works.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { setTimeout } from 'node:timers/promises';
import pg from 'pg';
import { generateSampleEvents } from '../../src/embedded/sample-data.js';
import type { RejectedRow } from '../../src/sink/rejected.js';
import { writeBatch } from '../../src/sink/write-batch.js';
import { generateKeyText, generateVaultKey, parseKeyRing } from '../../src/transform/key.js';
import { createMasker } from '../../src/transform/mask.js';
import { loadSealedBox } from '../../src/transform/sealed-box.js';
import { transform } from '../../src/transform/transform.js';
import { cli, cliInProcess, logLines, type CliResult } from '../helpers/cli.js';
import { loginBody, queueMessage } from '../helpers/fixtures.js';
import { dumpAllTables, openedBody, query, sendBodies, storedRejections, useServers } from '../helpers/servers.js';

const servers = useServers();
const aws = { AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test' };
const keyDir = mkdtempSync(join(tmpdir(), 'login-etl-pii-'));

function ringFile(name: string, keys: unknown[]): string {
  const file = join(keyDir, name);
  writeFileSync(file, JSON.stringify({ keys }), { mode: 0o600 });
  return file;
}

/** Valid events plus rejected ones that carry PII in every way a producer could send it. */
function dataSet(seed: number) {
  const valid = generateSampleEvents({ count: 30, seed }).filter((e) => e.valid).map((e) => JSON.parse(e.body) as Record<string, string>);
  const ips = ['::ffff:198.51.100.77', '2001:0db8:0000:0000:0000:0000:0000:0042'];
  const devices = ['DEV-secret-device-7781', '321-54-9876', `long-${'x'.repeat(170)}`];
  const bodies = [
    ...valid.map((e) => JSON.stringify(e)),
    JSON.stringify({ user_id: 'u-ipv6', ip: ips[1], device_id: devices[0] }),
    JSON.stringify({ user_id: 'u-long', ip: '192.0.2.55', device_id: devices[2] }),
    `{"user_id": "broken", "ip": "${ips[0]}", "device_id": "${devices[1]}"`,
    JSON.stringify({ user_id: 42, ip: '203.0.113.250', device_id: 'DEV-wrong-type-3321' }),
    JSON.stringify({ user_id: 'u-bad-ip', ip: 'not-an-ip 10.9.8.7', device_id: '111-22-3333' }),
  ];
  const raw = [
    ...valid.flatMap((e) => [e.ip, e.device_id]),
    ...ips,
    '198.51.100.77',
    '2001:db8::42',
    ...devices,
    '192.0.2.55',
    '203.0.113.250',
    'DEV-wrong-type-3321',
    '10.9.8.7',
    '111-22-3333',
  ].filter((v): v is string => typeof v === 'string');
  return { valid, bodies, raw };
}

/** `run --drain` of a queue into a database, in-process unless `run` is `cli`. */
async function runDrain(queueUrl: string, databaseUrl: string, env: Record<string, string>, run: typeof cli = cliInProcess): Promise<CliResult> {
  return await run(['run', '--drain', '--wait-time-seconds', '1', '--log-level', 'debug', '--sqs-endpoint', servers.sqs.endpoint], {
    ...aws,
    SQS_QUEUE_URL: queueUrl,
    DATABASE_URL: databaseUrl,
    ...env,
  });
}

function assertNoLeak(where: string, text: string, raw: readonly string[]): void {
  for (const value of raw) {
    assert.ok(!text.includes(value), `${value} appears in ${where}`);
    assert.ok(!text.includes(Buffer.from(value).toString('hex')), `${value} appears hex-encoded in ${where}`);
  }
}

const unmaskedLines = (stdout: string) => stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { value: string; field: string; original: string });

/** The originals of both masked columns, one `unmask --query` per column: values are bound to their column. */
async function unmaskBothColumns(env: Record<string, string>): Promise<string[]> {
  const originals: string[] = [];
  for (const column of ['masked_ip', 'masked_device_id']) {
    const result = await cliInProcess(['unmask', '--query', `SELECT ${column} FROM user_logins`], env);
    assert.equal(result.code, 0, result.stderr);
    originals.push(...unmaskedLines(result.stdout).map((l) => l.original));
  }
  return originals.sort();
}

describe('no raw PII leaves the pipeline, in any mode', () => {
  const vaultKey = generateVaultKey('v1');
  const modes: { mode: string; env: Record<string, string> }[] = [
    { mode: 'hmac', env: { PII_KEY: generateKeyText() } },
    { mode: 'siv', env: { PII_KEYS_FILE: ringFile('siv.json', [{ id: 's1', status: 'active', secret: generateKeyText() }]) } },
    { mode: 'vault', env: { PII_KEYS_FILE: ringFile('vault-pipeline.json', [vaultKey.pipeline]) } },
  ];
  for (const { mode, env } of modes) {
    test(`${mode}: logs at debug, errors, output and every column of every table hold no raw ip or device_id`, async () => {
      const { valid, bodies, raw } = dataSet(40);
      const databaseUrl = await servers.database();
      const queueUrl = await servers.queue();
      await sendBodies(servers.sqsClient, queueUrl, bodies);

      // A child process: the leak check reads everything the process writes, and Node.js and the
      // SDK write their warnings to the process's own stderr, which in-process output leaves out.
      const result = await runDrain(queueUrl, databaseUrl, { ...env, LOGIN_ETL_MASK_MODE: mode }, cli);

      assert.equal(result.code, 0, result.stderr);
      const lines = result.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.ok(lines.some((l) => l.level === 'debug' || l.msg === 'batch committed'));
      assert.equal(lines.filter((l) => l.msg === 'message rejected').length, mode === 'siv' ? 4 : 3);
      const secrets = Object.values(env).filter((v) => !v.includes('/'));
      assertNoLeak('the process output', result.stdout + result.stderr, [...raw, ...secrets]);
      assertNoLeak('the database', await dumpAllTables(databaseUrl), raw);
      const [counts] = await query<{ rows: number; vault: number }>(
        databaseUrl,
        `SELECT (SELECT count(*) FROM user_logins)::int AS rows, (SELECT count(*) FROM login_etl.pii_vault)::int AS vault`,
      );
      assert.equal(counts?.rows, valid.length + (mode === 'siv' ? 1 : 2));
      assert.equal(counts?.vault === 0, mode !== 'vault');

      // Equal inputs give equal values in a second run (as after a restart) with the same key.
      const again = await servers.queue();
      await sendBodies(servers.sqsClient, again, valid.slice(0, 5).map((e) => JSON.stringify({ ...e, user_id: `again-${e.user_id}` })));
      assert.equal((await runDrain(again, databaseUrl, { ...env, LOGIN_ETL_MASK_MODE: mode })).code, 0);
      const pairs = await query<{ same: boolean }>(
        databaseUrl,
        `SELECT a.masked_ip = b.masked_ip AND a.masked_device_id = b.masked_device_id AS same
           FROM user_logins a JOIN user_logins b ON b.user_id = 'again-' || a.user_id`,
      );
      assert.equal(pairs.length, 5);
      assert.ok(pairs.every((p) => p.same));

      if (mode === 'hmac') return;
      // Key holders get the originals back; the audit records the use, not the values.
      const holder = mode === 'siv' ? env : { PII_KEYS_FILE: ringFile('vault-holder.json', [vaultKey.holder]) };
      // One column per use: siv values are bound to their column.
      const originals = new Set<string>();
      for (const column of ['masked_ip', 'masked_device_id']) {
        const unmasked = await cliInProcess(['unmask', '--query', `SELECT ${column} FROM user_logins`, '--reason', 'leak test'], {
          DATABASE_URL: databaseUrl,
          ...holder,
        });
        assert.equal(unmasked.code, 0, unmasked.stderr);
        for (const line of unmaskedLines(unmasked.stdout)) originals.add(line.original);
      }
      for (const event of valid) {
        assert.ok(originals.has(event.ip as string) && originals.has(event.device_id as string), `${event.user_id} not recovered`);
      }
      const audits = await query<{ os_user: string; reason: string; source: string; values_requested: number; values_recovered: number; key_ids: string[] }>(
        databaseUrl,
        'SELECT os_user, reason, source, values_requested, values_recovered, key_ids FROM login_etl.unmask_audit ORDER BY id',
      );
      const [masked] = await query<{ ip: number; device_id: number }>(databaseUrl, 'SELECT count(masked_ip)::int AS ip, count(masked_device_id)::int AS device_id FROM user_logins');
      assert.deepEqual(audits.map((a) => [a.values_requested, a.values_recovered]), [[masked?.ip, masked?.ip], [masked?.device_id, masked?.device_id]]);
      for (const audit of audits) {
        assert.equal(audit.reason, 'leak test');
        assert.equal(audit.source, 'query');
        assert.deepEqual(audit.key_ids, [mode === 'siv' ? 's1' : 'v1']);
        assert.ok(audit.os_user.length > 0);
      }
      assertNoLeak('the database after unmask', await dumpAllTables(databaseUrl), raw);
    });
  }

  test('the pipeline cannot open its own vault, and unmask refuses what it cannot trust', async () => {
    const databaseUrl = await servers.database();
    const queueUrl = await servers.queue();
    await sendBodies(servers.sqsClient, queueUrl, [
      JSON.stringify({ user_id: 'a', ip: '198.51.100.1', device_id: 'dev-a' }),
      JSON.stringify({ user_id: 'b', ip: '198.51.100.2', device_id: 'dev-b' }),
    ]);
    const pipelineRing = { PII_KEYS_FILE: ringFile('vault-pipeline-2.json', [vaultKey.pipeline]) };
    assert.equal((await runDrain(queueUrl, databaseUrl, { ...pipelineRing, LOGIN_ETL_MASK_MODE: 'vault' })).code, 0);
    const [a, b] = await query<{ masked_ip: string }>(databaseUrl, 'SELECT masked_ip FROM user_logins ORDER BY user_id');
    assert.ok(a && b);

    const withoutPrivate = await cliInProcess(['unmask', a.masked_ip], { DATABASE_URL: databaseUrl, ...pipelineRing });
    assert.equal(withoutPrivate.code, 1);
    assert.equal(withoutPrivate.stdout, '');
    assert.match(withoutPrivate.stderr, /refused: needs the vault private_key of key v1/);

    const holder = { DATABASE_URL: databaseUrl, PII_KEYS_FILE: ringFile('vault-holder-2.json', [vaultKey.holder]) };
    // Swap two vault entries: each opens, but no longer matches its token.
    await query(
      databaseUrl,
      `UPDATE login_etl.pii_vault v SET sealed = o.sealed FROM login_etl.pii_vault o
        WHERE v.token IN ($1, $2) AND o.token IN ($1, $2) AND o.token <> v.token`,
      [a.masked_ip, b.masked_ip],
    );
    const swapped = await cliInProcess(['unmask', a.masked_ip], holder);
    assert.equal(swapped.code, 1);
    assert.equal(swapped.stdout, '');
    assert.match(swapped.stderr, /refused: its vault entry does not match the token/);

    // A child process: unmask reading the real process's stdin.
    const oneWay = await cli(['unmask'], holder, 'hmac:0a1b2c3d:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n');
    assert.equal(oneWay.code, 1);
    assert.match(oneWay.stderr, /hmac values are one-way/);
    assert.match(oneWay.stderr, /recovered 0 of 1 value \(/);

    const siv = { PII_KEYS_FILE: ringFile('siv-2.json', [{ id: 's2', status: 'active', secret: generateKeyText() }]) };
    const sivQueue = await servers.queue();
    await sendBodies(servers.sqsClient, sivQueue, [JSON.stringify({ user_id: 'c', ip: '198.51.100.3', device_id: 'dev-c' })]);
    assert.equal((await runDrain(sivQueue, databaseUrl, { ...siv, LOGIN_ETL_MASK_MODE: 'siv' })).code, 0);
    const [c] = await query<{ masked_ip: string; masked_device_id: string }>(databaseUrl, `SELECT masked_ip, masked_device_id FROM user_logins WHERE user_id = 'c'`);
    assert.ok(c);
    const last = c.masked_device_id.at(-2) === 'A' ? 'B' : 'A';
    const tampered = `${c.masked_device_id.slice(0, -2)}${last}${c.masked_device_id.slice(-1)}`;
    const result = await cliInProcess(['unmask', '--field', 'device_id', c.masked_device_id, tampered], { DATABASE_URL: databaseUrl, ...siv });
    assert.equal(result.code, 1);
    assert.deepEqual(unmaskedLines(result.stdout), [{ value: c.masked_device_id, field: 'device_id', original: 'dev-c' }]);
    assert.match(result.stderr, /value 2 \(siv:s2:.*\): refused: does not authenticate with key s2/);
  });
});

test('--help of every key-using command names the settings, never a key value', async () => {
  const secret = generateKeyText();
  for (const command of ['run', 'unmask', 'rekey', 'keygen']) {
    const result = await cliInProcess([command, '--help'], { PII_KEY: secret, PII_KEYS: JSON.stringify([{ id: 'k', secret }]) });
    assert.equal(result.code, 0);
    assert.ok(!result.stdout.includes(secret), `${command} --help shows the key`);
    if (command !== 'keygen') assert.match(result.stdout, /PII_KEYS_FILE/);
  }
});

describe('rotation with rekey', () => {
  test('vault: a row whose ip cannot be recovered still gets its device_id rewritten, and is counted once', async () => {
    const databaseUrl = await servers.database();
    const old = { ...generateVaultKey('old').holder };
    const next = { ...generateVaultKey('new').holder };
    const { private_key: _private, ...oldPublic } = old;
    void _private;
    const before = ringFile('lost-before.json', [{ ...oldPublic, status: 'active' }]);
    const holderRing = ringFile('lost-holder.json', [next, { ...old, status: 'decrypt-only' }]);
    const queueUrl = await servers.queue();
    await sendBodies(servers.sqsClient, queueUrl, [JSON.stringify({ user_id: 'lost', ip: '198.51.100.77', device_id: 'dev-77', app_version: '1.0.0' })]);
    assert.equal((await runDrain(queueUrl, databaseUrl, { PII_KEYS_FILE: before, LOGIN_ETL_MASK_MODE: 'vault' })).code, 0);
    // The sealed ip is lost: rekey cannot recover it, but can rewrite the device_id.
    await query(databaseUrl, 'DELETE FROM login_etl.pii_vault WHERE token = (SELECT masked_ip FROM user_logins)');

    const rekeyed = await cliInProcess(['rekey', '--mask-mode', 'vault', '--batch-size', '1', '--log-format', 'json'], { DATABASE_URL: databaseUrl, PII_KEYS_FILE: holderRing });
    assert.equal(rekeyed.code, 0, rekeyed.stderr);
    const done = logLines(rekeyed.stdout).find((l) => l.msg === 'rekey done');
    assert.equal(done?.unrecoverable, 1, rekeyed.stdout);
    assert.equal(done?.rows, 1);
    const [row] = await query<{ masked_ip: string; masked_device_id: string }>(databaseUrl, 'SELECT masked_ip, masked_device_id FROM user_logins');
    assert.ok(row?.masked_ip.startsWith('hmac:old:'));
    assert.ok(row?.masked_device_id.startsWith('hmac:new:'));
    // The old entry of the rewritten device_id is no longer referenced, so it goes even though a value was left behind.
    assert.equal(done?.vaultEntriesRemoved, 1);
    assert.deepEqual(await query(databaseUrl, 'SELECT DISTINCT key_id FROM login_etl.pii_vault'), [{ key_id: 'new' }]);
  });

  test('vault: the entries of values left behind under a retired key stay until those values are rewritten', async () => {
    const databaseUrl = await servers.database();
    const old = { ...generateVaultKey('old').holder };
    const next = { ...generateVaultKey('new').holder };
    const { private_key: _private, ...oldPublic } = old;
    void _private;
    const before = ringFile('retired-before.json', [{ ...oldPublic, status: 'active' }]);
    const queueUrl = await servers.queue();
    await sendBodies(servers.sqsClient, queueUrl, [loginBody({ user_id: 'retired', ip: '198.51.100.70', device_id: 'dev-70' })]);
    assert.equal((await runDrain(queueUrl, databaseUrl, { PII_KEYS_FILE: before, LOGIN_ETL_MASK_MODE: 'vault' })).code, 0);

    // Retired too early: its values cannot be rewritten, and their entries are all that is left of the originals.
    const retired = await cliInProcess(['rekey', '--mask-mode', 'vault', '--log-format', 'json'], {
      DATABASE_URL: databaseUrl,
      PII_KEYS_FILE: ringFile('retired-holder.json', [next, { ...old, status: 'retired' }]),
    });
    assert.equal(retired.code, 0, retired.stderr);
    const done = logLines(retired.stdout).find((l) => l.msg === 'rekey done');
    assert.equal(done?.unrecoverable, 2, retired.stdout);
    assert.equal(done?.vaultEntriesRemoved, 0);

    const holderRing = ringFile('retired-fixed.json', [next, { ...old, status: 'decrypt-only' }]);
    assert.deepEqual(await unmaskBothColumns({ DATABASE_URL: databaseUrl, PII_KEYS_FILE: holderRing }), ['198.51.100.70', 'dev-70']);
    const fixed = await cliInProcess(['rekey', '--mask-mode', 'vault', '--log-format', 'json'], { DATABASE_URL: databaseUrl, PII_KEYS_FILE: holderRing });
    assert.equal(fixed.code, 0, fixed.stderr);
    assert.equal(logLines(fixed.stdout).find((l) => l.msg === 'rekey done')?.vaultEntriesRemoved, 2);
    assert.deepEqual(await query(databaseUrl, 'SELECT DISTINCT key_id FROM login_etl.pii_vault'), [{ key_id: 'new' }]);
  });

  test('vault: rekey keeps the vault entries of rows an instance still on the old key commits while it runs', async () => {
    const databaseUrl = await servers.database();
    const old = { ...generateVaultKey('old').holder };
    const next = { ...generateVaultKey('new').holder };
    const { private_key: _private, ...oldPublic } = old;
    void _private;
    const before = ringFile('meanwhile-before.json', [{ ...oldPublic, status: 'active' }]);
    const holderRing = ringFile('meanwhile-holder.json', [next, { ...old, status: 'decrypt-only' }]);
    const login = { ip: '198.51.100.60', device_id: 'dev-meanwhile-60' };
    const rejected = `{"ip": "198.51.100.61", "device_id": "dev-meanwhile-61"`;
    const queueUrl = await servers.queue();
    await sendBodies(servers.sqsClient, queueUrl, [loginBody({ user_id: 'first', ...login }), rejected]);
    assert.equal((await runDrain(queueUrl, databaseUrl, { PII_KEYS_FILE: before, LOGIN_ETL_MASK_MODE: 'vault' })).code, 0);

    // An instance still on the old key commits the same values again, as the pipeline does: the
    // rows and, in the same statement, vault entries that already exist (ON CONFLICT DO NOTHING).
    // Its transaction stays open until rekey waits for it, or has finished without waiting.
    const masker = await createMasker('vault', parseKeyRing(JSON.stringify([{ ...oldPublic, status: 'active' }]), 'old ring').active);
    const pool = new pg.Pool({ connectionString: databaseUrl, max: 2 });
    const writer = await pool.connect();
    let rekeyed: CliResult;
    try {
      await writer.query('BEGIN');
      const written = await writeBatch(writer, [transform(queueMessage(loginBody({ user_id: 'meanwhile', ...login })), masker), transform(queueMessage(rejected), masker)]);
      assert.deepEqual([written.written, written.rejected, written.duplicates], [1, 1, 0]);
      const rekey = cliInProcess(['rekey', '--mask-mode', 'vault', '--log-format', 'json'], { DATABASE_URL: databaseUrl, PII_KEYS_FILE: holderRing });
      let exited = false;
      void rekey.then(() => (exited = true));
      for (;;) {
        const { rows: waiting } = await pool.query(
          `SELECT 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'login-etl rekey' AND NOT l.granted`,
        );
        if (exited || waiting.length > 0) break;
        await setTimeout(20);
      }
      await writer.query('COMMIT');
      rekeyed = await rekey;
    } finally {
      writer.release();
      await pool.end();
    }
    assert.equal(rekeyed.code, 0, rekeyed.stderr);

    // The row written meanwhile still holds old tokens (the rewrite did not see it), so the vault
    // entries of the old key that it refers to must still be there.
    const [meanwhile] = await query<{ masked_ip: string; masked_device_id: string }>(databaseUrl, `SELECT masked_ip, masked_device_id FROM user_logins WHERE user_id = 'meanwhile'`);
    assert.ok(meanwhile);
    assert.ok(meanwhile.masked_ip.startsWith('hmac:old:') && meanwhile.masked_device_id.startsWith('hmac:old:'), 'the row was not written meanwhile');
    const [first] = await query<{ masked_ip: string }>(databaseUrl, `SELECT masked_ip FROM user_logins WHERE user_id = 'first'`);
    assert.ok(first?.masked_ip.startsWith('hmac:new:'), 'rekey did not rewrite the earlier row');
    const unmasked = await cliInProcess(['unmask', meanwhile.masked_ip, meanwhile.masked_device_id], { DATABASE_URL: databaseUrl, PII_KEYS_FILE: holderRing });
    assert.equal(unmasked.code, 0, unmasked.stderr);
    assert.deepEqual(unmaskedLines(unmasked.stdout).map((l) => l.original).sort(), ['198.51.100.60', 'dev-meanwhile-60']);
    // Both rejected bodies, the one written meanwhile included, still open for key holders.
    const holder = parseKeyRing(readFileSync(holderRing, 'utf8'), 'PII_KEYS_FILE');
    const box = await loadSealedBox();
    assert.deepEqual((await storedRejections(databaseUrl)).map((r) => openedBody(r, holder, box)), [rejected, rejected]);

    // A second run rewrites them; then nothing refers to the old key and its entries go.
    const second = await cliInProcess(['rekey', '--mask-mode', 'vault', '--log-format', 'json'], { DATABASE_URL: databaseUrl, PII_KEYS_FILE: holderRing });
    assert.equal(second.code, 0, second.stderr);
    assert.deepEqual(await query(databaseUrl, 'SELECT DISTINCT key_id FROM login_etl.pii_vault'), [{ key_id: 'new' }]);
    assert.deepEqual(await unmaskBothColumns({ DATABASE_URL: databaseUrl, PII_KEYS_FILE: holderRing }), [
      '198.51.100.60',
      '198.51.100.60',
      'dev-meanwhile-60',
      'dev-meanwhile-60',
    ]);
  });

  for (const mode of ['siv', 'vault'] as const) {
    test(`${mode}: new rows carry the new key id; rekey rewrites old values while run works, and duplicates match again`, async () => {
      const databaseUrl = await servers.database();
      const old =
        mode === 'siv' ? { id: 'old', status: 'active', secret: generateKeyText() } : { ...generateVaultKey('old').holder };
      const next = mode === 'siv' ? { id: 'new', status: 'active', secret: generateKeyText() } : { ...generateVaultKey('new').holder };
      const pipelineEntry = (k: Record<string, string>, status: string) => {
        const { private_key: _private, ...rest } = k;
        void _private;
        return { ...rest, status };
      };
      const before = ringFile(`${mode}-before.json`, [pipelineEntry(old, 'active')]);
      const afterRing = ringFile(`${mode}-after.json`, [pipelineEntry(next, 'active'), pipelineEntry(old, 'decrypt-only')]);
      const holderRing = ringFile(`${mode}-holder.json`, mode === 'siv' ? [next, { ...old, status: 'decrypt-only' }] : [next, { ...old, status: 'decrypt-only' }]);

      const events = generateSampleEvents({ count: 60, seed: 50 }).map((e) => e.body);
      const firstQueue = await servers.queue();
      await sendBodies(servers.sqsClient, firstQueue, [...events.slice(0, 40), '{"ip": "198.51.100.9", "device_id": "dev-rejected"']);
      assert.equal((await runDrain(firstQueue, databaseUrl, { PII_KEYS_FILE: before, LOGIN_ETL_MASK_MODE: mode })).code, 0);

      // The same logins again under the new key, while rekey runs.
      const secondQueue = await servers.queue();
      const repeats = events.slice(0, 40).filter((b) => b.startsWith('{"user_id"')).map((b) => JSON.stringify({ ...JSON.parse(b), user_id: `again-${JSON.parse(b).user_id as string}` }));
      await sendBodies(servers.sqsClient, secondQueue, repeats);
      const [running, rekeyed] = await Promise.all([
        runDrain(secondQueue, databaseUrl, { PII_KEYS_FILE: afterRing, LOGIN_ETL_MASK_MODE: mode }),
        // rekey as a child process, beside run in this one: two processes on one database.
        cli(['rekey', '--mask-mode', mode, '--batch-size', '7'], { DATABASE_URL: databaseUrl, PII_KEYS_FILE: holderRing }),
      ]);
      assert.equal(running.code, 0, running.stderr);
      assert.equal(rekeyed.code, 0, rekeyed.stderr);
      // A second pass catches rows an instance still on the old key might have written meanwhile.
      const second = await cliInProcess(['rekey', '--mask-mode', mode], { DATABASE_URL: databaseUrl, PII_KEYS_FILE: holderRing });
      assert.equal(second.code, 0, second.stderr);

      const prefix = mode === 'siv' ? 'siv:new:' : 'hmac:new:';
      const stale = await query(databaseUrl, `SELECT 1 FROM user_logins WHERE NOT starts_with(masked_ip, $1) OR NOT starts_with(masked_device_id, $1)`, [prefix]);
      assert.equal(stale.length, 0);
      // The rejected body is sealed again under the new key, and still opens to the original.
      const rejected = await storedRejections(databaseUrl);
      assert.ok(rejected.length >= 1);
      assert.ok(rejected.every((r) => r.sealed?.keyId === 'new' && r.token?.startsWith('body:new:')), 'a rejected body is still sealed with the old key');
      const box = mode === 'vault' ? await loadSealedBox() : undefined;
      const holder = parseKeyRing(readFileSync(holderRing, 'utf8'), 'PII_KEYS_FILE');
      assert.ok(rejected.map((r: RejectedRow) => openedBody(r, holder, box)).includes('{"ip": "198.51.100.9", "device_id": "dev-rejected"'));
      const pairs = await query<{ same: boolean }>(
        databaseUrl,
        `SELECT a.masked_ip = b.masked_ip AND a.masked_device_id = b.masked_device_id AS same
           FROM user_logins a JOIN user_logins b ON b.user_id = 'again-' || a.user_id`,
      );
      assert.equal(pairs.length, repeats.length);
      assert.ok(pairs.every((p) => p.same));
      if (mode === 'vault') {
        const keyIds = await query<{ key_id: string }>(databaseUrl, 'SELECT DISTINCT key_id FROM login_etl.pii_vault');
        assert.deepEqual(keyIds, [{ key_id: 'new' }]);
      }
      const unmasked = await cliInProcess(['unmask', '--query', 'SELECT masked_device_id FROM user_logins'], { DATABASE_URL: databaseUrl, PII_KEYS_FILE: holderRing });
      assert.equal(unmasked.code, 0, unmasked.stderr);
      const [rows] = await query<{ n: number }>(databaseUrl, 'SELECT count(masked_device_id)::int AS n FROM user_logins');
      assert.equal(unmaskedLines(unmasked.stdout).length, rows?.n);
    });
  }
});
