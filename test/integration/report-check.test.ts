/**
 * `report` and `check` as a user runs them, against real servers: the first `check` and the
 * first `report` as the built CLI in a child process, the other checks and reports in-process
 * (what they print, their exit code and what they leave in the queue and the database are what
 * is checked).
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { freePort } from '../../src/embedded/ports.js';
import { generateSampleEvents } from '../../src/embedded/sample-data.js';
import { SETTINGS, type SettingSpec } from '../../src/config.js';
import { generateKeyText, generateVaultKey } from '../../src/transform/key.js';
import { cli, cliInProcess } from '../helpers/cli.js';
import { query, queueDepth, sendBodies, useServers } from '../helpers/servers.js';

const servers = useServers();
const key = generateKeyText();
/** One database drained once, shared by the report tests. */
let filled: { databaseUrl: string; events: { body: string; valid: boolean }[] };

before(async () => {
  await servers.ready();
  const queueUrl = await servers.queue();
  const events = generateSampleEvents({ count: 60, seed: 61, repeatRatio: 0.3 });
  await sendBodies(servers.sqsClient, queueUrl, events.map((e) => e.body));
  const databaseUrl = await servers.database();
  const run = await cli(['run', '--drain', '--wait-time-seconds', '1', '--sqs-endpoint', servers.sqs.endpoint], {
    SQS_QUEUE_URL: queueUrl,
    DATABASE_URL: databaseUrl,
    PII_KEY: key,
  });
  assert.equal(run.code, 0, run.stderr);
  filled = { databaseUrl, events };
});

interface Report {
  logins: number;
  rejected: number;
  perDay: { day: string; logins: number }[];
  perDeviceType: { deviceType: string | null; logins: number }[];
  perAppVersion: { appVersion: string | null; logins: number }[];
  repeatedIps: { maskedIp: string; logins: number }[];
  repeatedDeviceIds: { maskedDeviceId: string; logins: number }[];
}

describe('login-etl report', () => {
  test('--json: counts per day, device type and version agree with the table; repeats are masked values', async () => {
    // A child process: report as the executable runs it (the other reports run in-process).
    const result = await cli(['report', '--json'], { DATABASE_URL: filled.databaseUrl });

    assert.equal(result.code, 0, result.stderr);
    const report = JSON.parse(result.stdout) as Report;
    const valid = filled.events.filter((e) => e.valid);
    assert.equal(report.logins, valid.length);
    assert.equal(report.rejected, filled.events.length - valid.length);
    assert.equal(report.perDay.reduce((n, d) => n + d.logins, 0), valid.length);
    assert.deepEqual(report.perDay.map((d) => d.day), [new Date().toISOString().slice(0, 10)]);
    const byType = await query<{ device_type: string; n: number }>(filled.databaseUrl, 'SELECT device_type, count(*)::int AS n FROM user_logins GROUP BY 1');
    assert.deepEqual(
      Object.fromEntries(report.perDeviceType.map((r) => [r.deviceType, r.logins])),
      Object.fromEntries(byType.map((r) => [r.device_type, r.n])),
    );
    assert.ok(report.perAppVersion.every((r) => r.appVersion === null || /^\d+\.\d+\.\d+$/.test(r.appVersion)));
    // Repeats counted on masked values equal repeats counted on the originals.
    const raw = new Map<string, number>();
    for (const e of valid) {
      const ip = (JSON.parse(e.body) as { ip: string }).ip;
      raw.set(ip, (raw.get(ip) ?? 0) + 1);
    }
    const top = [...raw.values()].filter((n) => n > 1).sort((a, b) => b - a).slice(0, 10);
    assert.ok(top.length > 0);
    assert.deepEqual(report.repeatedIps.map((r) => r.logins), top);
    assert.ok(report.repeatedIps.every((r) => r.maskedIp.startsWith('hmac:')));
    assert.ok(report.repeatedDeviceIds.every((r) => r.maskedDeviceId.startsWith('hmac:') && r.logins > 1));
    for (const e of valid) {
      const { ip, device_id } = JSON.parse(e.body) as { ip: string; device_id: string };
      assert.ok(!result.stdout.includes(ip) && !result.stdout.includes(device_id), 'a raw value appears in the report');
    }
  });

  test('text: one table per question, --top limits the rows', async () => {
    const result = await cliInProcess(['report', '--top', '2'], { DATABASE_URL: filled.databaseUrl });

    assert.equal(result.code, 0, result.stderr);
    for (const title of ['Logins per day', 'Logins per device type', 'Logins per app version', 'Most repeated masked ip values', 'Most repeated masked device_id values']) {
      assert.match(result.stdout, new RegExp(`^${title}.*:$`, 'm'));
    }
    const versions = result.stdout.split('Logins per app version:\n')[1]?.split('\n\n')[0]?.split('\n') ?? [];
    assert.equal(versions.length, 4); // header, rule, two rows
    assert.equal((await cliInProcess(['report', '--top', '0'], { DATABASE_URL: filled.databaseUrl })).code, 2);
  });
});

describe('login-etl report before run', () => {
  test('a database the pipeline has not touched: an empty report, a line saying why, exit 0', async () => {
    const databaseUrl = await servers.database();
    const result = await cliInProcess(['report'], { DATABASE_URL: databaseUrl });

    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stderr, 'login-etl: user_logins does not exist yet: the pipeline has not run against this database (`login-etl run` or `login-etl migrate` creates it)\n');
    assert.match(result.stdout, /^user_logins: 0 logins$/m);
    const json = await cliInProcess(['report', '--json'], { DATABASE_URL: databaseUrl });
    assert.equal(json.code, 0);
    assert.deepEqual(JSON.parse(json.stdout), { logins: 0, rejected: null, perDay: [], perDeviceType: [], perAppVersion: [], repeatedIps: [], repeatedDeviceIds: [] });
  });

  test('a user_logins made by other means, without the login_etl schema: reported, versions as text', async () => {
    const databaseUrl = await servers.database();
    await query(databaseUrl, `CREATE TABLE user_logins(user_id varchar(128), device_type varchar(32), masked_ip varchar(256),
                                masked_device_id varchar(256), locale varchar(32), app_version integer, create_date date)`);
    const empty = await cliInProcess(['report'], { DATABASE_URL: databaseUrl });
    assert.equal(empty.code, 0, empty.stderr);
    assert.equal(empty.stdout.split('\n')[0], 'user_logins: 0 logins');

    await query(databaseUrl, `INSERT INTO user_logins(user_id, device_type, app_version, create_date) VALUES ('u', 'ios', 2003001, '2026-11-29')`);
    const result = await cliInProcess(['report', '--json'], { DATABASE_URL: databaseUrl });

    assert.equal(result.code, 0, result.stderr);
    const report = JSON.parse(result.stdout) as Report;
    assert.equal(report.logins, 1);
    assert.equal(report.rejected, null);
    assert.deepEqual(report.perAppVersion, [{ appVersion: '2.3.1', logins: 1 }]);
  });
});

describe('login-etl check', () => {
  const env = () => ({ PII_KEY: key, AWS_ENDPOINT_URL_SQS: servers.sqs.endpoint });

  test('all ok: one line per check, exit 0, and nothing consumed', async () => {
    const queueUrl = await servers.queue();
    await sendBodies(servers.sqsClient, queueUrl, ['{"user_id":"a"}', '{"user_id":"b"}']);

    // As a child process, like a user's shell; the other checks here run in-process.
    const result = await cli(['check'], { ...env(), SQS_QUEUE_URL: queueUrl, DATABASE_URL: filled.databaseUrl });

    assert.equal(result.code, 0, result.stdout + result.stderr);
    const lines = result.stdout.trim().split('\n');
    assert.deepEqual(lines.map((l) => l.split(':')[0]), ['ok   key', 'ok   queue', 'ok   database', 'ok   table']);
    assert.match(lines[1] ?? '', /answered the lean client: about 2 messages visible/);
    assert.ok(!result.stdout.includes(key));
    assert.equal(await queueDepth(servers.sqsClient, queueUrl), 2);
  });

  test('checks the queue through the client run would use: lean by default, the SDK with --sqs-client sdk', async () => {
    const queueUrl = await servers.queue();
    // A proxy that fails every request the lean client signs (its user agent is not the SDK's):
    // check passes only through the client it was told to use, and says which.
    const { createServer, request } = await import('node:http');
    const proxy = createServer((req, res) => {
      if (!String(req.headers['user-agent'] ?? '').includes('aws-sdk-js')) {
        res.writeHead(403, { 'content-type': 'application/x-amz-json-1.0' }).end(JSON.stringify({ __type: 'com.amazon.coral.service#AccessDeniedException', message: 'not through this client' }));
        return;
      }
      const target = new URL(servers.sqs.endpoint);
      req.pipe(request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      }));
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const { port } = proxy.address() as { port: number };
    try {
      const base = { ...env(), AWS_ENDPOINT_URL_SQS: `http://127.0.0.1:${port}`, SQS_QUEUE_URL: queueUrl, DATABASE_URL: filled.databaseUrl };
      const lean = await cliInProcess(['check'], base);
      assert.equal(lean.code, 1, lean.stdout);
      assert.match(lean.stdout, /^FAIL queue: GetQueueAttributes failed \(lean client\): .*AccessDeniedException/m);
      const sdk = await cliInProcess(['check', '--sqs-client', 'sdk'], base);
      assert.equal(sdk.code, 0, sdk.stdout + sdk.stderr);
      assert.match(sdk.stdout, /^ok {3}queue: GetQueueAttributes answered the sdk client/m);
    } finally {
      proxy.closeAllConnections();
      await new Promise((resolve) => proxy.close(resolve));
    }
  });

  test('a fresh database: the table check passes and says the first run creates the table; nothing is created', async () => {
    const databaseUrl = await servers.database();

    const result = await cliInProcess(['check'], { ...env(), SQS_QUEUE_URL: await servers.queue(), DATABASE_URL: databaseUrl });

    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(result.stdout, /^ok {3}table: user_logins does not exist yet: the pipeline has not run against this database; the first `run` \(or `login-etl migrate`\) creates it, and this user may$/m);
    assert.match(result.stdout, /^ok   database:/m);
    const [found] = await query<{ t: string | null; s: string | null }>(databaseUrl, `SELECT to_regclass('user_logins')::text AS t, to_regnamespace('login_etl')::text AS s`);
    assert.deepEqual(found, { t: null, s: null });
  });

  test('a fresh database this user may not create in: the table check fails, exit 1', async () => {
    const databaseUrl = await servers.database();
    await query(databaseUrl, `CREATE ROLE check_no_create LOGIN PASSWORD 'pw'`).catch(() => undefined);
    await query(databaseUrl, 'REVOKE CREATE ON SCHEMA public FROM PUBLIC');
    const url = new URL(databaseUrl);
    url.username = 'check_no_create';
    url.password = 'pw';

    const result = await cliInProcess(['check'], { ...env(), SQS_QUEUE_URL: await servers.queue(), DATABASE_URL: url.toString() });

    assert.equal(result.code, 1, result.stdout);
    assert.match(result.stdout, /^FAIL table: user_logins does not exist and this user may not create it: run `login-etl migrate` as the database owner$/m);
  });

  test('unreachable queue and database: FAIL lines that say why, exit 1', async () => {
    const closed = await freePort();

    const result = await cliInProcess(['check'], {
      ...env(),
      AWS_ENDPOINT_URL_SQS: `http://127.0.0.1:${closed}`,
      SQS_QUEUE_URL: `http://127.0.0.1:${closed}/000000000000/nowhere`,
      DATABASE_URL: `postgres://postgres:secret-password@127.0.0.1:${closed}/postgres`,
    });

    assert.equal(result.code, 1);
    assert.match(result.stdout, /^FAIL queue: GetQueueAttributes failed \(lean client\): .*ECONNREFUSED/m);
    assert.match(result.stdout, /^FAIL database: cannot connect: .*ECONNREFUSED/m);
    assert.ok(!result.stdout.includes('secret-password'));
  });

  test('--help lists the settings check uses, with their environment twins and defaults, and none it ignores', async () => {
    const result = await cliInProcess(['check', '--help']);

    assert.equal(result.code, 0);
    for (const flag of ['drain', 'receive-concurrency', 'http-port', 'no-metrics', 'log-level']) {
      assert.ok(!result.stdout.includes(`--${flag}`), `--${flag} is listed, but check does not use it`);
    }
    for (const name of ['queueUrl', 'region', 'sqsEndpoint', 'databaseUrl', 'piiKeyFile', 'piiKeysFile', 'maskMode'] as const) {
      const spec: SettingSpec = SETTINGS[name];
      const line = result.stdout.split('\n').find((l) => l.trimStart().startsWith(`--${spec.flag} `) || l.trim() === `--${spec.flag}` || l.trimStart().startsWith(`--${spec.flag}  `));
      assert.ok(line !== undefined, `--${spec.flag} missing`);
      if (spec.env !== undefined) assert.ok(line.includes(`env ${spec.env}`), `${spec.env} missing`);
      if (spec.default !== undefined && spec.negates !== true) assert.ok(line.includes(`Default: ${spec.default}.`), `default of --${spec.flag} missing`);
    }
  });

  test('bad configuration: exit 2 naming the setting', async () => {
    // Refused before any request: in-process.
    const result = await cliInProcess(['check'], { SQS_QUEUE_URL: 'http://127.0.0.1:1/000000000000/q', DATABASE_URL: filled.databaseUrl });

    assert.equal(result.code, 2);
    assert.match(result.stderr, /PII_KEY: is required/);
    // Run's settings that check has no flag for are still read from the environment and checked.
    const tuning = await cliInProcess(['check'], { SQS_QUEUE_URL: 'http://127.0.0.1:1/000000000000/q', DATABASE_URL: filled.databaseUrl, PII_KEY: key, LOGIN_ETL_WAIT_TIME_SECONDS: '30' });
    assert.equal(tuning.code, 2);
    assert.match(tuning.stderr, /LOGIN_ETL_WAIT_TIME_SECONDS \(--wait-time-seconds\): must be at most 20/);
  });

  test('a ring holding a vault private key, in hmac mode: exit 2 naming the key setting, nothing checked', async () => {
    const { holder } = generateVaultKey('v1');

    const result = await cliInProcess(['check'], { SQS_QUEUE_URL: await servers.queue(), DATABASE_URL: filled.databaseUrl, PII_KEYS: JSON.stringify([holder]), LOGIN_ETL_MASK_MODE: 'hmac' });

    assert.equal(result.code, 2);
    assert.match(result.stderr, /^login-etl: PII_KEYS: holds a vault private_key \(key 'v1'\)/);
    assert.equal(result.stdout, '');
    assert.ok(!result.stderr.includes(holder.private_key as string));
  });
});
