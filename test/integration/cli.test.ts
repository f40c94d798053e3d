/**
 * The command line as a user runs it: the built CLI in a child process, against real servers.
 * Checks of what a command prints and its exit code alone (bad settings, --help), `send` where
 * what it prints and what it leaves in the queue are checked, and drains whose subject is where
 * the queue URL and the endpoint send requests, run it in-process instead, which prints the same,
 * as the last tests here show.
 */
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { before, describe, test } from 'node:test';
import { generateSampleEvents } from '../../src/embedded/sample-data.js';
import { startLocalSqs } from '../../src/embedded/sqs.js';
import { generateKeyText, generateVaultKey } from '../../src/transform/key.js';
import { CLI, cli, cliInProcess, logLines } from '../helpers/cli.js';
import { NON_RANDOM_KEYS, shippedMigrations } from '../helpers/fixtures.js';
import { migrateDatabase, query, queueDepth, sendBodies, useServers } from '../helpers/servers.js';

const servers = useServers();
const execFileAsync = promisify(execFile);
let port: string;
const key = generateKeyText();
const aws = { AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test' };

before(async () => {
  await servers.ready();
  port = new URL(servers.sqs.endpoint).port;
});

async function loadQueue(count: number, seed: number) {
  const queueUrl = await servers.queue();
  const events = generateSampleEvents({ count, seed });
  await sendBodies(servers.sqsClient, queueUrl, events.map((e) => e.body));
  return { queueUrl, events };
}

describe('login-etl run', () => {
  test('loads one HTTP stack (node:http), and the SDK\'s SQS client only with a dead-letter queue', async () => {
    const recorder = fileURLToPath(new URL('../helpers/record-imports.js', import.meta.url));
    const packagesOf = (stderr: string) => JSON.parse(/^packages loaded: (.*)$/m.exec(stderr)?.[1] ?? 'null') as string[] | null;
    const drain = async (extra: readonly string[]) => {
      const { queueUrl } = await loadQueue(20, 5);
      // Not spawnSync: the emulator answers from this process.
      const { stderr } = await execFileAsync(process.execPath, ['--import', recorder, CLI, 'run', '--drain', '--wait-time-seconds', '1', '--log-level', 'warn', ...extra], {
        env: { PATH: process.env.PATH ?? '', ...aws, LOGIN_ETL_HTTP_PORT: '0', SQS_QUEUE_URL: queueUrl, AWS_ENDPOINT_URL_SQS: servers.sqs.endpoint, DATABASE_URL: await servers.database(), PII_KEY: key },
      });
      const packages = packagesOf(stderr);
      assert.ok(packages !== null, stderr);
      return packages;
    };
    const lean = await drain([]);
    assert.ok(lean.includes('pg') && lean.includes('aws4'), lean.join(', '));
    assert.ok(!lean.includes('undici'), 'a second HTTP stack');
    assert.ok(!lean.includes('@aws-sdk/client-sqs'), "the SDK's SQS client, with nothing to use it");
    const withDeadLetters = await drain(['--dead-letter-queue-url', await servers.queue()]);
    assert.ok(withDeadLetters.includes('@aws-sdk/client-sqs'), withDeadLetters.join(', '));
  });

  test('drains a queue named by a LocalStack-style URL, with no endpoint configured, and exits 0', async () => {
    const { queueUrl } = await loadQueue(30, 21);
    const localstackStyle = `http://127.0.0.1:${port}/000000000000/${queueUrl.split('/').at(-1)}`;
    const databaseUrl = await servers.database();

    const result = await cliInProcess(['run', '--drain', '--wait-time-seconds', '1'], { ...aws, SQS_QUEUE_URL: localstackStyle, DATABASE_URL: databaseUrl, PII_KEY: key });

    assert.equal(result.code, 0, result.stderr);
    const [count] = await query<{ n: number }>(databaseUrl, 'SELECT count(*)::int AS n FROM user_logins');
    assert.equal(count?.n, 29);
    assert.equal(await queueDepth(servers.sqsClient, queueUrl), 0);
    const lines = result.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.ok(lines.some((l) => l.msg === 'batch committed' && l.level === 'info'));
    const last = lines.at(-1);
    assert.equal(last?.msg, 'pipeline stopped');
    assert.equal(last?.written, 29);
    assert.equal(last?.rejected, 1);
  });

  for (const urlHost of ['localhost', 'localhost.invalid']) {
    test(`sends every request to AWS_ENDPOINT_URL_SQS when the queue URL names sqs.us-east-1.${urlHost}`, async () => {
      const emulator = await startLocalSqs({ urlHost });
      try {
        const queueUrl = await emulator.createQueue('login-queue');
        assert.match(queueUrl, new RegExp(`^http://sqs\\.us-east-1\\.${urlHost.replace('.', '\\.')}:\\d+/000000000000/login-queue$`));
        await sendBodies(emulator.client, queueUrl, generateSampleEvents({ count: 10, seed: 22 }).map((e) => e.body));
        const databaseUrl = await servers.database();
        const keyDir = mkdtempSync(join(tmpdir(), 'login-etl-key-'));
        writeFileSync(join(keyDir, 'key'), `${key}\n`, { mode: 0o600 });

        const result = await cliInProcess(['run', '--drain', '--wait-time-seconds=1', '--queue-url', queueUrl, '--pii-key-file', join(keyDir, 'key')], {
          ...aws,
          AWS_ENDPOINT_URL_SQS: emulator.endpoint,
          DATABASE_URL: databaseUrl,
          LOG_LEVEL: 'warn',
        });

        assert.equal(result.code, 0, result.stderr);
        const [count] = await query<{ n: number }>(databaseUrl, 'SELECT count(*)::int AS n FROM user_logins');
        assert.equal(count?.n, 9);
        assert.equal(await queueDepth(emulator.client, queueUrl), 0);
      } finally {
        await emulator.stop();
      }
    });
  }

  test('exits 2 with a message naming the setting when configuration is bad', async () => {
    const holderKey = generateVaultKey('v1').holder;
    const base = { ...aws, SQS_QUEUE_URL: 'http://127.0.0.1:1/000000000000/q', DATABASE_URL: 'postgres://u:secret-pw@127.0.0.1:1/db', PII_KEY: key };
    const cases: [Record<string, string>, string[], RegExp][] = [
      [{ ...base, SQS_QUEUE_URL: '' }, [], /^login-etl: SQS_QUEUE_URL \(--queue-url\): is required\n$/],
      [{ ...base, DATABASE_URL: '' }, [], /^login-etl: DATABASE_URL \(--database-url\): is required\n$/],
      [{ ...base, DATABASE_URL: 'mysql://u:secret-pw@h/db' }, [], /DATABASE_URL \(--database-url\): must be a postgres/],
      [{ ...base, PII_KEY: '' }, [], /PII_KEY: is required/],
      [{ ...base, PII_KEY: 'c2hvcnQta2V5' }, [], /PII_KEY: decodes to 9 bytes; at least 32/],
      ...NON_RANDOM_KEYS.map(([, text, reason]): [Record<string, string>, string[], RegExp] => [{ ...base, PII_KEY: text }, [], new RegExp(`^login-etl: PII_KEY: .*${reason.source}`)]),
      [{ ...base, PII_KEY: '', PII_KEYS: JSON.stringify([holderKey]), LOGIN_ETL_MASK_MODE: 'siv' }, [], /^login-etl: PII_KEYS: holds a vault private_key \(key 'v1'\)/],
      [base, ['--wait-time-seconds', '30'], /LOGIN_ETL_WAIT_TIME_SECONDS \(--wait-time-seconds\): must be at most 20/],
      [{ ...base, LOGIN_ETL_RECEIVE_CONCURRENCY: 'many' }, [], /LOGIN_ETL_RECEIVE_CONCURRENCY \(--receive-concurrency\): must be a whole number/],
      [{ ...base, PII_KEY: '' }, ['--pii-key-file', '/nonexistent/key'], /PII_KEY_FILE \(--pii-key-file\): cannot read the key file \(ENOENT\)/],
      [base, ['--no-such-flag'], /^login-etl: unknown option '--no-such-flag'; see login-etl run --help\n$/],
    ];
    // Each fails before any network use, so in-process.
    for (const [env, args, expected] of cases) {
      const result = await cliInProcess(['run', ...args], env);
      assert.equal(result.code, 2, `${args.join(' ')} ${JSON.stringify(env)}: ${result.stderr}`);
      assert.match(result.stderr, expected);
      assert.ok(!result.stderr.includes('secret-pw'), 'a password was echoed');
      assert.ok(!result.stderr.includes(key), 'the key was echoed');
      assert.ok(!result.stderr.includes(holderKey.private_key as string), 'the private key was echoed');
      assert.equal(result.stdout, '');
    }
    const unknown = await cliInProcess(['frobnicate']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command 'frobnicate'/);
  });

  test('a drain exits 1 once the database has been unreachable from the start for --unreachable-timeout-seconds', async () => {
    const queueUrl = await servers.queue();
    const result = await cli(['run', '--drain', '--unreachable-timeout-seconds', '1', '--log-level', 'error'], {
      ...aws,
      SQS_QUEUE_URL: queueUrl,
      AWS_ENDPOINT_URL_SQS: servers.sqs.endpoint,
      DATABASE_URL: 'postgres://nobody:pw@127.0.0.1:1/none',
      PII_KEY: key,
    });
    assert.equal(result.code, 1);
    assert.equal(result.stderr, 'login-etl: database (DATABASE_URL, --database-url) refused the connection at 127.0.0.1:1 (for 1 s, --unreachable-timeout-seconds)\n');
  });

  test('--help lists every setting with its environment twin and default', async () => {
    const result = await cliInProcess(['run', '--help']);
    assert.equal(result.code, 0);
    for (const expected of ['--queue-url', 'SQS_QUEUE_URL', '--database-url', 'DATABASE_URL', 'PII_KEY_FILE', 'AWS_ENDPOINT_URL_SQS', 'LOGIN_ETL_RECEIVE_CONCURRENCY', 'Default: 20.']) {
      assert.ok(result.stdout.includes(expected), `${expected} missing from --help`);
    }
  });
});

describe('--help and unknown options, per command', () => {
  const helpLine = async (command: string, flag: string) => {
    const result = await cliInProcess([command, '--help']);
    assert.equal(result.code, 0, result.stderr);
    return result.stdout.split('\n').find((l) => l.trimStart().startsWith(`--${flag} `)) ?? '';
  };

  test('each command describes a setting as that command uses it', async () => {
    assert.match(await helpLine('send', 'queue-url'), /URL of the SQS queue to send to \(required\)\.$/);
    assert.match(await helpLine('run', 'queue-url'), /URL of the SQS queue to read from/);
    assert.match(await helpLine('demo', 'log-level'), /Default: error\.$/);
    assert.match(await helpLine('run', 'log-level'), /Default: info\.$/);
    const rekeyMode = await helpLine('rekey', 'mask-mode');
    assert.match(rekeyMode, /siv or vault/);
    assert.doesNotMatch(rekeyMode, /hmac \(|Default: hmac/);
  });

  test('an unknown option is a usage error naming the command\'s --help, exit 2', async () => {
    for (const [command, option] of [['unmask', '--mask-mode'], ['check', '--drain'], ['send', '-x']] as const) {
      const result = await cliInProcess([command, option]);
      assert.equal(result.code, 2, result.stderr);
      assert.equal(result.stderr, `login-etl: unknown option '${option}'; see login-etl ${command} --help\n`);
      assert.equal(result.stdout, '');
    }
  });
});

describe('login-etl send, migrate, keygen and generate', () => {
  test('generate | send loads one message per line; migrate creates the schema', async () => {
    const generated = await cli(['generate', '--count', '25', '--seed', '5']);
    assert.equal(generated.code, 0);
    assert.equal(generated.stdout.trim().split('\n').length, 25);
    const queueUrl = await servers.queue();
    const dir = mkdtempSync(join(tmpdir(), 'login-etl-send-'));
    writeFileSync(join(dir, 'events.jsonl'), `${generated.stdout}\n\n`);

    // send from a file as a child process, from stdin in-process.
    const fromFile = await cli(['send', '--queue-url', queueUrl, '--sqs-endpoint', servers.sqs.endpoint, '--file', join(dir, 'events.jsonl')], aws);
    const fromStdin = await cliInProcess(['send', '--queue-url', queueUrl, '--sqs-endpoint', servers.sqs.endpoint], aws, generated.stdout);

    assert.equal(fromFile.code, 0, fromFile.stderr);
    assert.equal(fromFile.stdout, 'sent 25 messages\n');
    assert.equal(fromStdin.stdout, 'sent 25 messages\n');
    assert.equal(fromStdin.stderr, '', 'piped input needs no hint');
    const one = await cliInProcess(['send', '--queue-url', queueUrl, '--sqs-endpoint', servers.sqs.endpoint], aws, `${generated.stdout.split('\n')[0]}\n`);
    assert.equal(one.stdout, 'sent 1 message\n');
    assert.equal(await queueDepth(servers.sqsClient, queueUrl), 51);

    const databaseUrl = await servers.database();
    // migrate as a child process here, then in-process, like everywhere else in the suite.
    const migrated = await cli(['migrate', '--database-url', databaseUrl]);
    assert.equal(migrated.code, 0, migrated.stderr);
    assert.equal(migrated.stdout, `applied ${shippedMigrations().join(', ')}\n`);
    assert.deepEqual(shippedMigrations().slice(0, 5), ['001_login_etl.sql', '002_ledger_retention.sql', '003_pii.sql', '004_sealed_rejections.sql', '005_audit.sql']);
    assert.equal((await cliInProcess(['migrate'], { DATABASE_URL: databaseUrl })).stdout, 'schema is up to date\n');
    const [version] = await query<{ v: string }>(databaseUrl, 'SELECT login_etl.app_version_text(96000) AS v');
    assert.equal(version?.v, '0.96.0');
  });

  test('send: an input file that cannot be read is bad usage, exit 2, in one line naming it and the error code', async () => {
    const queueUrl = await servers.queue();
    for (const [file, code] of [['/nonexistent/events.jsonl', 'ENOENT'], [tmpdir(), 'EISDIR']] as const) {
      const result = await cliInProcess(['send', '--queue-url', queueUrl, '--sqs-endpoint', servers.sqs.endpoint, '--file', file], aws);
      assert.equal(result.code, 2, result.stderr);
      assert.equal(result.stderr, `login-etl: --file: cannot read ${file} (${code})\n`);
      assert.equal(result.stdout, '');
    }
    assert.equal(await queueDepth(servers.sqsClient, queueUrl), 0);
  });

  test('send: with standard input on a terminal, says it reads JSON Lines until end of file', (t) => {
    // util-linux `script` gives the CLI a terminal; its stdin (empty here) becomes the end of file.
    const quote = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
    const command = [process.execPath, CLI, 'send', '--queue-url', 'http://127.0.0.1:1/000000000000/q'].map(quote).join(' ');
    const result = spawnSync('script', ['-qec', command, '/dev/null'], { input: '', encoding: 'utf8', timeout: 30_000, env: { PATH: process.env.PATH ?? '', ...aws } });
    if (result.error !== undefined) {
      t.skip(`no util-linux script to provide a terminal: ${result.error.message}`);
      return;
    }
    assert.equal(result.status, 0, result.stdout);
    assert.deepEqual(result.stdout.split(/\r?\n/).filter((l) => l !== ''), ['login-etl: reading JSON Lines from standard input until end of file (Ctrl-D)', 'sent 0 messages']);
  });

  // keygen as a child process; other files run it in-process.
  test('keygen prints a fresh key that run accepts', async () => {
    const first = await cli(['keygen']);
    const second = await cli(['keygen']);
    assert.equal(first.code, 0);
    assert.match(first.stdout, /^[A-Za-z0-9+/]{43}=\n$/);
    assert.notEqual(first.stdout, second.stdout);
  });
});

describe('login-etl demo', () => {
  test('starts its own SQS and Postgres, loads 100 sample events and shows the result', async () => {
    const result = await cli(['demo']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /Loaded 100 sample login events into login-queue \(1 malformed\)/);
    assert.match(result.stdout, /^ {2}received +100$/m);
    assert.match(result.stdout, /^ {2}written +99$/m);
    assert.match(result.stdout, /^ {2}rejected +1$/m);
    assert.match(result.stdout, /user_logins: 99 rows/);
    assert.match(result.stdout, /user_id is required/);
  });
});

describe('a command in-process prints what it prints in a child process', () => {
  const same = async (args: readonly string[], env: Record<string, string> = {}, input?: string) => {
    const inProcess = await cliInProcess(args, env, input);
    assert.deepEqual(inProcess, await cli(args, env, input));
    return inProcess;
  };

  test('a usage error, the help, and generated events', async () => {
    assert.deepEqual(await same(['keygen', '--mode', 'xyz']), { code: 2, signal: null, stdout: '', stderr: 'login-etl: --mode: must be one of hmac, siv, vault\n' });
    assert.equal((await same([])).code, 2);
    assert.equal((await same(['generate', '--count', '3', '--seed', '7'])).stdout.split('\n').length, 4);
  });

  test('report on a database the pipeline has not touched, and unmask reading values from stdin', async () => {
    const report = await same(['report'], { DATABASE_URL: await servers.database() });
    assert.equal(report.code, 0, report.stderr);
    assert.match(report.stderr, /user_logins does not exist yet/);
    // A database each: the audit record's id is printed.
    const input = 'hmac:k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\nnot-a-value\n';
    const env = async () => {
      const databaseUrl = await servers.database();
      await migrateDatabase(databaseUrl);
      return { DATABASE_URL: databaseUrl, PII_KEY: key };
    };
    const [inProcess, child] = [await cliInProcess(['unmask'], await env(), input), await cli(['unmask'], await env(), input)];
    assert.deepEqual(inProcess, child);
    assert.equal(inProcess.code, 1);
    assert.match(inProcess.stderr, /hmac values are one-way[\s\S]*recovered 0 of 2 values \(audit record 1\)\n$/);
  });

  test('run --drain: the same log lines, but for times, process ids, message ids and durations', async () => {
    const varying = new Set(['time', 'pid', 'messageId', 'durationMs', 'elapsedMs']);
    const drain = async (run: typeof cli) => {
      // Fewer messages than one receive takes, and one receive loop: one batch in either.
      const { queueUrl } = await loadQueue(8, 9);
      const env = { SQS_QUEUE_URL: queueUrl, AWS_ENDPOINT_URL_SQS: servers.sqs.endpoint, DATABASE_URL: await servers.database(), PII_KEY: key };
      const result = await run(['run', '--drain', '--wait-time-seconds', '1', '--receive-concurrency', '1'], env);
      return { ...result, stdout: logLines(result.stdout).map((line) => Object.fromEntries(Object.entries(line).filter(([field]) => !varying.has(field)))) };
    };
    const inProcess = await drain(cliInProcess);
    assert.deepEqual(inProcess, await drain(cli));
    assert.equal(inProcess.code, 0, inProcess.stderr);
    assert.deepEqual(inProcess.stdout.map((line) => line.msg), [
      'migrations applied',
      'pipeline started',
      'message rejected',
      'batch committed',
      'queue is empty; draining done',
      'pipeline stopped',
    ]);
  });
});
