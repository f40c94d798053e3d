/**
 * What a newcomer meets first: one line per failure naming the dependency and the setting (exit
 * 2 when the user must change something, 1 otherwise), key files that load as they are, a queue
 * created without another tool.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { generateKeyText } from '../../src/transform/key.js';
import { cli, cliInProcess } from '../helpers/cli.js';
import { queueDepth, useServers } from '../helpers/servers.js';

const servers = useServers();
const key = generateKeyText();
const dir = mkdtempSync(join(tmpdir(), 'login-etl-cli-failures-'));

/** A port nothing listens on: taken from the kernel, then given back. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('one line per failure, naming the dependency and the setting', () => {
  test('a database that refuses the connection: run, report and migrate name DATABASE_URL, exit 1', async () => {
    const port = await closedPort();
    const databaseUrl = `postgres://nobody:secret-pw@127.0.0.1:${port}/none`;
    const queueUrl = await servers.queue();
    const env = { DATABASE_URL: databaseUrl, SQS_QUEUE_URL: queueUrl, AWS_ENDPOINT_URL_SQS: servers.sqs.endpoint, PII_KEY: key };
    for (const args of [['report'], ['migrate']]) {
      const result = await cliInProcess(args, env);
      assert.equal(result.code, 1, `${args[0]}: ${result.stderr}`);
      assert.equal(result.stderr, `login-etl: database (DATABASE_URL, --database-url) refused the connection at 127.0.0.1:${port}\n`, args[0]);
    }
    // run waits for a database that is down (it may be starting); a drain gives up after
    // --unreachable-timeout-seconds, with the same line.
    const run = await cli(['run', '--drain', '--unreachable-timeout-seconds', '1', '--log-level', 'error'], env);
    assert.equal(run.code, 1, run.stderr);
    assert.equal(run.stderr, `login-etl: database (DATABASE_URL, --database-url) refused the connection at 127.0.0.1:${port} (for 1 s, --unreachable-timeout-seconds)\n`);
  });

  test('a database that does not exist is for the user to change: exit 2, naming DATABASE_URL', async () => {
    const result = await cliInProcess(['report'], { DATABASE_URL: servers.postgres.urlFor('no_such_database') });
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /^login-etl: database \(DATABASE_URL, --database-url\) does not exist on this server: database "no_such_database" does not exist \(SQLSTATE 3D000\)\n$/);
  });

  test('an HTTP port in use: run says to set --http-port, exit 2', async () => {
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '0.0.0.0', resolve));
    const { port } = busy.address() as { port: number };
    try {
      const result = await cli(['run', '--drain', '--wait-time-seconds', '1'], {
        DATABASE_URL: await servers.database(),
        SQS_QUEUE_URL: await servers.queue(),
        AWS_ENDPOINT_URL_SQS: servers.sqs.endpoint,
        PII_KEY: key,
        LOGIN_ETL_HTTP_PORT: String(port),
        LOG_LEVEL: 'warn',
      });
      assert.equal(result.code, 2, result.stderr);
      assert.equal(result.stderr, `login-etl: HTTP port ${port} is in use: set --http-port (LOGIN_ETL_HTTP_PORT; 0 turns the HTTP server off)\n`);
    } finally {
      await new Promise((resolve) => busy.close(resolve));
    }
  });

  test('an SQS endpoint that refuses the connection: send names the queue URL and the endpoint setting, exit 1', async () => {
    const port = await closedPort();
    const result = await cliInProcess(['send', '--queue-url', `http://127.0.0.1:${port}/000000000000/login-queue`], {}, '{"user_id":"u1"}\n');
    assert.equal(result.code, 1, result.stderr);
    assert.equal(result.stderr, `login-etl: SQS (the queue URL, or AWS_ENDPOINT_URL_SQS / --sqs-endpoint when set) refused the connection at 127.0.0.1:${port}\n`);
  });

  test('a queue that does not exist: send says how to create it, exit 2', async () => {
    const result = await cliInProcess(['send', '--queue-url', `${servers.sqs.endpoint}/000000000000/never-created`], {}, '{"user_id":"u1"}\n');
    assert.equal(result.code, 2, result.stderr);
    assert.equal(result.stderr, 'login-etl: SQS queue (SQS_QUEUE_URL, --queue-url) does not exist: create it with `login-etl queue create NAME`, or check the URL and the region\n');
  });

  test('any other failure is its message and code, with no class name, exit 1', async () => {
    const result = await cliInProcess(['rejected', 'list'], { DATABASE_URL: await servers.database() });
    assert.equal(result.code, 1);
    assert.equal(result.stderr, 'login-etl: relation "login_etl.rejected_messages" does not exist (SQLSTATE 42P01)\n');
  });
});

describe('login-etl queue create and send --create-queue', () => {
  test('queue create prints a URL that send and run use as printed; a second create finds the same queue', async () => {
    const env = { AWS_ENDPOINT_URL_SQS: servers.sqs.endpoint };
    // The first create as a child process, like a user's shell; the rest in-process.
    const created = await cli(['queue', 'create', 'walkthrough-queue'], env);
    assert.equal(created.code, 0, created.stderr);
    const queueUrl = created.stdout.trim();
    assert.match(queueUrl, /^http:\/\/\S+\/000000000000\/walkthrough-queue$/);
    const again = await cliInProcess(['queue', 'create', 'walkthrough-queue'], env);
    assert.equal(again.stdout.trim(), queueUrl);
    const sent = await cliInProcess(['send', '--queue-url', queueUrl], env, '{"user_id":"u1"}\n{"user_id":"u2"}\n');
    assert.equal(sent.code, 0, sent.stderr);
    assert.equal(await queueDepth(servers.sqsClient, queueUrl), 2);
  });

  test('queue create without an endpoint or a region is a usage error, exit 2', async () => {
    // Refused before any request: in-process.
    const result = await cliInProcess(['queue', 'create', 'q1'], { AWS_REGION: undefined, AWS_DEFAULT_REGION: undefined });
    assert.equal(result.code, 2);
    assert.match(result.stderr, /queue create needs an endpoint \(--sqs-endpoint or AWS_ENDPOINT_URL_SQS/);
    const bad = await cliInProcess(['queue', 'create', 'no spaces'], { AWS_ENDPOINT_URL_SQS: servers.sqs.endpoint });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^login-etl: NAME: must be a queue name/);
  });

  test('send --create-queue creates the queue its URL names, then sends', async () => {
    const queueUrl = `${servers.sqs.endpoint}/000000000000/created-by-send`;
    const result = await cliInProcess(['send', '--create-queue', '--queue-url', queueUrl], {}, '{"user_id":"u1"}\n');
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'sent 1 message\n');
    assert.equal(await queueDepth(servers.sqsClient, queueUrl), 1);
  });
});

describe('login-etl keygen --out', () => {
  test('writes a key file of mode 0600 that run loads as PII_KEY_FILE, and never overwrites it', async () => {
    const path = join(dir, 'hmac.key');
    const result = await cliInProcess(['keygen', '--out', path]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    const written = readFileSync(path, 'utf8');
    assert.match(written, /^[A-Za-z0-9+/]{43}=\n$/);
    const again = await cliInProcess(['keygen', '--out', path]);
    assert.equal(again.code, 2);
    assert.equal(again.stderr, `login-etl: --out: ${path} exists already; it is never overwritten\n`);
    assert.equal(readFileSync(path, 'utf8'), written);
    const checked = await cliInProcess(['check'], {
      PII_KEY_FILE: path,
      DATABASE_URL: await servers.database(),
      SQS_QUEUE_URL: await servers.queue(),
      AWS_ENDPOINT_URL_SQS: servers.sqs.endpoint,
    });
    assert.match(checked.stdout, /^ok {3}key: hmac masking with key id /m);
  });

  test('vault: two rings, each loadable as PII_KEYS_FILE as it is: the pipeline\'s (run) and the key holders\' (rekey)', async () => {
    const pipeline = join(dir, 'pipeline-ring.json');
    const holders = join(dir, 'holders-ring.json');
    const result = await cliInProcess(['keygen', '--mode', 'vault', '--id', 'v1', '--out', holders, '--pipeline-out', pipeline]);
    assert.equal(result.code, 0, result.stderr);
    for (const path of [pipeline, holders]) assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.doesNotMatch(readFileSync(pipeline, 'utf8'), /private_key/);
    assert.match(readFileSync(holders, 'utf8'), /private_key/);
    const databaseUrl = await servers.database();
    const checked = await cliInProcess(['check', '--mask-mode', 'vault'], { PII_KEYS_FILE: pipeline, DATABASE_URL: databaseUrl, SQS_QUEUE_URL: await servers.queue(), AWS_ENDPOINT_URL_SQS: servers.sqs.endpoint });
    assert.equal(checked.code, 0, checked.stdout + checked.stderr);
    assert.match(checked.stdout, /^ok {3}key: vault masking with key id v1 /m);
    const rekeyed = await cliInProcess(['rekey', '--mask-mode', 'vault'], { PII_KEYS_FILE: holders, DATABASE_URL: databaseUrl, LOG_LEVEL: 'warn' });
    assert.equal(rekeyed.code, 0, rekeyed.stderr);
    // The holders' ring is refused where only the pipeline's belongs (before any request: in-process).
    const refused = await cliInProcess(['check', '--mask-mode', 'vault'], { PII_KEYS_FILE: holders, DATABASE_URL: databaseUrl, SQS_QUEUE_URL: await servers.queue(), AWS_ENDPOINT_URL_SQS: servers.sqs.endpoint });
    assert.equal(refused.code, 2, refused.stdout);
  });

  test('vault without both files is a usage error, and an existing file leaves neither written', async () => {
    const missing = await cliInProcess(['keygen', '--mode', 'vault']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /--out FILE for the key holders' ring and --pipeline-out FILE for the pipeline's/);
    const existing = join(dir, 'taken.json');
    writeFileSync(existing, 'x');
    const fresh = join(dir, 'fresh.json');
    const refused = await cliInProcess(['keygen', '--mode', 'vault', '--out', existing, '--pipeline-out', fresh]);
    assert.equal(refused.code, 2);
    assert.throws(() => statSync(fresh), /ENOENT/);
  });
});
