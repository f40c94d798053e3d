import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { collectSettings, parseRunConfig, parseSqsConfig, queueUrlRegion, RUN_SETTINGS, settingLabel, SQS_SETTINGS } from '../../src/config.js';
import { generateKeyText, PiiKey } from '../../src/transform/key.js';
import { configErrorFrom, NON_RANDOM_KEYS } from '../helpers/fixtures.js';

const SECRET = Buffer.from(generateKeyText(), 'base64');
const KEY_HEX = SECRET.toString('hex');
const KEY_ID = new PiiKey(SECRET).id;
const QUEUE_URL = 'http://localhost:4566/000000000000/login-queue';
const DATABASE_URL = 'postgres://etl:hunter2pass@db.internal:5432/logins';

/** The smallest environment `run` accepts. */
const BASE_ENV: NodeJS.ProcessEnv = { SQS_QUEUE_URL: QUEUE_URL, DATABASE_URL, PII_KEY: KEY_HEX };

type Flags = Record<string, string | boolean | undefined>;

function runConfig(env: NodeJS.ProcessEnv, flags: Flags = {}) {
  return parseRunConfig(collectSettings(RUN_SETTINGS, flags, env), env);
}

const tempDir = mkdtempSync(join(tmpdir(), 'login-etl-config-'));
after(() => rmSync(tempDir, { recursive: true, force: true }));

describe('collectSettings', () => {
  it('fills in the defaults when nothing is set', () => {
    assert.deepEqual(collectSettings(RUN_SETTINGS, {}, {}), {
      receiveConcurrency: '4',
      waitTimeSeconds: '20',
      pgPoolMax: '10',
      logLevel: 'info',
      logFormat: 'auto',
      drain: 'false',
      maxInFlightMessages: '1000',
      maxInFlightBytes: '67108864',
      maxReceiveCount: '10',
      shutdownTimeoutSeconds: '25',
      unreachableTimeoutSeconds: '60',
      pruneIntervalSeconds: '600',
      statementTimeoutSeconds: '60',
      httpPort: '8080',
      httpHost: '0.0.0.0',
      sqsClient: 'lean',
      sqsTimeoutSeconds: '10',
      maxBatchMessages: '500',
      flushIntervalMs: '50',
      writeConcurrency: '2',
      metrics: 'true',
      maskMode: 'hmac',
    });
  });

  it('takes an environment variable over the default', () => {
    const raw = collectSettings(RUN_SETTINGS, {}, { AWS_REGION: 'eu-west-1', LOGIN_ETL_WAIT_TIME_SECONDS: '5', SQS_QUEUE_URL: QUEUE_URL });
    assert.equal(raw.region, 'eu-west-1');
    assert.equal(raw.waitTimeSeconds, '5');
    assert.equal(raw.queueUrl, QUEUE_URL);
  });

  it('takes a flag over its environment twin and the default', () => {
    const raw = collectSettings(
      RUN_SETTINGS,
      { region: 'ap-south-1', 'wait-time-seconds': '7', 'queue-url': 'http://flag/1/q', drain: true },
      { AWS_REGION: 'eu-west-1', LOGIN_ETL_WAIT_TIME_SECONDS: '5', SQS_QUEUE_URL: QUEUE_URL, LOGIN_ETL_DRAIN: 'false' },
    );
    assert.equal(raw.region, 'ap-south-1');
    assert.equal(raw.waitTimeSeconds, '7');
    assert.equal(raw.queueUrl, 'http://flag/1/q');
    assert.equal(raw.drain, true);
  });

  it('treats an empty environment variable as unset', () => {
    const raw = collectSettings(RUN_SETTINGS, {}, { AWS_REGION: '', SQS_QUEUE_URL: '' });
    assert.equal('region' in raw, false);
    assert.equal('queueUrl' in raw, false);
  });

  it('only collects the settings asked for', () => {
    assert.deepEqual(collectSettings(['maskMode'], { 'queue-url': QUEUE_URL }, { DATABASE_URL }), { maskMode: 'hmac' });
  });

  it('reads AWS_ENDPOINT_URL when AWS_ENDPOINT_URL_SQS is absent or empty', () => {
    assert.equal(collectSettings(SQS_SETTINGS, {}, { AWS_ENDPOINT_URL: 'http://localhost:4566' }).sqsEndpoint, 'http://localhost:4566');
    assert.equal(
      collectSettings(SQS_SETTINGS, {}, { AWS_ENDPOINT_URL_SQS: '', AWS_ENDPOINT_URL: 'http://localhost:4566' }).sqsEndpoint,
      'http://localhost:4566',
    );
  });

  it('prefers AWS_ENDPOINT_URL_SQS over AWS_ENDPOINT_URL, and --sqs-endpoint over both', () => {
    const env = { AWS_ENDPOINT_URL_SQS: 'http://sqs-only:4566', AWS_ENDPOINT_URL: 'http://general:4566' };
    assert.equal(collectSettings(SQS_SETTINGS, {}, env).sqsEndpoint, 'http://sqs-only:4566');
    assert.equal(collectSettings(SQS_SETTINGS, { 'sqs-endpoint': 'http://flag:9324' }, env).sqsEndpoint, 'http://flag:9324');
  });

  it('reads AWS_DEFAULT_REGION when AWS_REGION is absent or empty, below AWS_REGION and --region', () => {
    assert.equal(collectSettings(SQS_SETTINGS, {}, { AWS_DEFAULT_REGION: 'eu-north-1' }).region, 'eu-north-1');
    assert.equal(collectSettings(SQS_SETTINGS, {}, { AWS_REGION: '', AWS_DEFAULT_REGION: 'eu-north-1' }).region, 'eu-north-1');
    assert.equal(collectSettings(SQS_SETTINGS, {}, { AWS_REGION: 'eu-west-1', AWS_DEFAULT_REGION: 'eu-north-1' }).region, 'eu-west-1');
    assert.equal(collectSettings(SQS_SETTINGS, { region: 'ap-south-1' }, { AWS_DEFAULT_REGION: 'eu-north-1' }).region, 'ap-south-1');
  });

  it('leaves the endpoint unset when neither variable is set', () => {
    assert.equal('sqsEndpoint' in collectSettings(SQS_SETTINGS, {}, {}), false);
  });
});

describe('settingLabel', () => {
  it('names the environment variable and the flag', () => {
    assert.equal(settingLabel('queueUrl'), 'SQS_QUEUE_URL (--queue-url)');
    assert.equal(settingLabel('databaseUrl'), 'DATABASE_URL (--database-url)');
    assert.equal(settingLabel('file'), '--file');
  });
});

describe('parseRunConfig: valid configurations', () => {
  it('parses a minimal environment, with defaults, into typed values', () => {
    const config = runConfig(BASE_ENV);
    assert.deepEqual(config.sqs, { queueUrl: QUEUE_URL, region: undefined, endpoint: undefined });
    assert.equal(config.databaseUrl, DATABASE_URL);
    assert.equal(config.piiKey.id, KEY_ID);
    assert.equal(config.receiveConcurrency, 4);
    assert.equal(config.waitTimeSeconds, 20);
    assert.equal(config.pgPoolMax, 10);
    assert.equal(config.logLevel, 'info');
    assert.equal(config.drain, false);
    assert.equal(config.unreachableTimeoutSeconds, 60);
  });

  it('reads the SQS call deadline from LOGIN_ETL_SQS_TIMEOUT_SECONDS (default 10), and --sqs-timeout-seconds over it', () => {
    assert.equal(runConfig(BASE_ENV).sqsTimeoutSeconds, 10);
    assert.equal(runConfig({ ...BASE_ENV, LOGIN_ETL_SQS_TIMEOUT_SECONDS: '3' }).sqsTimeoutSeconds, 3);
    assert.equal(runConfig({ ...BASE_ENV, LOGIN_ETL_SQS_TIMEOUT_SECONDS: '3' }, { 'sqs-timeout-seconds': '30' }).sqsTimeoutSeconds, 30);
  });

  it('reads the unreachable timeout from LOGIN_ETL_UNREACHABLE_TIMEOUT_SECONDS, and --unreachable-timeout-seconds over it', () => {
    assert.equal(runConfig({ ...BASE_ENV, LOGIN_ETL_UNREACHABLE_TIMEOUT_SECONDS: '5' }).unreachableTimeoutSeconds, 5);
    assert.equal(runConfig({ ...BASE_ENV, LOGIN_ETL_UNREACHABLE_TIMEOUT_SECONDS: '5' }, { 'unreachable-timeout-seconds': '120' }).unreachableTimeoutSeconds, 120);
  });

  it('reads the statement timeout (60 s by default) from LOGIN_ETL_STATEMENT_TIMEOUT_SECONDS, and --statement-timeout-seconds over it', () => {
    assert.equal(runConfig(BASE_ENV).statementTimeoutSeconds, 60);
    assert.equal(runConfig({ ...BASE_ENV, LOGIN_ETL_STATEMENT_TIMEOUT_SECONDS: '5' }).statementTimeoutSeconds, 5);
    assert.equal(runConfig({ ...BASE_ENV, LOGIN_ETL_STATEMENT_TIMEOUT_SECONDS: '5' }, { 'statement-timeout-seconds': '120' }).statementTimeoutSeconds, 120);
  });

  it('parses a full environment into numbers and booleans', () => {
    const config = runConfig({
      ...BASE_ENV,
      DATABASE_URL: 'postgresql://etl@localhost/logins',
      AWS_REGION: 'eu-west-1',
      AWS_ENDPOINT_URL_SQS: 'http://localhost:4566',
      LOGIN_ETL_RECEIVE_CONCURRENCY: '8',
      LOGIN_ETL_WAIT_TIME_SECONDS: '1',
      LOGIN_ETL_PG_POOL_MAX: '100',
      LOG_LEVEL: 'debug',
      LOGIN_ETL_DRAIN: 'true',
    });
    assert.deepEqual(config.sqs, { queueUrl: QUEUE_URL, region: 'eu-west-1', endpoint: 'http://localhost:4566' });
    assert.equal(config.databaseUrl, 'postgresql://etl@localhost/logins');
    assert.equal(config.receiveConcurrency, 8);
    assert.equal(config.waitTimeSeconds, 1);
    assert.equal(config.pgPoolMax, 100);
    assert.equal(config.logLevel, 'debug');
    assert.equal(config.drain, true);
  });

  it('lets flags override the environment', () => {
    const config = runConfig({ ...BASE_ENV, LOGIN_ETL_RECEIVE_CONCURRENCY: '8', LOG_LEVEL: 'debug' }, {
      'receive-concurrency': '64',
      'log-level': 'warn',
      drain: true,
    });
    assert.equal(config.receiveConcurrency, 64);
    assert.equal(config.logLevel, 'warn');
    assert.equal(config.drain, true);
  });

  for (const [text, expected] of [
    ['true', true],
    ['1', true],
    ['yes', true],
    ['false', false],
    ['0', false],
    ['no', false],
  ] as const) {
    it(`reads LOGIN_ETL_DRAIN=${text} as ${expected}`, () => {
      assert.equal(runConfig({ ...BASE_ENV, LOGIN_ETL_DRAIN: text }).drain, expected);
    });
  }

  it('reads the key from PII_KEY_FILE, ignoring the trailing newline', () => {
    const file = join(tempDir, 'key-hex');
    writeFileSync(file, `${KEY_HEX}\n`, { mode: 0o600 });
    const config = runConfig({ ...BASE_ENV, PII_KEY: undefined, PII_KEY_FILE: file });
    assert.equal(config.piiKey.id, KEY_ID);
  });

  it('reads the key file named by --pii-key-file', () => {
    const file = join(tempDir, 'key-base64');
    writeFileSync(file, `${SECRET.toString('base64')}\n`, { mode: 0o600 });
    const config = runConfig({ ...BASE_ENV, PII_KEY: undefined }, { 'pii-key-file': file });
    assert.equal(config.piiKey.id, KEY_ID);
  });

  it('treats an empty PII_KEY as unset when PII_KEY_FILE is given', () => {
    const file = join(tempDir, 'key-empty-env');
    writeFileSync(file, KEY_HEX, { mode: 0o600 });
    assert.equal(runConfig({ ...BASE_ENV, PII_KEY: '', PII_KEY_FILE: file }).piiKey.id, KEY_ID);
  });
});

describe('parseRunConfig: invalid configurations', () => {
  it('requires the queue URL, naming SQS_QUEUE_URL and --queue-url', () => {
    const err = configErrorFrom(() => runConfig({ ...BASE_ENV, SQS_QUEUE_URL: undefined }));
    assert.equal(err.setting, 'SQS_QUEUE_URL (--queue-url)');
    assert.equal(err.message, 'SQS_QUEUE_URL (--queue-url): is required');
  });

  it('refuses a queue URL that is not http(s)', () => {
    for (const url of ['ftp://example.com/q', 'not a url', 'localhost:4566/000000000000/q']) {
      const err = configErrorFrom(() => runConfig({ ...BASE_ENV, SQS_QUEUE_URL: url }));
      assert.equal(err.message, 'SQS_QUEUE_URL (--queue-url): must be an http or https URL');
    }
  });

  it('refuses a region that is not an AWS region', () => {
    const err = configErrorFrom(() => runConfig({ ...BASE_ENV, AWS_REGION: 'US-EAST-1' }));
    assert.equal(err.setting, 'AWS_REGION (--region)');
  });

  it('refuses an endpoint that is not http(s)', () => {
    const err = configErrorFrom(() => runConfig({ ...BASE_ENV, AWS_ENDPOINT_URL: 'localhost' }));
    assert.equal(err.setting, 'AWS_ENDPOINT_URL_SQS (--sqs-endpoint)');
  });

  it('requires DATABASE_URL', () => {
    const err = configErrorFrom(() => runConfig({ ...BASE_ENV, DATABASE_URL: undefined }));
    assert.equal(err.message, 'DATABASE_URL (--database-url): is required');
  });

  it('refuses a DATABASE_URL that is not a postgres URL, without echoing it', () => {
    for (const url of ['mysql://admin:s3cretPass@db:3306/x', 'postgres//admin:s3cretPass@db/x', 'http://admin:s3cretPass@db/x', 's3cretPass']) {
      const err = configErrorFrom(() => runConfig({ ...BASE_ENV, DATABASE_URL: url }));
      assert.equal(err.message, 'DATABASE_URL (--database-url): must be a postgres:// or postgresql:// URL');
      assert.ok(!err.message.includes('s3cretPass'));
      assert.ok(!err.message.includes(url));
    }
  });

  const badNumbers: [env: string, value: string, message: string][] = [
    ['LOGIN_ETL_WAIT_TIME_SECONDS', '30', 'LOGIN_ETL_WAIT_TIME_SECONDS (--wait-time-seconds): must be at most 20'],
    ['LOGIN_ETL_WAIT_TIME_SECONDS', '0', 'LOGIN_ETL_WAIT_TIME_SECONDS (--wait-time-seconds): must be at least 1'],
    ['LOGIN_ETL_WAIT_TIME_SECONDS', 'abc', 'LOGIN_ETL_WAIT_TIME_SECONDS (--wait-time-seconds): must be a whole number from 1 to 20'],
    ['LOGIN_ETL_WAIT_TIME_SECONDS', '-1', 'LOGIN_ETL_WAIT_TIME_SECONDS (--wait-time-seconds): must be a whole number from 1 to 20'],
    ['LOGIN_ETL_WAIT_TIME_SECONDS', '2.5', 'LOGIN_ETL_WAIT_TIME_SECONDS (--wait-time-seconds): must be a whole number from 1 to 20'],
    ['LOGIN_ETL_RECEIVE_CONCURRENCY', '0', 'LOGIN_ETL_RECEIVE_CONCURRENCY (--receive-concurrency): must be at least 1'],
    ['LOGIN_ETL_RECEIVE_CONCURRENCY', '65', 'LOGIN_ETL_RECEIVE_CONCURRENCY (--receive-concurrency): must be at most 64'],
    ['LOGIN_ETL_PG_POOL_MAX', '101', 'LOGIN_ETL_PG_POOL_MAX (--pg-pool-max): must be at most 100'],
    ['LOGIN_ETL_UNREACHABLE_TIMEOUT_SECONDS', '0', 'LOGIN_ETL_UNREACHABLE_TIMEOUT_SECONDS (--unreachable-timeout-seconds): must be at least 1'],
    ['LOGIN_ETL_UNREACHABLE_TIMEOUT_SECONDS', '86401', 'LOGIN_ETL_UNREACHABLE_TIMEOUT_SECONDS (--unreachable-timeout-seconds): must be at most 86400'],
    ['LOGIN_ETL_SQS_TIMEOUT_SECONDS', '0', 'LOGIN_ETL_SQS_TIMEOUT_SECONDS (--sqs-timeout-seconds): must be at least 1'],
    ['LOGIN_ETL_SQS_TIMEOUT_SECONDS', '301', 'LOGIN_ETL_SQS_TIMEOUT_SECONDS (--sqs-timeout-seconds): must be at most 300'],
    ['LOGIN_ETL_SQS_TIMEOUT_SECONDS', '2.5', 'LOGIN_ETL_SQS_TIMEOUT_SECONDS (--sqs-timeout-seconds): must be a whole number from 1 to 300'],
    ['LOGIN_ETL_STATEMENT_TIMEOUT_SECONDS', '0', 'LOGIN_ETL_STATEMENT_TIMEOUT_SECONDS (--statement-timeout-seconds): must be at least 1'],
    ['LOGIN_ETL_STATEMENT_TIMEOUT_SECONDS', '3601', 'LOGIN_ETL_STATEMENT_TIMEOUT_SECONDS (--statement-timeout-seconds): must be at most 3600'],
    ['LOGIN_ETL_STATEMENT_TIMEOUT_SECONDS', '1.5', 'LOGIN_ETL_STATEMENT_TIMEOUT_SECONDS (--statement-timeout-seconds): must be a whole number from 1 to 3600'],
  ];
  for (const [name, value, message] of badNumbers) {
    it(`refuses ${name}=${value}`, () => {
      const err = configErrorFrom(() => runConfig({ ...BASE_ENV, [name]: value }));
      assert.equal(err.message, message);
    });
  }

  it('names the flag when the bad value came from a flag', () => {
    const err = configErrorFrom(() => runConfig(BASE_ENV, { 'wait-time-seconds': '21' }));
    assert.equal(err.message, 'LOGIN_ETL_WAIT_TIME_SECONDS (--wait-time-seconds): must be at most 20');
  });

  it('refuses LOG_LEVEL=loud, listing the levels', () => {
    const err = configErrorFrom(() => runConfig({ ...BASE_ENV, LOG_LEVEL: 'loud' }));
    assert.equal(err.message, 'LOG_LEVEL (--log-level): must be one of fatal, error, warn, info, debug, trace, silent');
  });

  it('refuses LOGIN_ETL_DRAIN=maybe', () => {
    const err = configErrorFrom(() => runConfig({ ...BASE_ENV, LOGIN_ETL_DRAIN: 'maybe' }));
    assert.equal(err.setting, 'LOGIN_ETL_DRAIN (--drain)');
    assert.equal(err.message, 'LOGIN_ETL_DRAIN (--drain): must be true or false');
  });

  it('requires a PII key', () => {
    const err = configErrorFrom(() => runConfig({ ...BASE_ENV, PII_KEY: undefined }));
    assert.equal(err.setting, 'PII_KEY');
    assert.match(err.message, /^PII_KEY: is required/);
    assert.ok(err.message.includes('PII_KEY_FILE'));
  });

  it('refuses PII_KEY and PII_KEY_FILE set together', () => {
    const file = join(tempDir, 'key-both');
    writeFileSync(file, KEY_HEX, { mode: 0o600 });
    const err = configErrorFrom(() => runConfig({ ...BASE_ENV, PII_KEY_FILE: file }));
    assert.equal(err.message, 'PII_KEY: set only one of PII_KEY, PII_KEY_FILE, PII_KEYS and PII_KEYS_FILE, not PII_KEY and PII_KEY_FILE');
    assert.ok(!err.message.includes(KEY_HEX));
  });

  it('names PII_KEY_FILE when the key file does not exist', () => {
    const missing = join(tempDir, 'no-such-key');
    const err = configErrorFrom(() => runConfig({ ...BASE_ENV, PII_KEY: undefined, PII_KEY_FILE: missing }));
    assert.equal(err.setting, 'PII_KEY_FILE (--pii-key-file)');
    assert.equal(err.message, 'PII_KEY_FILE (--pii-key-file): cannot read the key file (ENOENT)');
  });

  it('refuses a weak key in PII_KEY without echoing it', () => {
    const weak = 'deadbeefcafe0123';
    const err = configErrorFrom(() => runConfig({ ...BASE_ENV, PII_KEY: weak }));
    assert.equal(err.setting, 'PII_KEY');
    assert.ok(!err.message.includes(weak));
  });

  it('refuses a key of the right length that does not look random, in PII_KEY and in PII_KEY_FILE', () => {
    for (const [label, text, reason] of NON_RANDOM_KEYS) {
      const inline = configErrorFrom(() => runConfig({ ...BASE_ENV, PII_KEY: text }));
      assert.equal(inline.setting, 'PII_KEY', label);
      assert.match(inline.message, reason, label);
      const file = join(tempDir, 'key-not-random');
      writeFileSync(file, `${text}\n`, { mode: 0o600 });
      const fromFile = configErrorFrom(() => runConfig({ ...BASE_ENV, PII_KEY: undefined, PII_KEY_FILE: file }));
      assert.equal(fromFile.setting, 'PII_KEY_FILE (--pii-key-file)', label);
      assert.match(fromFile.message, reason, label);
    }
  });

  it('refuses a weak key in PII_KEY_FILE, naming the file setting and not echoing the key', () => {
    const file = join(tempDir, 'key-zero');
    const zeros = '00'.repeat(32);
    writeFileSync(file, zeros, { mode: 0o600 });
    const err = configErrorFrom(() => runConfig({ ...BASE_ENV, PII_KEY: undefined, PII_KEY_FILE: file }));
    assert.equal(err.setting, 'PII_KEY_FILE (--pii-key-file)');
    assert.match(err.message, /one byte repeated/);
    assert.ok(!err.message.includes(zeros));
  });
});

describe('parseSqsConfig', () => {
  const sqsConfig = (env: NodeJS.ProcessEnv, flags: Flags = {}) => parseSqsConfig(collectSettings(SQS_SETTINGS, flags, env));

  it('needs only the queue URL, leaving the region to be found (sqsRegionProvider)', () => {
    assert.deepEqual(sqsConfig({ SQS_QUEUE_URL: QUEUE_URL }), { queueUrl: QUEUE_URL, region: undefined, endpoint: undefined });
  });

  it('takes a region that agrees with the one an AWS queue URL names', () => {
    const queueUrl = 'https://sqs.eu-west-1.amazonaws.com/123456789012/login-queue';
    assert.equal(sqsConfig({ SQS_QUEUE_URL: queueUrl, AWS_REGION: 'eu-west-1' }).region, 'eu-west-1');
    assert.equal(sqsConfig({ SQS_QUEUE_URL: queueUrl }).region, undefined);
  });

  it('refuses a region that differs from the one an AWS queue URL names, naming both settings', () => {
    const queueUrl = 'https://sqs.eu-west-1.amazonaws.com/123456789012/login-queue';
    for (const [env, flags] of [
      [{ SQS_QUEUE_URL: queueUrl, AWS_REGION: 'us-east-1' }, {}],
      [{ SQS_QUEUE_URL: queueUrl, AWS_DEFAULT_REGION: 'us-east-1' }, {}],
      [{ SQS_QUEUE_URL: queueUrl, AWS_REGION: 'eu-west-1' }, { region: 'us-east-1' }],
      [{ SQS_QUEUE_URL: 'https://eu-west-1.queue.amazonaws.com/123456789012/login-queue', AWS_REGION: 'us-east-1' }, {}],
    ] as [NodeJS.ProcessEnv, Flags][]) {
      const err = configErrorFrom(() => sqsConfig(env, flags));
      assert.equal(err.setting, 'AWS_REGION (--region)');
      assert.equal(
        err.message,
        "AWS_REGION (--region): is us-east-1, but SQS_QUEUE_URL (--queue-url) names a queue in eu-west-1; requests must be signed for the queue's region: set eu-west-1 or leave the region unset (AWS_DEFAULT_REGION counts as set)",
      );
    }
  });

  it('takes any region for a queue URL that names none or only a LocalStack one', () => {
    assert.equal(sqsConfig({ SQS_QUEUE_URL: QUEUE_URL, AWS_REGION: 'eu-west-1' }).region, 'eu-west-1');
    const localstack = 'http://sqs.us-east-1.localhost.localstack.cloud:4566/000000000000/login-queue';
    assert.equal(sqsConfig({ SQS_QUEUE_URL: localstack, AWS_REGION: 'eu-west-1' }).region, 'eu-west-1');
  });
});

describe('queueUrlRegion', () => {
  const cases: [url: string, expected: ReturnType<typeof queueUrlRegion>][] = [
    ['https://sqs.eu-west-1.amazonaws.com/123456789012/q', { region: 'eu-west-1', host: 'aws' }],
    ['https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q', { region: 'cn-north-1', host: 'aws' }],
    ['https://sqs.us-gov-west-1.amazonaws.com/123456789012/q', { region: 'us-gov-west-1', host: 'aws' }],
    ['https://sqs-fips.us-east-2.amazonaws.com/123456789012/q', { region: 'us-east-2', host: 'aws' }],
    ['https://sqs.ap-southeast-2.api.aws/123456789012/q', { region: 'ap-southeast-2', host: 'aws' }],
    ['https://ap-northeast-1.queue.amazonaws.com/123456789012/q', { region: 'ap-northeast-1', host: 'aws' }],
    ['https://queue.amazonaws.com/123456789012/q', { region: 'us-east-1', host: 'aws' }],
    ['http://sqs.eu-central-1.localhost.localstack.cloud:4566/000000000000/q', { region: 'eu-central-1', host: 'localstack' }],
    ['http://localhost:4566/000000000000/q', undefined],
    ['http://sqs.us-east-1.localhost:4566/000000000000/q', undefined],
    ['https://sqs.eu-west-1.amazonaws.com.example.net/123456789012/q', undefined],
    ['https://sqs.notaregion.amazonaws.com/123456789012/q', undefined],
  ];
  for (const [url, expected] of cases) {
    it(`${url} names ${expected === undefined ? 'no region' : `${expected.region} (${expected.host})`}`, () => {
      assert.deepEqual(queueUrlRegion(url), expected);
    });
  }
});
